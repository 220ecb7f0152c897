//! Secure aggregation: one SecAgg+ round (crypto and encoding only, no transport) over
//! n = 10, 50, 100 clients × 2,274,912 parameters (the published BatLiNet model), with the
//! complete graph (k = n, SecAgg) and a sparse Harary graph (k ≈ 2·log2 n, odd), b = 32.
//!
//! Measured per configuration:
//! - `client`: one client's stage 2 (decrypt the k − 1 forwarded shares, encode the delta with
//!   stochastic rounding, add k masks) — the client's dominant cost — and `client_keys`: its
//!   stage 1 (Shamir sharing and encryption for k − 1 neighbours);
//! - `server`: summing n masked inputs, reconstructing n self-mask seeds, and removing the n
//!   self masks (no dropouts);
//! - `keystream_client` / `keystream_server`: the raw ChaCha20 keystream for the same number
//!   of mask values (k·m and n·m), i.e. the floor that the masking is compared against.
//!
//! Run with `cargo bench -p battery-fl-core --bench secagg`. `SECAGG_BENCH_DIM` overrides the
//! number of parameters and `SECAGG_BENCH_N` the list of client counts (e.g. `10,50`).
//! Setting up the largest configurations runs every client once (about a minute).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use battery_fl_core::secagg::prg::raw_keystream;
use battery_fl_core::secagg::{
    log_neighbours, ClientId, ForwardedShares, MaskedInput, SecAggClient, SecAggConfig,
    SecAggServer, UnmaskResponse,
};
use battery_fl_core::Result;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const DEFAULT_DIM: usize = 2_274_912;

/// A round advanced to the end of stage 1, plus everything needed to replay stages 2-3.
struct Prepared {
    client0: SecAggClient,
    client0_fresh: SecAggClient,
    dir0: battery_fl_core::secagg::KeyDirectory,
    fwd0: ForwardedShares,
    server_stage2: SecAggServer,
    masked: Vec<MaskedInput>,
    responses: Vec<UnmaskResponse>,
    delta: Vec<f32>,
}

fn prepare(n: usize, k: usize, dim: usize) -> Result<Prepared> {
    let mut config = SecAggConfig::new(n);
    if k < n {
        config = config.with_neighbours(k);
    }
    let ids: Vec<ClientId> = (0..n as u64).collect();
    let mut server = SecAggServer::new(config, 1, dim, &ids, [7; 32])?;
    let setup = server.setup();
    let mut clients: Vec<SecAggClient> = ids
        .iter()
        .map(|&id| SecAggClient::new(id, &setup, [(id % 251) as u8 + 1; 32]))
        .collect::<Result<_>>()?;
    for c in &mut clients {
        server.receive_keys(c.id(), c.advertise_keys()?)?;
    }
    let client0_fresh = clients[0].clone();
    let dirs = server.finish_advertise()?;
    for (id, dir) in &dirs {
        server.receive_shares(*id, clients[*id as usize].share_keys(dir)?)?;
    }
    let fwd: BTreeMap<ClientId, ForwardedShares> = server.finish_share_keys()?;
    let server_stage2 = server.clone();
    let client0 = clients[0].clone();
    let delta: Vec<f32> = (0..dim)
        .map(|i| ((i % 1000) as f32 - 500.0) * 1e-4)
        .collect();
    let mut masked = Vec::with_capacity(n);
    for (id, f) in &fwd {
        let m = clients[*id as usize].masked_input(f, &delta, 100.0)?;
        server.receive_masked_input(*id, &m)?;
        masked.push(m);
    }
    let requests = server.finish_masked_input()?;
    let responses = requests
        .iter()
        .map(|(id, req)| clients[*id as usize].unmask(req))
        .collect::<Result<Vec<_>>>()?;
    let dir0 = dirs
        .get(&0)
        .cloned()
        .ok_or(battery_fl_core::Error::Aggregation {
            reason: "no directory".into(),
        })?;
    let fwd0 = fwd
        .get(&0)
        .cloned()
        .ok_or(battery_fl_core::Error::Aggregation {
            reason: "no forwarded shares".into(),
        })?;
    Ok(Prepared {
        client0,
        client0_fresh,
        dir0,
        fwd0,
        server_stage2,
        masked,
        responses,
        delta,
    })
}

fn server_round(mut server: SecAggServer, p: &Prepared) -> Result<usize> {
    for m in &p.masked {
        server.receive_masked_input(m.client, m)?;
    }
    server.finish_masked_input()?;
    for r in &p.responses {
        server.receive_unmask(r.client, r.clone())?;
    }
    Ok(server.finish()?.encoded_sum.len())
}

fn secagg(c: &mut Criterion) {
    let dim = std::env::var("SECAGG_BENCH_DIM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_DIM);
    let ns: Vec<usize> = std::env::var("SECAGG_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 50, 100]);
    let mut group = c.benchmark_group("secagg");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for &n in &ns {
        let ks = if log_neighbours(n) < n {
            vec![n, log_neighbours(n)]
        } else {
            vec![n]
        };
        for k in ks {
            let label = format!("n{n}_k{k}_m{dim}");
            let p = match prepare(n, k, dim) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("secagg bench {label}: setup failed: {e}");
                    continue;
                }
            };
            group.bench_function(format!("client/{label}"), |b| {
                b.iter_batched(
                    || p.client0.clone(),
                    |mut cl| {
                        black_box(
                            cl.masked_input(&p.fwd0, &p.delta, 100.0)
                                .map(|m| m.values.len()),
                        )
                    },
                    BatchSize::LargeInput,
                )
            });
            group.bench_function(format!("client_keys/{label}"), |b| {
                b.iter_batched(
                    || {
                        let mut cl = p.client0_fresh.clone();
                        let _ = cl.advertise_keys();
                        cl
                    },
                    |mut cl| black_box(cl.share_keys(&p.dir0).map(|m| m.envelopes.len())),
                    BatchSize::SmallInput,
                )
            });
            group.bench_function(format!("keystream_client/{label}"), |b| {
                b.iter(|| black_box(raw_keystream(&[1; 32], k * (dim + 1), 32)))
            });
            group.bench_function(format!("server/{label}"), |b| {
                b.iter_batched(
                    || p.server_stage2.clone(),
                    |s| black_box(server_round(s, &p)),
                    BatchSize::LargeInput,
                )
            });
            group.bench_function(format!("keystream_server/{label}"), |b| {
                b.iter(|| black_box(raw_keystream(&[2; 32], n * (dim + 1), 32)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, secagg);
criterion_main!(benches);
