//! Attacks on the protocol, each performed against the real state machines: a node writing
//! in another node's name, messages replayed from another run, a malicious server isolating
//! a victim's input with colluders (and the client policy that refuses such setups), and an
//! out-of-range encoding that would shift the mean.

use battery_fl_core::secagg::crypto::{agree, open, seal, KeyPair};
use battery_fl_core::secagg::prg::{apply_masks, MaskTerm};
use battery_fl_core::secagg::shamir::SecretShare;
use battery_fl_core::secagg::{
    ClientPolicy, ConsistencySignature, Envelope, PeerKeys, RevealedShare, ShareKind,
};

use super::*;

fn assert_secagg_refusal<T: std::fmt::Debug>(r: Result<T>, stage: &str, needle: &str) {
    match r {
        Err(Error::SecAgg { stage: s, reason }) => {
            assert_eq!(s, stage, "{reason}");
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected a {stage} refusal containing {needle:?}, got {other:?}"),
    }
}

/// The survivors' encodings summed mod 2^32.
fn plain_sum(round: &Round, who: &[usize], dim: usize) -> Result<Vec<u64>> {
    let mut plain = vec![0u64; dim + 1];
    for &i in who {
        let enc = round.clients[i].encode_input(&round.inputs[i], round.weights[i])?;
        plain
            .iter_mut()
            .zip(enc)
            .for_each(|(s, e)| *s = (*s + e) & 0xffff_ffff);
    }
    Ok(plain)
}

/// Node 1 writes in node 2's name at every stage (its own fresh keys, an envelope, a masked
/// input, an unmask response): the server refuses each message, its state is unchanged, and
/// node 2's genuine messages are still accepted and its input aggregated exactly.
#[test]
fn a_node_cannot_send_in_another_nodes_name() -> Result<()> {
    let dim = 6;
    let mut round = Round::new(SecAggConfig::new(5).with_threshold(3), dim, 101)?;
    let setup = round.server.setup();
    // stage 0: node 1 advertises keys of its own under id 2, before node 2 does
    let mut impostor = SecAggClient::new(2, &setup, [0xee; 32])?;
    let forged = impostor.advertise_keys()?;
    assert_secagg_refusal(
        round.server.receive_keys(1, forged),
        "advertise_keys",
        "in the name of client 2",
    );
    let dirs = round.keys(&[])?;
    assert_eq!(
        round.server.u1().len(),
        5,
        "node 2's genuine keys were accepted"
    );
    let genuine_pk = round.clients[2].advertise_keys()?.mask_pk;
    assert!(dirs[&0]
        .peers
        .iter()
        .any(|p| p.client == 2 && p.mask_pk == genuine_pk));
    // stage 1: a ShareKeys of node 2 sent by node 1, and node 1's own with an envelope
    // claiming to come from node 2
    let shares2 = round.clients[2].share_keys(&dirs[&2])?;
    assert_secagg_refusal(
        round.server.receive_shares(1, shares2.clone()),
        "share_keys",
        "in the name of client 2",
    );
    let mut shares1 = round.clients[1].share_keys(&dirs[&1])?;
    shares1.envelopes[0].src = 2;
    assert_secagg_refusal(
        round.server.receive_shares(1, shares1.clone()),
        "share_keys",
        "envelope in the name of client 2",
    );
    shares1.envelopes[0].src = 1;
    round.server.receive_shares(1, shares1)?;
    round.server.receive_shares(2, shares2)?;
    for id in [0u64, 3, 4] {
        let msg = round.clients[id as usize].share_keys(&dirs[&id])?;
        round.server.receive_shares(id, msg)?;
    }
    let fwd = round.server.finish_share_keys()?;
    // stage 2: node 1 sends a garbage masked input under id 2 first
    let garbage = MaskedInput {
        run: 0,
        round: 9,
        client: 2,
        modulus_bits: 32,
        values: vec![12345; dim + 1],
    };
    assert_secagg_refusal(
        round.server.receive_masked_input(1, &garbage),
        "masked_input",
        "in the name of client 2",
    );
    assert!(round.server.u3().is_empty(), "state unchanged");
    let requests = round.masked(&fwd, &[])?;
    assert!(round.server.u3().contains(&2));
    // stage 3: node 1 answers node 2's unmask request in node 2's name
    let resp2 = round.clients[2].unmask(&requests[&2])?;
    assert_secagg_refusal(
        round.server.receive_unmask(1, resp2.clone()),
        "unmask",
        "in the name of client 2",
    );
    for (id, req) in &requests {
        let resp = if *id == 2 {
            resp2.clone()
        } else {
            round.clients[*id as usize].unmask(req)?
        };
        round.server.receive_unmask(*id, resp)?;
    }
    let out = round.server.finish()?;
    assert_eq!(out.survivors, vec![0, 1, 2, 3, 4]);
    assert_eq!(out.encoded_sum, plain_sum(&round, &[0, 1, 2, 3, 4], dim)?);
    Ok(())
}

/// A signed round of `n` clients (client i has identity seed [i + 1; 32] and round seed
/// `[i + 50; 32]`, reused across runs: the worst case for replays) in run `run`, round 1.
fn signed_run(n: usize, t: usize, run: u64) -> Result<Round> {
    let identities: Vec<Identity> = (0..n)
        .map(|i| Identity::from_seed([i as u8 + 1; 32]))
        .collect();
    let keys: BTreeMap<ClientId, [u8; 32]> = identities
        .iter()
        .enumerate()
        .map(|(i, id)| (i as u64, id.verifying_key()))
        .collect();
    let pki = Pki::new(&keys)?;
    let ids: Vec<ClientId> = (0..n as u64).collect();
    let config = SecAggConfig::new(n).with_threshold(t);
    let server = SecAggServer::new(config, 1, 4, &ids, [3; 32])?
        .with_run(run)
        .with_pki(pki.clone());
    let setup = server.setup();
    assert_eq!((setup.run, setup.round), (run, 1));
    let clients = identities
        .into_iter()
        .enumerate()
        .map(|(i, identity)| {
            let c = SecAggClient::new(i as u64, &setup, [i as u8 + 50; 32])?;
            Ok(c.with_identity(identity, pki.clone()))
        })
        .collect::<Result<_>>()?;
    let (inputs, weights) = fleet(n, 4, run);
    Ok(Round {
        server,
        clients,
        inputs,
        weights,
    })
}

/// Messages of run 1, round 1 replayed into run 2, round 1 (same clients, same round seeds,
/// same round number): the signed AdvertiseKeys is refused as is and with its run field
/// rewritten (the signature binds the run), a ciphertext of run 1 fails authentication in
/// run 2 (the key derivation and the AD bind the run), and run 2 still completes exactly.
#[test]
fn messages_of_another_run_are_refused() -> Result<()> {
    let (n, t) = (4, 3);
    let mut run1 = signed_run(n, t, 1)?;
    let mut run2 = signed_run(n, t, 2)?;
    let keys1 = run1.clients[0].advertise_keys()?;
    assert_secagg_refusal(
        run2.server.receive_keys(0, keys1.clone()),
        "advertise_keys",
        "run 1",
    );
    let rewritten = AdvertiseKeys { run: 2, ..keys1 };
    assert_secagg_refusal(
        run2.server.receive_keys(0, rewritten),
        "advertise_keys",
        "invalid signature",
    );
    // both runs up to the forwarded shares
    let dirs1 = run1.keys(&[])?;
    let fwd1 = run1.shares(&dirs1, &[])?;
    let dirs2 = run2.keys(&[])?;
    // a run-1 directory is refused by a run-2 client
    let mut c0 = run2.clients[0].clone();
    assert_secagg_refusal(c0.share_keys(&dirs1[&0]), "share_keys", "run 1");
    let fwd2 = run2.shares(&dirs2, &[])?;
    // the same seeds give the same public keys, yet run 1's ciphertexts do not open in run 2
    assert_eq!(dirs1[&0].peers[1].enc_pk, dirs2[&0].peers[1].enc_pk);
    let replayed = ForwardedShares {
        run: 2,
        ..fwd1[&0].clone()
    };
    let (x, w) = (run2.inputs[0].clone(), run2.weights[0]);
    assert_secagg_refusal(
        run2.clients[0].masked_input(&replayed, &x, w),
        "masked_input",
        "authentication",
    );
    assert_secagg_refusal(
        run2.clients[0].masked_input(&fwd1[&0], &x, w),
        "masked_input",
        "run 1",
    );
    // a run-1 masked input is refused by the run-2 server
    let (x1, w1) = (run1.inputs[1].clone(), run1.weights[1]);
    let masked1 = run1.clients[1].masked_input(&fwd1[&1], &x1, w1)?;
    assert_secagg_refusal(
        run2.server.receive_masked_input(1, &masked1),
        "masked_input",
        "run 1",
    );
    // run 2 is unaffected and exact
    for (id, f) in &fwd2 {
        let i = *id as usize;
        let msg = run2.clients[i].masked_input(f, &run2.inputs[i], run2.weights[i])?;
        run2.server.receive_masked_input(*id, &msg)?;
    }
    for (id, check) in run2.server.start_consistency_check()? {
        let sig = run2.clients[id as usize].consistency_check(&check)?;
        run2.server.receive_consistency(id, sig)?;
    }
    for (id, req) in run2.server.finish_consistency_check()? {
        let resp = run2.clients[id as usize].unmask(&req)?;
        run2.server.receive_unmask(id, resp)?;
    }
    let out = run2.server.finish()?;
    assert_eq!(out.run, 2);
    assert_eq!(out.encoded_sum, plain_sum(&run2, &[0, 1, 2, 3], 4)?);
    Ok(())
}

/// n = 3, t = 2, honest-but-curious mode: a server that reports the third node as dropped
/// leaves the victim's neighbourhood {victim, colluder}; the round completes and the
/// colluder, subtracting its own encoding, recovers the victim's encoding exactly. A victim
/// that pins `min_threshold = 3` (one colluder) refuses the setup before sending anything,
/// with or without an identity, and with t = 3 a directory {victim, colluder} is refused.
#[test]
fn victim_refuses_a_setup_where_one_colluder_suffices() -> Result<()> {
    let dim = 5;
    let config = SecAggConfig::new(3).with_threshold(2);
    // the attack, without a policy (the default accepts n = 3, t = 2 in this mode)
    let mut round = Round::new(config.clone(), dim, 111)?;
    let dirs = round.keys(&[2])?; // node 2's keys are "lost"
    assert_eq!(
        dirs[&0].peers.iter().map(|p| p.client).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let fwd = round.shares(&dirs, &[])?;
    let requests = round.masked(&fwd, &[])?;
    for (id, req) in &requests {
        let resp = round.clients[*id as usize].unmask(req)?;
        round.server.receive_unmask(*id, resp)?;
    }
    let out = round.server.finish()?;
    let colluder = round.clients[1].encode_input(&round.inputs[1], round.weights[1])?;
    let victim = round.clients[0].encode_input(&round.inputs[0], round.weights[0])?;
    let recovered: Vec<u64> = out
        .encoded_sum
        .iter()
        .zip(&colluder)
        .map(|(s, c)| s.wrapping_sub(*c) & 0xffff_ffff)
        .collect();
    assert_eq!(recovered, victim, "the victim's input is exposed");

    // the same victim pinning min_threshold = 3 refuses
    let setup = round.server.setup();
    let policy = ClientPolicy {
        min_clients: 3,
        min_threshold: 3,
    };
    let mut careful = SecAggClient::new(0, &setup, [1; 32])?.with_policy(policy.clone());
    assert_secagg_refusal(
        careful.advertise_keys(),
        "advertise_keys",
        "client policy: t = 2 < min_threshold = 3",
    );
    assert!(careful.advertise_keys().is_err(), "still refused");

    // the same in the active-adversary mode (signatures do not help against this)
    let identity = Identity::from_seed([7; 32]);
    let pki = Pki::new(&BTreeMap::from([(0, identity.verifying_key())]))?;
    let mut signed = SecAggClient::new(0, &setup, [1; 32])?
        .with_identity(identity, pki)
        .with_policy(policy);
    assert_secagg_refusal(signed.advertise_keys(), "advertise_keys", "client policy");
    // ... and with t = 3 a directory {victim, colluder} is below the threshold
    let ids: Vec<Identity> = (0..2).map(|i| Identity::from_seed([i + 7; 32])).collect();
    let pki = Pki::new(
        &ids.iter()
            .enumerate()
            .map(|(i, d)| (i as u64, d.verifying_key()))
            .collect(),
    )?;
    let server = SecAggServer::new(config.with_threshold(3), 9, dim, &[0, 1, 2], [5; 32])?;
    let setup = server.setup();
    let mut pair: Vec<SecAggClient> = ids
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let c = SecAggClient::new(i as u64, &setup, [i as u8 + 1; 32])?;
            Ok(c.with_identity(d, pki.clone()))
        })
        .collect::<Result<_>>()?;
    let peers = pair
        .iter_mut()
        .map(|c| {
            let k = c.advertise_keys()?;
            Ok(PeerKeys {
                client: k.client,
                mask_pk: k.mask_pk,
                enc_pk: k.enc_pk,
                signature: k.signature,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dir = KeyDirectory {
        run: 0,
        round: 9,
        recipient: 0,
        peers,
    };
    assert!(matches!(
        pair[0].share_keys(&dir),
        Err(Error::BelowThreshold {
            needed: 3,
            got: 2,
            ..
        })
    ));
    Ok(())
}

fn peer(dirs: &BTreeMap<ClientId, KeyDirectory>, v: ClientId) -> Result<PeerKeys> {
    dirs[&0]
        .peers
        .iter()
        .find(|p| p.client == v)
        .cloned()
        .ok_or(Error::Aggregation {
            reason: format!("no keys of {v}"),
        })
}

/// Signed mode, n = 5, t = 3 (accepted by the default policy, which protects against a
/// malicious server alone) against a server colluding with node 4, which runs its own code.
/// The server forwards the victim (node 0) the shares of node 3 and of the colluder only,
/// gives nodes 1 and 2 the victim's and node 3's shares, and discards node 3's masked input.
/// Every honest check passes: U3 = {0, 1, 2, 4} gets t signatures, nodes 1 and 2 find their
/// requests consistent with it, and only the victim refuses to answer (its live neighbours
/// are itself and the colluder). The shares of nodes 1, 2 and the colluder still give b_0
/// and node 3's mask key: the victim's input is isolated exactly (2t ≤ n + c). With
/// `min_threshold = 3` (one colluder) the victim refuses this setup.
#[test]
fn isolation_with_one_colluder_and_the_policy_that_refuses_it() -> Result<()> {
    let (n, t, victim) = (5, 3, 0usize);
    let mut round = signed_run(n, t, 5)?;
    let setup = round.server.setup();
    let (run, rnd) = (setup.run, setup.round);
    // the colluder's own keys, signed with its identity (client 4's seed in signed_run)
    let identity = Identity::from_seed([5; 32]);
    let (mask, enc) = (
        KeyPair::from_seed([0xc0; 32]),
        KeyPair::from_seed([0xc1; 32]),
    );
    let (mask_pk, enc_pk) = (mask.public_bytes(), enc.public_bytes());
    let signature = identity.sign_keys(run, rnd, 4, &mask_pk, &enc_pk)?;
    for i in 0..4 {
        let keys = round.clients[i].advertise_keys()?;
        round.server.receive_keys(i as u64, keys)?;
    }
    let keys = AdvertiseKeys {
        run,
        round: rnd,
        client: 4,
        mask_pk,
        enc_pk,
        signature,
    };
    round.server.receive_keys(4, keys)?;
    let dirs = round.server.finish_advertise()?;
    let mut envelopes: Vec<Envelope> = Vec::new();
    for id in 0..4u64 {
        envelopes.extend(round.clients[id as usize].share_keys(&dirs[&id])?.envelopes);
    }
    // the colluder's envelope to the victim (any well-formed shares)
    let enc_key = |v: ClientId| -> Result<_> {
        let shared = agree(&enc, &peer(&dirs, v)?.enc_pk)?;
        derive_key(&shared[..], Purpose::ShareEncryption, run, rnd, 4, v)
    };
    envelopes.push(Envelope {
        src: 4,
        dst: 0,
        ciphertext: seal(&*enc_key(0)?, run, rnd, 4, 0, &[0u8; 128])?,
    });
    let forward = |to: u64, from: &[u64]| ForwardedShares {
        run,
        round: rnd,
        recipient: to,
        envelopes: envelopes
            .iter()
            .filter(|e| e.dst == to && from.contains(&e.src))
            .cloned()
            .collect(),
    };
    let mut masked = BTreeMap::new();
    for (to, from) in [(0, vec![3, 4]), (1, vec![0, 2, 3]), (2, vec![0, 1, 3])] {
        let i = to as usize;
        let m = round.clients[i].masked_input(
            &forward(to, &from),
            &round.inputs[i],
            round.weights[i],
        )?;
        masked.insert(to, m.values);
    }
    // node 3's masked input is "never received"; U3 = {0, 1, 2, 4}
    let u3 = vec![0, 1, 2, 4];
    let mut signatures = vec![ConsistencySignature {
        run,
        round: rnd,
        client: 4,
        signature: identity.sign_survivors(run, rnd, &u3)?,
    }];
    for v in [1u64, 2] {
        let check = ConsistencyCheck {
            run,
            round: rnd,
            recipient: v,
            survivors: u3.clone(),
        };
        signatures.push(round.clients[v as usize].consistency_check(&check)?);
    }
    let request = |v: u64, alive: Vec<u64>, dropped: Vec<u64>| UnmaskRequest {
        run,
        round: rnd,
        recipient: v,
        alive,
        dropped,
        signatures: signatures.clone(),
    };
    let check = ConsistencyCheck {
        run,
        round: rnd,
        recipient: 0,
        survivors: u3.clone(),
    };
    round.clients[victim].consistency_check(&check)?;
    assert!(matches!(
        round.clients[victim].unmask(&request(0, vec![0, 4], vec![3])),
        Err(Error::BelowThreshold { .. })
    ));
    // nodes 1 and 2 answer: shares of b_0 and of node 3's mask key
    let mut shares: BTreeMap<(ClientId, ShareKind), Vec<(ClientId, _)>> = BTreeMap::new();
    for v in [1u64, 2] {
        let response = round.clients[v as usize].unmask(&request(v, vec![0, 1, 2], vec![3]))?;
        for RevealedShare { owner, kind, share } in response.shares {
            shares.entry((owner, kind)).or_default().push((v, share));
        }
    }
    // the colluder's own shares, from the envelopes the server forwards it
    for src in [0u64, 3] {
        let e = envelopes
            .iter()
            .find(|e| e.src == src && e.dst == 4)
            .ok_or(Error::Aggregation {
                reason: "no envelope".into(),
            })?;
        let shared = agree(&enc, &peer(&dirs, src)?.enc_pk)?;
        let key = derive_key(&shared[..], Purpose::ShareEncryption, run, rnd, 4, src)?;
        let plain = open(&key, run, rnd, src, 4, &e.ciphertext)?;
        let (kind, bytes) = match src {
            0 => (ShareKind::SelfMaskSeed, &plain[..64]),
            _ => (ShareKind::MaskKey, &plain[64..]),
        };
        let share = SecretShare::from_bytes(bytes)?;
        shares.entry((src, kind)).or_default().push((4, share));
    }
    let b0 = reconstruct(&shares[&(0, ShareKind::SelfMaskSeed)], t)?;
    let sk3 = KeyPair::from_seed(reconstruct(&shares[&(3, ShareKind::MaskKey)], t)?);
    let pk0 = peer(&dirs, 0)?.mask_pk;
    let s03 = derive_key(&agree(&sk3, &pk0)?[..], Purpose::Mask, run, rnd, 0, 3)?;
    let s04 = derive_key(&agree(&mask, &pk0)?[..], Purpose::Mask, run, rnd, 0, 4)?;
    // the victim (smallest id) added PRG(b_0) − PRG(s_03) − PRG(s_04)
    let mut y0 = masked[&0].clone();
    let terms = [
        MaskTerm::sub(*derive_key(&b0, Purpose::SelfMask, run, rnd, 0, 0)?),
        MaskTerm::add(*s03),
        MaskTerm::add(*s04),
    ];
    apply_masks(&mut y0, &terms, 32)?;
    let x0 = round.clients[victim].encode_input(&round.inputs[victim], round.weights[victim])?;
    assert_eq!(y0, x0, "the victim's input is isolated");

    // a victim pinning min_threshold = 3 (one colluder) refuses this setup ...
    let policy = ClientPolicy {
        min_threshold: 3,
        ..ClientPolicy::default()
    };
    let mut careful = signed_run(n, t, 5)?.clients[victim]
        .clone()
        .with_policy(policy.clone());
    assert_secagg_refusal(
        careful.advertise_keys(),
        "advertise_keys",
        "2t = 6 < n + min_threshold - 1 = 7",
    );
    // ... and accepts t = 4
    let mut strict = signed_run(n, 4, 5)?.clients[victim]
        .clone()
        .with_policy(policy);
    strict.advertise_keys()?;
    Ok(())
}

/// A client adds 3·T to one coordinate of its masked vector (or subtracts it, wrapping
/// mod 2^32): the unmasked sum leaves [0, |U3|·T], and the round fails with a typed error
/// instead of outputting a shifted mean.
#[test]
fn out_of_range_encoding_fails_the_round() -> Result<()> {
    let dim = 8;
    let config = SecAggConfig::new(5).with_threshold(3);
    let tr = config.target_range;
    for shift in [3 * tr, (1u64 << 32) - 3 * tr] {
        let mut round = Round::new(config.clone(), dim, 121)?;
        let dirs = round.keys(&[])?;
        let fwd = round.shares(&dirs, &[])?;
        for (id, f) in &fwd {
            let i = *id as usize;
            let mut msg = round.clients[i].masked_input(f, &round.inputs[i], round.weights[i])?;
            if i == 2 {
                msg.values[4] = (msg.values[4] + shift) & 0xffff_ffff;
            }
            round.server.receive_masked_input(*id, &msg)?;
        }
        for (id, req) in round.server.finish_masked_input()? {
            let resp = round.clients[id as usize].unmask(&req)?;
            round.server.receive_unmask(id, resp)?;
        }
        assert_secagg_refusal(round.server.finish(), "decode", "coordinate 3");
        assert_eq!(round.server.stage(), ServerStage::Failed);
    }
    Ok(())
}
