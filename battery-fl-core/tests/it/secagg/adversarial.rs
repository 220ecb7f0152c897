//! Secure aggregation against a hostile network and server: malformed message bytes give
//! typed errors, and the active-adversary mode (Ed25519 identities, PKI, consistency check)
//! stays exact and rejects key substitution and equivocation.

use super::*;

fn garbage_inputs(valid: &[u8]) -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut out: Vec<Vec<u8>> = (0..=valid.len().min(400))
        .map(|n| valid[..n].to_vec())
        .collect();
    out.extend((0..200).map(|i| {
        let mut v = vec![0u8; i];
        rng.fill_bytes(&mut v);
        v
    }));
    for i in 0..valid.len().min(64) {
        let mut v = valid.to_vec();
        v[i] ^= 0xff;
        out.push(v);
    }
    let mut long = valid.to_vec();
    long.push(0);
    out.push(long);
    out
}

fn assert_decode_errors<T: std::fmt::Debug + PartialEq>(
    valid: &[u8],
    decode: fn(&[u8]) -> Result<T>,
) {
    for bytes in garbage_inputs(valid) {
        match decode(&bytes) {
            Err(Error::SecAgg { stage, .. }) => assert_eq!(stage, "decode"),
            Ok(_) if bytes.len() == valid.len() => {} // a flipped payload byte may still parse
            other => panic!(
                "{} bytes: expected a decode error, got {other:?}",
                bytes.len()
            ),
        }
    }
}

#[test]
fn message_decoding_of_garbage_gives_typed_errors() -> Result<()> {
    let mut round = Round::new(SecAggConfig::new(4).with_threshold(3), 6, 81)?;
    let setup: Setup = round.server.setup();
    assert_eq!(Setup::from_bytes(&setup.to_bytes())?, setup);
    assert_decode_errors(&setup.to_bytes(), Setup::from_bytes);
    let keys = round.clients[0].advertise_keys()?;
    assert_decode_errors(&keys.to_bytes(), AdvertiseKeys::from_bytes);
    for c in &mut round.clients[1..] {
        round.server.receive_keys(c.id(), c.advertise_keys()?)?;
    }
    round.server.receive_keys(0, keys)?;
    let dirs = round.server.finish_advertise()?;
    assert_eq!(KeyDirectory::from_bytes(&dirs[&0].to_bytes())?, dirs[&0]);
    assert_decode_errors(&dirs[&0].to_bytes(), KeyDirectory::from_bytes);
    let mut fwd_all = BTreeMap::new();
    for (id, dir) in &dirs {
        let msg = round.clients[*id as usize].share_keys(dir)?;
        assert_eq!(ShareKeys::from_bytes(&msg.to_bytes())?, msg);
        assert_decode_errors(&msg.to_bytes(), ShareKeys::from_bytes);
        round.server.receive_shares(*id, msg)?;
    }
    for (id, f) in round.server.finish_share_keys()? {
        assert_eq!(ForwardedShares::from_bytes(&f.to_bytes())?, f);
        assert_decode_errors(&f.to_bytes(), ForwardedShares::from_bytes);
        fwd_all.insert(id, f);
    }
    for (id, f) in &fwd_all {
        let i = *id as usize;
        let msg = round.clients[i].masked_input(f, &round.inputs[i], round.weights[i])?;
        assert_eq!(MaskedInput::from_bytes(&msg.to_bytes())?, msg);
        assert_decode_errors(&msg.to_bytes(), MaskedInput::from_bytes);
        round.server.receive_masked_input(*id, &msg)?;
    }
    let requests = round.server.finish_masked_input()?;
    for (id, req) in &requests {
        assert_eq!(UnmaskRequest::from_bytes(&req.to_bytes())?, *req);
        assert_decode_errors(&req.to_bytes(), UnmaskRequest::from_bytes);
        let resp = round.clients[*id as usize].unmask(req)?;
        assert_eq!(UnmaskResponse::from_bytes(&resp.to_bytes())?, resp);
        assert_decode_errors(&resp.to_bytes(), UnmaskResponse::from_bytes);
        // JSON works too
        let json = serde_json::to_string(&resp).map_err(|e| Error::Aggregation {
            reason: e.to_string(),
        })?;
        let back: UnmaskResponse = serde_json::from_str(&json).map_err(|e| Error::Aggregation {
            reason: e.to_string(),
        })?;
        assert_eq!(back, resp);
        round
            .server
            .receive_unmask(*id, UnmaskResponse::from_bytes(&resp.to_bytes())?)?;
    }
    let out = round.server.finish()?;
    assert_eq!(out.survivors.len(), 4);
    Ok(())
}

/// A round in active-adversary mode: Ed25519 identities, a PKI and the consistency check.
fn signed_round(n: usize, t: usize, seed: u8) -> Result<Round> {
    let identities: Vec<Identity> = (0..n)
        .map(|i| Identity::from_seed([seed.wrapping_add(i as u8) ^ 0x5a; 32]))
        .collect();
    let keys: BTreeMap<ClientId, [u8; 32]> = identities
        .iter()
        .enumerate()
        .map(|(i, id)| (i as u64, id.verifying_key()))
        .collect();
    let pki = Pki::new(&keys)?;
    let mut round = Round::new(SecAggConfig::new(n).with_threshold(t), 12, seed)?;
    round.server = round.server.clone().with_pki(pki.clone());
    round.clients = round
        .clients
        .drain(..)
        .zip(identities)
        .map(|(c, id)| c.with_identity(id, pki.clone()))
        .collect();
    Ok(round)
}

impl Round {
    /// Stage 2 in active mode: masked inputs, then the consistency check.
    fn signed_masked(
        &mut self,
        fwd: &BTreeMap<ClientId, ForwardedShares>,
        skip_input: &[usize],
        skip_signature: &[usize],
    ) -> Result<BTreeMap<ClientId, UnmaskRequest>> {
        for (id, f) in fwd {
            let i = *id as usize;
            if !skip_input.contains(&i) {
                let msg = self.clients[i].masked_input(f, &self.inputs[i], self.weights[i])?;
                self.server.receive_masked_input(*id, &msg)?;
            }
        }
        assert!(
            self.server.finish_masked_input().is_err(),
            "the check is mandatory"
        );
        let checks: BTreeMap<ClientId, ConsistencyCheck> = self.server.start_consistency_check()?;
        for (id, check) in &checks {
            if !skip_signature.contains(&(*id as usize)) {
                let sig = self.clients[*id as usize].consistency_check(check)?;
                self.server.receive_consistency(*id, sig)?;
            }
        }
        self.server.finish_consistency_check()
    }
}

#[test]
fn active_mode_round_with_consistency_check_is_exact() -> Result<()> {
    let n = 8;
    let mut round = signed_round(n, 5, 91)?;
    let dirs = round.keys(&[])?;
    let fwd = round.shares(&dirs, &[1])?; // U1 \ U2 = {1}
    let requests = round.signed_masked(&fwd, &[4], &[6])?; // 4 drops in stage 2, 6 does not sign
    assert!(
        !requests.contains_key(&6),
        "only signers are asked to unmask"
    );
    for (id, req) in &requests {
        assert!(req.signatures.len() >= 5);
        let resp = round.clients[*id as usize].unmask(req)?;
        round.server.receive_unmask(*id, resp)?;
    }
    let out = round.server.finish()?;
    let mut plain = vec![0u64; 13];
    for &u in &out.survivors {
        let i = u as usize;
        let enc = round.clients[i].encode_input(&round.inputs[i], round.weights[i])?;
        plain
            .iter_mut()
            .zip(enc)
            .for_each(|(s, e)| *s = (*s + e) & 0xffff_ffff);
    }
    assert_eq!(out.survivors, vec![0, 2, 3, 5, 6, 7]);
    assert_eq!(out.encoded_sum, plain);
    Ok(())
}

#[test]
fn active_mode_rejects_key_substitution_and_equivocation() -> Result<()> {
    let n = 7;
    let mut round = signed_round(n, 4, 93)?;
    // an unsigned (or wrongly signed) advertisement is rejected by the server
    let mut keys = round.clients[0].advertise_keys()?;
    keys.signature[0] ^= 1;
    assert!(round.server.receive_keys(0, keys).is_err());
    let dirs = round.keys(&[])?;
    // a server substituting a neighbour's key is caught by the client
    let mut forged = dirs[&0].clone();
    if let Some(p) = forged.peers.iter_mut().find(|p| p.client == 3) {
        p.enc_pk = round.clients[0].advertise_keys()?.enc_pk; // any other key
        p.enc_pk[5] ^= 0x40;
    }
    assert!(round.clients[0].clone().share_keys(&forged).is_err());
    let fwd = round.shares(&dirs, &[])?;
    let requests = round.signed_masked(&fwd, &[2], &[])?;
    let honest = requests[&0].clone();
    // equivocation: tell client 0 that the live client 5 dropped
    let mut lie = honest.clone();
    lie.alive.retain(|&v| v != 5);
    lie.dropped.push(5);
    match round.clients[0].unmask(&lie) {
        Err(Error::SecAgg { reason, .. }) => assert!(reason.contains("inconsistent"), "{reason}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    // too few valid signatures
    let mut unsigned = honest.clone();
    unsigned.signatures.truncate(3);
    assert!(matches!(
        round.clients[0].unmask(&unsigned),
        Err(Error::BelowThreshold { .. })
    ));
    let mut tampered = honest.clone();
    tampered
        .signatures
        .iter_mut()
        .for_each(|s| s.signature[0] ^= 1);
    assert!(round.clients[0].unmask(&tampered).is_err());
    // a second, different survivor set is never signed
    let other = ConsistencyCheck {
        run: 0,
        round: 9,
        recipient: 0,
        survivors: vec![0, 1, 2, 3, 4, 5],
    };
    assert!(round.clients[0].consistency_check(&other).is_err());
    // the honest request still works
    assert_eq!(round.clients[0].unmask(&honest)?.shares.len(), 7);
    Ok(())
}
