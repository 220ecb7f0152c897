//! The main job (`examples/federated.rs`, README command 1) end to end on small synthetic
//! fleets: the example is built in this test's profile, run, and its last line (the JSON the
//! federation issue names) and output files are checked. The numbers themselves are the
//! benchmarks' (BENCHMARKS.md); here the contract and the arithmetic tying the rows together.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The example binary, built by cargo in the profile this test binary was built in.
fn main_job() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args([
        "build",
        "--quiet",
        "-p",
        "battery-fl-core",
        "--features",
        "tch",
        "--example",
        "federated",
    ]);
    build.arg("--target-dir").arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building examples/federated failed");
    profile_dir.join("examples").join("federated")
}

/// Run the main job with `args` (output under `out`); its last stdout line as JSON.
fn run(binary: &Path, out: &Path, args: &[&str]) -> Value {
    let output = Command::new(binary)
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "main job {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a last line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

/// Every fleet of the demo has the same number of test cells, so a pooled RMSE over all test
/// cells is the root mean square of the fleets' RMSEs on their own cells.
fn assert_pooled(summary: &Value, pooled_key: &str, fleet_key: &str) {
    let fleets = summary["per_fleet"].as_object().unwrap();
    let mean_square = fleets
        .values()
        .map(|f| number(f, fleet_key).powi(2))
        .sum::<f64>()
        / fleets.len() as f64;
    approx::assert_relative_eq!(
        number(summary, pooled_key),
        mean_square.sqrt(),
        max_relative = 1e-9
    );
}

#[test]
fn the_main_job_prints_the_contracted_json_line_for_both_recipes() {
    let binary = main_job();
    let dir = tempfile::tempdir().unwrap();

    // the linear recipe (the default): the whole demo, twice (same seeds, same line)
    let linear = run(&binary, &dir.path().join("linear"), &["--threads", "1"]);
    let again = run(&binary, &dir.path().join("again"), &["--threads", "1"]);
    assert_eq!(linear, again, "the main job is seeded");
    assert_eq!(linear["model"], "linear");
    for key in [
        "local_rmse",
        "federated_rmse",
        "personalized_rmse",
        "centralized_rmse",
        "best_local_rmse",
        "coverage_90",
        "width_90",
    ] {
        assert!(number(&linear, key) > 0.0, "{key}");
    }
    let fleets = linear["per_fleet"].as_object().unwrap();
    assert_eq!(fleets.len(), 5);
    for f in fleets.values() {
        for key in ["local", "federated", "personalized", "width_90"] {
            assert!(number(f, key) > 0.0, "{key} in {f}");
        }
        assert!((0.0..=1.0).contains(&number(f, "coverage_90")));
    }
    assert_pooled(&linear, "local_rmse", "local");
    assert_pooled(&linear, "personalized_rmse", "personalized");

    // BatLiNet, small: two rounds on 15 cells per fleet, `head` with held-out cells
    let out = dir.path().join("batlinet");
    let batlinet = run(
        &binary,
        &out,
        &[
            "--model",
            "batlinet",
            "--rounds",
            "2",
            "--cells-per-fleet",
            "15",
            "--threads",
            "1",
            "--seed",
            "0",
            "--noise-seed",
            "0",
            "--personalization",
            "head",
            "--calibration-holdout",
        ],
    );
    assert_eq!(batlinet["model"], "batlinet");
    assert_eq!(batlinet["personalization"], "head");
    assert_eq!(batlinet["calibration_holdout"], true);
    assert!(number(&batlinet, "epsilon").is_finite() && number(&batlinet, "epsilon") > 0.0);
    assert_pooled(&batlinet, "local_rmse", "local");
    assert_pooled(&batlinet, "federated_rmse", "federated");
    assert_pooled(&batlinet, "personalized_rmse", "personalized");
    // intervals of the models the fleets use, calibrated on their held-out cells: the overall
    // coverage is the fleets' (equal test cells)
    let fleets = batlinet["per_fleet"].as_object().unwrap();
    let mean_coverage = fleets
        .values()
        .map(|f| number(f, "coverage_90"))
        .sum::<f64>()
        / fleets.len() as f64;
    approx::assert_relative_eq!(
        number(&batlinet, "coverage_90"),
        mean_coverage,
        max_relative = 1e-9
    );
    for f in fleets.values() {
        assert!(number(f, "width_90") > 0.0);
        assert!(f["out_of_distribution"].as_u64().is_some(), "{f}");
    }
    let calibrations: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("calibrations.json")).unwrap())
            .unwrap();
    assert_eq!(calibrations.as_object().unwrap().len(), fleets.len());
    for file in ["intervals.svg", "rmse_per_round.svg"] {
        let svg = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{file}");
    }
}

#[test]
fn the_main_job_refuses_bad_flags_with_a_message_not_a_panic() {
    let binary = main_job();
    let dir = tempfile::tempdir().unwrap();
    // (`--rounds 0` is not among them: it means the default)
    for args in [
        &["--personalization", "everything"][..],
        &["--cells-per-fleet", "eight"][..],
        &["--data", "/nonexistent/cells"][..],
        &["--choice-margin", "-1"][..],
        &["--privacy", "cell", "--target-epsilon", "-2"][..],
    ] {
        let output = Command::new(&binary)
            .args(args)
            .arg("--out")
            .arg(dir.path())
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?} failed silently");
    }
}
