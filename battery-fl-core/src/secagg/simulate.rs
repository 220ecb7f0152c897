//! An in-process driver running one full round with simulated dropouts (tests, the Python
//! binding, benchmarks).
//!
//! Client i gets id i. A client listed in `drops` with stage s sends every message before
//! stage s and nothing from stage s on (s = 0: never advertises keys; 3: sends its masked
//! input but never answers the unmask request). All randomness derives from `seed`.

use std::collections::{BTreeMap, BTreeSet};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::client::SecAggClient;
use super::config::SecAggConfig;
use super::encoding::Decoded;
use super::server::SecAggServer;
use super::unmask::AggregateOutput;
use super::{ClientId, Stage};
use crate::error::{Error, Result};

/// Everything a simulated round produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    /// The server's output (exact integer sum before dequantization).
    pub output: AggregateOutput,
    /// The dequantized weighted mean and total weight.
    pub decoded: Decoded,
    /// The survivors' encodings summed in the clear mod 2^b (for exactness checks): must equal
    /// `output.encoded_sum` bit for bit.
    pub plain_sum: Vec<u64>,
    /// U1, U2 and U3.
    pub u1: Vec<ClientId>,
    /// Clients that shared keys.
    pub u2: Vec<ClientId>,
    /// Clients whose inputs are in the sum.
    pub u3: Vec<ClientId>,
}

fn seed_for(master: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    master.fill_bytes(&mut s);
    s
}

/// Run one round over `inputs` (the clients' deltas) with `weights` and return the
/// survivors' weighted mean delta. `config.num_clients` must equal `inputs.len()`.
pub fn simulate_round(
    inputs: &[Vec<f32>],
    weights: &[f64],
    config: &SecAggConfig,
    drops: &BTreeMap<usize, Stage>,
    seed: u64,
) -> Result<Vec<f32>> {
    run(inputs, weights, config, drops, seed, false).map(|r| r.decoded.mean)
}

/// Like [`simulate_round`], returning the full [`SimulationReport`] (also sums the survivors'
/// encodings in the clear, which costs one extra encoding pass per survivor).
pub fn simulate_round_report(
    inputs: &[Vec<f32>],
    weights: &[f64],
    config: &SecAggConfig,
    drops: &BTreeMap<usize, Stage>,
    seed: u64,
) -> Result<SimulationReport> {
    run(inputs, weights, config, drops, seed, true)
}

fn run(
    inputs: &[Vec<f32>],
    weights: &[f64],
    config: &SecAggConfig,
    drops: &BTreeMap<usize, Stage>,
    seed: u64,
    plain: bool,
) -> Result<SimulationReport> {
    let n = inputs.len();
    if n != config.num_clients {
        return Err(Error::config(
            "num_clients",
            format!("{} != number of inputs {n}", config.num_clients),
        ));
    }
    if weights.len() != n {
        return Err(Error::Shape {
            what: "weights".into(),
            expected: vec![n],
            got: vec![weights.len()],
        });
    }
    let dim = inputs.first().map_or(0, Vec::len);
    if let Some(bad) = inputs.iter().find(|x| x.len() != dim) {
        return Err(Error::Shape {
            what: "client input".into(),
            expected: vec![dim],
            got: vec![bad.len()],
        });
    }
    if let Some(&i) = drops.keys().find(|&&i| i >= n) {
        return Err(Error::config(
            "drops",
            format!("client {i} out of range 0..{n}"),
        ));
    }
    let alive_at = |i: usize, s: Stage| drops.get(&i).is_none_or(|&d| d > s);
    let mut master = ChaCha20Rng::seed_from_u64(seed);
    let round = 1;
    let ids: Vec<ClientId> = (0..n as u64).collect();
    let mut server = SecAggServer::new(config.clone(), round, dim, &ids, seed_for(&mut master))?;
    let setup = server.setup();
    let mut clients = ids
        .iter()
        .map(|&id| SecAggClient::new(id, &setup, seed_for(&mut master)))
        .collect::<Result<Vec<_>>>()?;

    for (i, c) in clients.iter_mut().enumerate() {
        if alive_at(i, Stage::AdvertiseKeys) {
            server.receive_keys(c.id(), c.advertise_keys()?)?;
        }
    }
    let directories = server.finish_advertise()?;
    for (i, c) in clients.iter_mut().enumerate() {
        if let (true, Some(dir)) = (alive_at(i, Stage::ShareKeys), directories.get(&(i as u64))) {
            server.receive_shares(c.id(), c.share_keys(dir)?)?;
        }
    }
    let forwarded = server.finish_share_keys()?;
    for (i, c) in clients.iter_mut().enumerate() {
        if let (true, Some(fwd)) = (alive_at(i, Stage::MaskedInput), forwarded.get(&(i as u64))) {
            let masked = c.masked_input(fwd, &inputs[i], weights[i])?;
            server.receive_masked_input(c.id(), &masked)?;
        }
    }
    let requests = server.finish_masked_input()?;
    for (i, c) in clients.iter_mut().enumerate() {
        if let (true, Some(req)) = (alive_at(i, Stage::Unmask), requests.get(&(i as u64))) {
            server.receive_unmask(c.id(), c.unmask(req)?)?;
        }
    }
    let output = server.finish()?;
    let decoded = output.decode()?;

    let u3: BTreeSet<ClientId> = server.u3().clone();
    let mut plain_sum = Vec::new();
    if plain {
        let mask = config.modulus_mask();
        plain_sum = vec![0u64; dim + 1];
        for &u in &u3 {
            let i = u as usize;
            let enc = clients[i].encode_input(&inputs[i], weights[i])?;
            plain_sum
                .iter_mut()
                .zip(enc)
                .for_each(|(s, e)| *s = s.wrapping_add(e) & mask);
        }
    }
    Ok(SimulationReport {
        output,
        decoded,
        plain_sum,
        u1: server.u1().iter().copied().collect(),
        u2: server.u2().iter().copied().collect(),
        u3: u3.into_iter().collect(),
    })
}
