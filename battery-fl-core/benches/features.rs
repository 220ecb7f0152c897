//! Single-thread featurization of one CALCE cell at 100 cycles x 1000 points.
//!
//! Data: `$BFL_DATA_DIR/calce_cs2/CALCE_CS2_35.json.gz` (default: the repository's own `data/`
//! folder). Run with `cargo bench -p battery-fl-core --bench features`.

use std::path::PathBuf;

use battery_fl_core::data::load_cell;
use battery_fl_core::features::{branch_a_input, Featurizer, FeaturizerConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn data_dir() -> PathBuf {
    std::env::var_os("BFL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")))
}

fn bench(c: &mut Criterion) {
    let path = data_dir().join("calce_cs2/CALCE_CS2_35.json.gz");
    let cell = match load_cell(&path) {
        Ok(cell) => cell,
        Err(e) => {
            eprintln!("skipping the features bench: {e} (BFL_DATA_DIR overrides the folder)");
            return;
        }
    };
    let featurizer = match Featurizer::new(FeaturizerConfig::default()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipping the features bench: {e}");
            return;
        }
    };
    // transform() is single-threaded; only transform_many() uses rayon
    c.bench_function("featurize CALCE_CS2_35 (6x100x1000, 1 thread)", |b| {
        b.iter(|| featurizer.transform(std::hint::black_box(&cell)))
    });
    if let Ok(raw) = featurizer.transform(&cell) {
        let clean = featurizer.config().clean.clone();
        c.bench_function("branch A input (intra diff + clean) 6x100x1000", |b| {
            b.iter(|| branch_a_input(std::hint::black_box(&raw), 9, &clean))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
