//! Synthetic fleet generation: 200 cells x 100 cycles (5 fleets x 40 cells, 200 samples per
//! cycle), on all available cores. Target: under 2 s on 2 cores.
//!
//! Run with `cargo bench -p battery-fl-core --bench synthetic`.

use std::hint::black_box;

use battery_fl_core::data::synthetic::{CellSpec, Chemistry, FleetConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn fleets(c: &mut Criterion) {
    let config = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(40)
        .with_cycles(100);
    let mut group = c.benchmark_group("synthetic");
    group.sample_size(10);
    group.bench_function("fleets_200_cells_x_100_cycles", |b| {
        b.iter(|| black_box(config.generate().map(|f| f.len()).unwrap_or(0)))
    });
    let spec = CellSpec::new(Chemistry::Nmc);
    group.bench_function("one_cell_x_100_cycles", |b| {
        b.iter(|| {
            black_box(
                spec.generate("bench", 1)
                    .map(|c| c.cycles.len())
                    .unwrap_or(0),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, fleets);
criterion_main!(benches);
