//! FedAvg throughput over 100 clients x 2,274,912 f32 parameters (BatLiNet at full input),
//! next to a plain memory-read baseline over the same 100 buffers, measured in the same run.
//!
//! Benchmarks (all report bytes of client data, `100 x 2,274,912 x 4` = 910 MB per pass):
//! - `weighted_mean` — [`weighted_mean`] over 100 flat buffers (rayon, all cores);
//! - `weighted_mean_1thread` — the same inside a one-thread rayon pool;
//! - `fedavg_aggregate` — the full [`FedAvg::aggregate`] path: 100 [`ClientUpdate`]s whose
//!   [`ModelParams`] hold four tensors summing to 2,274,912 values (includes update validation:
//!   shape check and a finiteness scan of every value);
//! - `read_1thread` — the baseline: sum every value of every buffer, buffer after buffer, on
//!   one thread (16 independent f32 lanes so the loop is bound by memory, not by add latency);
//! - `read_1thread_chunked` — the same sum in `weighted_mean`'s access order (4,096-value
//!   chunks, all clients' slices of one chunk before the next chunk), on one thread;
//! - `read_rayon_chunked` — that chunked sum with rayon over the chunks, as `weighted_mean`
//!   parallelizes.
//!
//! Run with `cargo bench -p battery-fl-core --bench aggregate` (needs about 2 GB of memory:
//! the buffers and the updates are separate copies).

use std::hint::black_box;
use std::time::Duration;

use battery_fl_core::aggregate::{weighted_mean, Aggregator, ClientUpdate, FedAvg};
use battery_fl_core::model::ModelParams;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rayon::prelude::*;

/// Clients per round.
const CLIENTS: usize = 100;
/// BatLiNet's parameter count at full input (6 x 100 x 1000, C = 32).
const N: usize = 2_274_912;
/// `weighted_mean`'s work-chunk length (coordinates), mirrored for the chunked baselines.
const CHUNK: usize = 4 * 1024;
/// Tensor sizes of the `ModelParams` used for the `FedAvg::aggregate` path.
const TENSORS: [usize; 4] = [1_000_000, 800_000, 400_000, N - 2_200_000];

/// Client `k`'s flat update: cheap, deterministic, different per client.
fn buffer(k: usize) -> Vec<f32> {
    (0..N)
        .map(|i| ((i + 7 * k) % 1013) as f32 * 1e-3 - 0.5)
        .collect()
}

/// Client `k`'s update as named tensors.
fn params(k: usize) -> Option<ModelParams> {
    let mut data = buffer(k).into_iter();
    let tensors = TENSORS
        .iter()
        .enumerate()
        .map(|(t, &n)| {
            (
                format!("layer{t}.weight"),
                vec![n],
                data.by_ref().take(n).collect(),
            )
        })
        .collect();
    ModelParams::new(tensors).ok()
}

/// Sum of a slice with 16 independent accumulators (vectorizes; bound by memory bandwidth).
fn sum_slice(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut it = x.chunks_exact(16);
    for c in &mut it {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// Baseline: every buffer front to back, one thread.
fn read_sequential(bufs: &[&[f32]]) -> f32 {
    bufs.iter().map(|b| sum_slice(b)).sum()
}

/// Baseline in `weighted_mean`'s order: chunk by chunk, all buffers per chunk.
fn read_chunk(bufs: &[&[f32]], c: usize) -> f32 {
    let lo = c * CHUNK;
    let hi = (lo + CHUNK).min(N);
    bufs.iter().map(|b| sum_slice(&b[lo..hi])).sum()
}

fn aggregate(c: &mut Criterion) {
    let owned: Vec<Vec<f32>> = (0..CLIENTS).map(buffer).collect();
    let bufs: Vec<&[f32]> = owned.iter().map(Vec::as_slice).collect();
    let weights: Vec<f64> = (0..CLIENTS).map(|k| 10.0 + (k % 7) as f64).collect();
    let chunks = N.div_ceil(CHUNK);
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().ok();

    let mut group = c.benchmark_group("aggregate_100x2.27M");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes((CLIENTS * N * 4) as u64));

    group.bench_function("weighted_mean", |b| {
        b.iter(|| weighted_mean(black_box(&bufs), black_box(&weights)))
    });
    if let Some(pool) = &one_thread {
        group.bench_function("weighted_mean_1thread", |b| {
            b.iter(|| pool.install(|| weighted_mean(black_box(&bufs), black_box(&weights))))
        });
    }
    group.bench_function("read_1thread", |b| {
        b.iter(|| read_sequential(black_box(&bufs)))
    });
    group.bench_function("read_1thread_chunked", |b| {
        b.iter(|| {
            (0..chunks)
                .map(|c| read_chunk(black_box(&bufs), c))
                .sum::<f32>()
        })
    });
    group.bench_function("read_rayon_chunked", |b| {
        b.iter(|| {
            (0..chunks)
                .into_par_iter()
                .map(|c| read_chunk(black_box(&bufs), c))
                .sum::<f32>()
        })
    });
    drop(bufs);
    drop(owned);

    // the full aggregator path: validation + per-tensor weighted means
    let updates: Option<Vec<ClientUpdate>> = (0..CLIENTS)
        .map(|k| {
            params(k).map(|p| ClientUpdate::parameters(format!("c{k}"), 10 + (k % 7) as u64, p))
        })
        .collect();
    if let (Some(updates), Some(global)) = (updates, params(CLIENTS)) {
        let mut fedavg = FedAvg::default();
        group.bench_function("fedavg_aggregate", |b| {
            b.iter(|| fedavg.aggregate(black_box(&global), black_box(&updates)))
        });
    }
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
