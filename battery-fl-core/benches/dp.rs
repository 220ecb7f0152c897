//! Differential privacy on a BatLiNet-sized update (2,274,912 f32 parameters): Gaussian
//! noise (all cores and one thread), L2 clipping, and one accountant step.
//!
//! Run with `cargo bench -p battery-fl-core --bench dp`.

use std::hint::black_box;

use battery_fl_core::dp::{clip_l2, clip_l2_slice, GaussianNoise, RdpAccountant};
use battery_fl_core::model::ModelParams;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: usize = 2_274_912;

fn update() -> Vec<f32> {
    (0..N).map(|i| ((i % 1013) as f32 - 506.0) * 1e-3).collect()
}

/// The same number of values split over a few named tensors.
fn params() -> Option<ModelParams> {
    let sizes = [1_000_000usize, 800_000, 400_000, N - 2_200_000];
    let mut data = update().into_iter();
    let tensors = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            (
                format!("layer{k}.weight"),
                vec![n],
                data.by_ref().take(n).collect(),
            )
        })
        .collect();
    ModelParams::new(tensors).ok()
}

fn dp(c: &mut Criterion) {
    let mut group = c.benchmark_group("dp");
    group.sample_size(20);
    group.throughput(Throughput::Elements(N as u64));

    let mut buf = update();
    let mut noise = GaussianNoise::from_seed(1);
    group.bench_function("gaussian_noise_slice_2.27M", |b| {
        b.iter(|| noise.add_to_slice(black_box(&mut buf), 1e-3))
    });
    if let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        group.bench_function("gaussian_noise_slice_2.27M_1thread", |b| {
            b.iter(|| pool.install(|| noise.add_to_slice(black_box(&mut buf), 1e-3)))
        });
    }
    if let Some(mut p) = params() {
        group.bench_function("gaussian_noise_params_2.27M", |b| {
            b.iter(|| noise.add_to_params(black_box(&mut p), 1e-3))
        });
        let base = p.clone();
        group.bench_function("clip_params_2.27M", |b| {
            b.iter_batched_ref(
                || base.clone(),
                |q| clip_l2(q, 1.0),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    let base = update();
    group.bench_function("clip_slice_2.27M", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |q| clip_l2_slice(q, 1.0),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("dp_accountant");
    group.sample_size(20);
    group.bench_function("step_q0.01_default_orders", |b| {
        b.iter(|| {
            let mut acc = RdpAccountant::new();
            acc.step(black_box(1.1), 0.01, 1000)
                .and_then(|()| acc.epsilon(1e-5))
        })
    });
    group.finish();
}

criterion_group!(benches, dp);
criterion_main!(benches);
