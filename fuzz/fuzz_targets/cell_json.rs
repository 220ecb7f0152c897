//! Cell files (`.json` or `.json.gz`) from untrusted bytes, as `bfl_cell_parse_json` and
//! `bfl_cell_load_json` read them, then what a C caller does next: clean, validate,
//! featurize and fingerprint. None of it may panic.
#![no_main]

use battery_fl_core::data::{parse_cell, CleanConfig, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::genome::GenomeFingerprint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut cell) = parse_cell(data) else {
        return;
    };
    let _ = cell.cycle_life(&LabelConfig::default());
    let _ = GenomeFingerprint::from_cell(&cell);
    let featurizer = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(4)
            .with_interp_dim(16),
    )
    .expect("valid config");
    let _ = featurizer.transform(&cell);
    if cell.clean(&CleanConfig::default()).is_ok() && cell.validate().is_ok() {
        let _ = featurizer.branch_a(&cell);
    }
});
