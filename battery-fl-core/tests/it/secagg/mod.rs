//! Secure aggregation: exactness under dropouts at every stage, thresholds, uniformity of
//! masked vectors, tampering, share-kind refusal and overflow checks; [`adversarial`] covers
//! malformed messages and the active-adversary mode, [`attacks`] the attacks on sender ids,
//! run ids, the client policy, the range of the unmasked sum.

mod adversarial;
mod attacks;

use std::collections::{BTreeMap, BTreeSet};

use battery_fl_core::secagg::crypto::{derive_key, Purpose};
use battery_fl_core::secagg::prg::mask_values;
use battery_fl_core::secagg::shamir::{reconstruct, split};
use battery_fl_core::secagg::{
    simulate_round, simulate_round_report, AdvertiseKeys, ClientId, CommGraph, ConsistencyCheck,
    ForwardedShares, Identity, KeyDirectory, MaskedInput, Pki, SecAggClient, SecAggConfig,
    SecAggServer, ServerStage, Setup, ShareKeys, Stage, UnmaskRequest, UnmaskResponse,
};
use battery_fl_core::{Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Deltas ~ U(-0.5, 0.5) and weights in [10, 100], seeded.
fn fleet(n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let inputs = (0..n)
        .map(|_| (0..dim).map(|_| rng.random::<f32>() - 0.5).collect())
        .collect();
    let weights = (0..n).map(|_| rng.random_range(10..=100) as f64).collect();
    (inputs, weights)
}

fn weighted_mean(inputs: &[Vec<f32>], weights: &[f64], who: &[ClientId]) -> Vec<f64> {
    let dim = inputs[0].len();
    let total: f64 = who.iter().map(|&u| weights[u as usize]).sum();
    (0..dim)
        .map(|j| {
            who.iter()
                .map(|&u| weights[u as usize] * inputs[u as usize][j] as f64)
                .sum::<f64>()
                / total
        })
        .collect()
}

fn pick_drops(n: usize, count: usize, stage: Stage, seed: u64) -> BTreeMap<usize, Stage> {
    let mut ids: Vec<usize> = (0..n).collect();
    ids.shuffle(&mut ChaCha20Rng::seed_from_u64(seed));
    ids.into_iter().take(count).map(|i| (i, stage)).collect()
}

/// Run one simulated round and check bit-exactness, the U-sets and the decoded mean.
fn check_round(config: &SecAggConfig, drops: &BTreeMap<usize, Stage>, seed: u64) -> Result<()> {
    let n = config.num_clients;
    let (inputs, weights) = fleet(n, 37, seed);
    let r = simulate_round_report(&inputs, &weights, config, drops, seed)?;
    let alive = |s: Stage| -> Vec<ClientId> {
        (0..n)
            .filter(|i| drops.get(i).is_none_or(|&d| d > s))
            .map(|i| i as u64)
            .collect()
    };
    assert_eq!(r.u1, alive(Stage::AdvertiseKeys));
    assert_eq!(r.u2, alive(Stage::ShareKeys));
    assert_eq!(r.u3, alive(Stage::MaskedInput));
    assert_eq!(r.output.survivors, r.u3);
    // bit-exact: the unmasked sum is the survivors' encodings summed mod 2^b
    assert_eq!(
        r.output.encoded_sum, r.plain_sum,
        "config {config:?}, drops {drops:?}"
    );
    // and the decoded mean is within the quantization tolerance of the float weighted mean
    let expected = weighted_mean(&inputs, &weights, &r.u3);
    let q_tot = r.decoded.quantized_weight as f64;
    let c = config.clipping_range;
    let tol = r.u3.len() as f64 * 2.0 * c / q_tot + 1e-5;
    for (got, want) in r.decoded.mean.iter().zip(&expected) {
        assert!(
            (*got as f64 - want).abs() <= tol,
            "got {got}, want {want}, tol {tol}"
        );
    }
    let w_total: f64 = r.u3.iter().map(|&u| weights[u as usize]).sum();
    assert!((r.decoded.total_weight - w_total).abs() < 1e-3 * r.u3.len() as f64);
    // the plain simulate_round returns the same mean
    assert_eq!(
        simulate_round(&inputs, &weights, config, drops, seed)?,
        r.decoded.mean
    );
    Ok(())
}

fn configs() -> Vec<SecAggConfig> {
    vec![
        SecAggConfig::new(10),                                      // complete, t = 7
        SecAggConfig::new(10).with_neighbours(7).with_threshold(4), // sparse Harary
        SecAggConfig::new(20),                                      // complete, t = 14
        SecAggConfig::new(20).with_neighbours(13).with_threshold(7),
    ]
}

#[test]
fn exact_sum_with_dropouts_at_every_stage() -> Result<()> {
    for (ci, config) in configs().iter().enumerate() {
        let n = config.num_clients;
        check_round(config, &BTreeMap::new(), 100 + ci as u64)?;
        for stage in Stage::ALL {
            for frac in [0.1, 0.3] {
                let count = (frac * n as f64).round() as usize;
                let seed = 1000 * ci as u64 + 10 * stage.index() as u64 + count as u64;
                check_round(config, &pick_drops(n, count, stage, seed), seed)?;
            }
        }
    }
    Ok(())
}

#[test]
fn exact_sum_with_dropouts_spread_over_all_stages_and_64_bit_modulus() -> Result<()> {
    let drops = BTreeMap::from([
        (3, Stage::AdvertiseKeys),
        (7, Stage::ShareKeys),
        (11, Stage::MaskedInput),
        (19, Stage::Unmask),
    ]);
    for bits in [32, 64] {
        check_round(&SecAggConfig::new(20).with_modulus_bits(bits), &drops, 5)?;
        let sparse = SecAggConfig::new(20).with_neighbours(13).with_threshold(7);
        check_round(&sparse.with_modulus_bits(bits), &drops, 6)?;
    }
    Ok(())
}

#[test]
fn refuses_below_threshold_at_every_stage() {
    for config in configs() {
        let n = config.num_clients;
        // one more dropout than the complete graph / the worst neighbourhood can absorb
        let count = n - config.t() + 1;
        for stage in Stage::ALL {
            let drops = pick_drops(n, count.max(n - config.k() + 1), stage, 77);
            let (inputs, weights) = fleet(n, 5, 1);
            match simulate_round(&inputs, &weights, &config, &drops, 3) {
                Err(Error::BelowThreshold {
                    stage: s,
                    needed,
                    got,
                }) => {
                    assert_eq!(s, stage.name());
                    assert_eq!(needed, config.t());
                    assert!(got < needed);
                }
                other => panic!("{config:?} {stage:?}: expected BelowThreshold, got {other:?}"),
            }
        }
    }
}

/// The server and clients of a round, driven by hand.
struct Round {
    server: SecAggServer,
    clients: Vec<SecAggClient>,
    inputs: Vec<Vec<f32>>,
    weights: Vec<f64>,
}

impl Round {
    fn new(config: SecAggConfig, dim: usize, seed: u8) -> Result<Self> {
        let n = config.num_clients;
        let ids: Vec<ClientId> = (0..n as u64).collect();
        let server = SecAggServer::new(config, 9, dim, &ids, [seed; 32])?;
        let setup = server.setup();
        let clients = ids
            .iter()
            .map(|&id| SecAggClient::new(id, &setup, [seed ^ (id as u8 + 1); 32]))
            .collect::<Result<_>>()?;
        let (inputs, weights) = fleet(n, dim, seed as u64);
        Ok(Round {
            server,
            clients,
            inputs,
            weights,
        })
    }

    fn keys(&mut self, skip: &[usize]) -> Result<BTreeMap<ClientId, KeyDirectory>> {
        for (i, c) in self.clients.iter_mut().enumerate() {
            if !skip.contains(&i) {
                self.server.receive_keys(c.id(), c.advertise_keys()?)?;
            }
        }
        self.server.finish_advertise()
    }

    fn shares(
        &mut self,
        dirs: &BTreeMap<ClientId, KeyDirectory>,
        skip: &[usize],
    ) -> Result<BTreeMap<ClientId, ForwardedShares>> {
        for (id, dir) in dirs {
            if !skip.contains(&(*id as usize)) {
                let msg = self.clients[*id as usize].share_keys(dir)?;
                self.server.receive_shares(*id, msg)?;
            }
        }
        self.server.finish_share_keys()
    }

    fn masked(
        &mut self,
        fwd: &BTreeMap<ClientId, ForwardedShares>,
        skip: &[usize],
    ) -> Result<BTreeMap<ClientId, UnmaskRequest>> {
        for (id, f) in fwd {
            let i = *id as usize;
            if !skip.contains(&i) {
                let msg = self.clients[i].masked_input(f, &self.inputs[i], self.weights[i])?;
                self.server.receive_masked_input(*id, &msg)?;
            }
        }
        self.server.finish_masked_input()
    }
}

#[test]
fn masked_vector_is_uniform_chi_square() -> Result<()> {
    // an all-zero delta encodes to the constant T/2: the worst case for uniformity
    let dim = 200_000;
    let mut round = Round::new(SecAggConfig::new(3).with_threshold(2), dim, 11)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[])?;
    let zeros = vec![0.0f32; dim];
    let masked = round.clients[0].masked_input(&fwd[&0], &zeros, 50.0)?;
    assert_eq!(masked.modulus_bits, 32);
    let values = &masked.values[1..];
    assert!(values.iter().all(|&v| v < 1 << 32));
    // 256 buckets by the top byte and by the bottom byte; chi-square with 255 degrees of
    // freedom has 0.999 quantile 330.5 (Wilson-Hilferty; scipy: 330.52)
    for shift in [24u32, 0] {
        let mut counts = [0u64; 256];
        for &v in values {
            counts[((v >> shift) & 0xff) as usize] += 1;
        }
        let e = values.len() as f64 / 256.0;
        let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 330.5, "shift {shift}: chi2 = {chi2}");
    }
    Ok(())
}

#[test]
fn prg_is_uniform_and_keys_are_separated() -> Result<()> {
    let seed = *derive_key(&[7u8; 32], Purpose::Mask, 0, 1, 2, 3)?;
    let v = mask_values(&seed, 100_000, 32)?;
    let mut counts = [0u64; 256];
    v.iter().for_each(|&x| counts[(x >> 24) as usize] += 1);
    let e = v.len() as f64 / 256.0;
    let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 330.5, "chi2 = {chi2}");
    // different purposes, rounds, pairs and runs give different keys and unrelated streams
    let others = [
        derive_key(&[7u8; 32], Purpose::ShareEncryption, 0, 1, 2, 3)?,
        derive_key(&[7u8; 32], Purpose::SelfMask, 0, 1, 2, 3)?,
        derive_key(&[7u8; 32], Purpose::Mask, 0, 2, 2, 3)?,
        derive_key(&[7u8; 32], Purpose::Mask, 0, 1, 2, 4)?,
        derive_key(&[7u8; 32], Purpose::Mask, 1, 1, 2, 3)?,
    ];
    for k in &others {
        assert_ne!(**k, seed);
        let w = mask_values(k, 1000, 32)?;
        assert!(w.iter().zip(&v).filter(|(a, b)| a == b).count() <= 1);
    }
    Ok(())
}

#[test]
fn tampered_ciphertext_is_rejected_and_not_used() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(5).with_threshold(3), 16, 21)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[])?;
    let mut bad = fwd[&0].clone();
    let last = bad.envelopes[1].ciphertext.len() - 1;
    bad.envelopes[1].ciphertext[last] ^= 0x01;
    match round.clients[0].masked_input(&bad, &round.inputs[0], round.weights[0]) {
        Err(Error::SecAgg { stage, reason }) => {
            assert_eq!(stage, "masked_input");
            assert!(reason.contains("authentication"), "{reason}");
        }
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    // a ciphertext moved to another source also fails (AD binds src and dst)
    let mut swapped = fwd[&0].clone();
    swapped.envelopes[0].ciphertext = swapped.envelopes[1].ciphertext.clone();
    assert!(round.clients[0]
        .masked_input(&swapped, &round.inputs[0], round.weights[0])
        .is_err());
    // nothing was stored: the genuine message still works and the round is exact
    let requests = round.masked(&fwd, &[])?;
    for (id, req) in &requests {
        let resp = round.clients[*id as usize].unmask(req)?;
        round.server.receive_unmask(*id, resp)?;
    }
    let out = round.server.finish()?;
    let mut plain = vec![0u64; 17];
    for (i, c) in round.clients.iter().enumerate() {
        for (s, e) in plain
            .iter_mut()
            .zip(c.encode_input(&round.inputs[i], round.weights[i])?)
        {
            *s = (*s + e) & 0xffff_ffff;
        }
    }
    assert_eq!(out.encoded_sum, plain);
    Ok(())
}

#[test]
fn client_never_reveals_both_share_kinds() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(6).with_threshold(4), 8, 31)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[])?;
    let requests = round.masked(&fwd, &[5])?; // client 5 dropped at stage 2
    let req = requests[&0].clone();
    assert_eq!(req.dropped, vec![5]);
    let client = &mut round.clients[0];
    // the same peer in both lists
    let mut both = req.clone();
    both.dropped.push(1);
    assert!(matches!(client.unmask(&both), Err(Error::SecAgg { .. })));
    // a legitimate request succeeds ...
    let first = client.unmask(&req)?;
    assert_eq!(first.shares.len(), 6);
    // ... and is idempotent ...
    assert_eq!(client.unmask(&req)?, first);
    // ... but asking later for the mask-key share of a live peer is refused
    let mut flip = req.clone();
    flip.alive.retain(|&v| v != 1);
    flip.dropped.push(1);
    match client.unmask(&flip) {
        Err(Error::SecAgg { stage, reason }) => {
            assert_eq!(stage, "unmask");
            assert!(reason.contains("both share kinds"), "{reason}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // and so is the self-mask seed of the dropped peer
    let mut flip = req.clone();
    flip.dropped.clear();
    flip.alive.push(5);
    assert!(client.unmask(&flip).is_err());
    // a client never reveals its own mask key, nor shares of strangers
    let mut me = req.clone();
    me.alive.retain(|&v| v != 0);
    me.dropped.push(0);
    assert!(client.unmask(&me).is_err());
    let mut stranger = req;
    stranger.dropped.push(99);
    assert!(client.unmask(&stranger).is_err());
    Ok(())
}

#[test]
fn share_key_dropouts_are_left_out_of_the_masking_graph() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(7).with_threshold(4), 8, 41)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[2])?; // client 2 in U1 \ U2
    assert!(!fwd.contains_key(&2));
    assert!(fwd.values().all(|f| f.envelopes.iter().all(|e| e.src != 2)));
    let requests = round.masked(&fwd, &[4])?;
    for (id, req) in &requests {
        assert!(
            !req.alive.contains(&2) && !req.dropped.contains(&2),
            "U1\\U2 never listed"
        );
        assert_eq!(req.dropped, vec![4]);
        assert!(!round.clients[*id as usize].masked_with().contains(&2));
    }
    // asking about client 2 anyway is refused by the client
    let mut req = requests[&0].clone();
    req.dropped.push(2);
    assert!(round.clients[0].unmask(&req).is_err());
    Ok(())
}

#[test]
fn server_outputs_nothing_below_threshold_in_unmask() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(6).with_threshold(4), 8, 51)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[])?;
    let requests = round.masked(&fwd, &[])?;
    for (id, req) in requests.iter().take(3) {
        let resp = round.clients[*id as usize].unmask(req)?;
        round.server.receive_unmask(*id, resp)?;
    }
    assert!(matches!(
        round.server.finish(),
        Err(Error::BelowThreshold {
            needed: 4,
            got: 3,
            ..
        })
    ));
    assert_eq!(round.server.stage(), ServerStage::Failed);
    assert!(
        round.server.finish().is_err(),
        "a failed round never outputs"
    );
    Ok(())
}

#[test]
fn server_rejects_protocol_violations() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(5).with_threshold(3), 4, 61)?;
    let keys = round.clients[0].advertise_keys()?;
    round.server.receive_keys(0, keys.clone())?;
    assert!(
        round.server.receive_keys(0, keys.clone()).is_err(),
        "duplicate"
    );
    let copy = AdvertiseKeys { client: 1, ..keys };
    assert!(
        round.server.receive_keys(1, copy).is_err(),
        "reused public key"
    );
    for c in &mut round.clients[1..] {
        round.server.receive_keys(c.id(), c.advertise_keys()?)?;
    }
    let dirs = round.server.finish_advertise()?;
    let mut msg = round.clients[0].share_keys(&dirs[&0])?;
    msg.envelopes.pop();
    assert!(
        round.server.receive_shares(0, msg).is_err(),
        "must address every neighbour"
    );
    // a directory with altered own keys is refused by the client
    let mut dir = dirs[&1].clone();
    if let Some(me) = dir.peers.iter_mut().find(|p| p.client == 1) {
        me.mask_pk[0] ^= 1;
    }
    assert!(round.clients[1].share_keys(&dir).is_err());
    // a masked input of the wrong length or modulus is rejected
    let bad = MaskedInput {
        run: 0,
        round: 9,
        client: 0,
        modulus_bits: 32,
        values: vec![0; 3],
    };
    assert!(
        round.server.receive_masked_input(0, &bad).is_err(),
        "wrong stage"
    );
    Ok(())
}

#[test]
fn overflow_and_input_checks() {
    // n·T < M: 1024 clients at T = 2^22 wrap a 32-bit modulus
    assert!(matches!(
        SecAggConfig::new(1024).validate(),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(SecAggConfig::new(1024)
        .with_modulus_bits(64)
        .validate()
        .is_ok());
    let big = SecAggConfig::new(4)
        .with_target_range(1 << 31)
        .with_threshold(3);
    let (inputs, weights) = fleet(4, 3, 1);
    assert!(matches!(
        simulate_round(&inputs, &weights, &big, &BTreeMap::new(), 1),
        Err(Error::InvalidConfig { .. })
    ));
    // a weight above W could overflow q_tot: rejected
    let cfg = SecAggConfig::new(4).with_threshold(3).with_max_weight(50.0);
    let heavy = vec![10.0, 20.0, 60.0, 30.0];
    assert!(matches!(
        simulate_round(&inputs, &heavy, &cfg, &BTreeMap::new(), 1),
        Err(Error::RejectedUpdate { .. })
    ));
    // inputs of different lengths
    let mut ragged = inputs.clone();
    ragged[1].push(0.0);
    assert!(matches!(
        simulate_round(&ragged, &weights, &cfg, &BTreeMap::new(), 1),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn harary_graph_is_regular_in_the_protocol() -> Result<()> {
    let config = SecAggConfig::new(20).with_neighbours(7).with_threshold(5);
    let mut round = Round::new(config, 4, 71)?;
    let dirs = round.keys(&[])?;
    let graph: &CommGraph = round.server.graph().ok_or(Error::Aggregation {
        reason: "no graph".into(),
    })?;
    for (id, dir) in &dirs {
        assert_eq!(dir.peers.len(), 7);
        assert!(dir.peers.iter().any(|p| p.client == *id));
        let degree = (0..20)
            .filter(|&v| v != *id && graph.are_neighbours(*id, v))
            .count();
        assert_eq!(degree, 6);
    }
    Ok(())
}

#[test]
fn shamir_threshold_exactly() -> Result<()> {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let holders: Vec<ClientId> = (100..113).collect();
    let t = 9;
    let shares = split(&secret, t, &holders, &mut rng)?;
    let mut pairs: Vec<_> = holders.iter().copied().zip(shares).collect();
    pairs.shuffle(&mut rng);
    assert_eq!(reconstruct(&pairs[..t], t)?, secret);
    assert!(matches!(
        reconstruct(&pairs[..t - 1], t),
        Err(Error::BelowThreshold { .. })
    ));
    if let Ok(v) = reconstruct(&pairs[..t - 1], t - 1) {
        assert_ne!(v, secret);
    }
    Ok(())
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SecAggClient>();
    check::<SecAggServer>();
    check::<SecAggConfig>();
    check::<CommGraph>();
    check::<UnmaskResponse>();
    check::<battery_fl_core::secagg::AggregateOutput>();
    let _ = BTreeSet::<u8>::new();
}
