//! `make test` runs the libtorch-backed integration tests by module name: every module of
//! this binary compiled only with `tch` must be in that list, or its tests never run in CI.

use std::path::Path;

#[test]
fn every_tch_test_module_runs_in_make_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = std::fs::read_to_string(root.join("tests/it/main.rs")).unwrap();
    let makefile = std::fs::read_to_string(root.join("../Makefile")).unwrap();
    let filters: Vec<&str> = makefile
        .lines()
        .find(|l| l.contains("--test it") && l.contains("--features tch"))
        .and_then(|l| l.split(" -- ").nth(1))
        .expect("the rust-test-tch line of the Makefile")
        .split_whitespace()
        .collect();
    let lines: Vec<&str> = main.lines().collect();
    let tch_modules: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].trim() == "#[cfg(feature = \"tch\")]")
        .filter_map(|w| w[1].trim().strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    assert!(tch_modules.len() >= 5, "{tch_modules:?}");
    for module in tch_modules {
        let name = format!("{module}::");
        assert!(
            filters.contains(&name.as_str()),
            "tests/it/{module}.rs needs libtorch but `make rust-test-tch` does not run {name}"
        );
    }
}
