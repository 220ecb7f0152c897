//! `include/battery_fl.h` is exactly what cbindgen (pinned, with `cbindgen.toml`) makes of
//! this crate. `make header` rewrites it (`BFL_BLESS_HEADER=1`); otherwise a stale header
//! fails this test.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("battery-fl-ffi/cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses battery-fl-ffi");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = crate_dir.join("../include/battery_fl.h");
    if std::env::var_os("BFL_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("include/battery_fl.h is writable");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    if committed != generated {
        let (committed, generated) = (
            String::from_utf8_lossy(&committed),
            String::from_utf8_lossy(&generated),
        );
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/battery_fl.h is stale (first difference at line {}): run `make header` \
             and commit it\n committed: {:?}\n generated: {:?}",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end>"),
            generated.lines().nth(first).unwrap_or("<end>"),
        );
    }
}
