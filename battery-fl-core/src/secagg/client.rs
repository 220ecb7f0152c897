//! [`SecAggClient`]: one client's state machine for one round.
//!
//! Every server message must carry this client's run, round and id. The client checks the
//! server's parameters against its own [`ClientPolicy`] (set with
//! [`with_policy`](SecAggClient::with_policy)) before sending anything.
//!
//! Stages (each method may only be called in its stage; the state only advances on success,
//! so a rejected message leaves the client as it was):
//! 0. [`advertise_keys`](SecAggClient::advertise_keys): two fresh X25519 key pairs.
//! 1. [`share_keys`](SecAggClient::share_keys): checks the neighbour directory, Shamir-shares
//!    the mask secret key and a fresh self-mask seed b_u among the neighbourhood (itself
//!    included) and encrypts each neighbour's pair of shares.
//! 2. [`masked_input`](SecAggClient::masked_input): decrypts the forwarded shares (any
//!    authentication failure rejects the whole message), encodes the **delta**
//!    w_local − w_global and masks it with PRG(b_u) and ±PRG(s_{u,v}) for exactly the
//!    neighbours v whose shares arrived (U2 ∩ N(u)).
//! 3. [`unmask`](SecAggClient::unmask): reveals self-mask-seed shares for live neighbours and
//!    mask-key shares for dropped ones, and never both kinds for the same neighbour in a round
//!    (checked across repeated requests too).

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use super::config::ClientPolicy;
use super::crypto::{agree, derive_key, open, seal, KeyPair, Purpose, SecretRng};
use super::encoding::encode;
use super::identity::{Identity, Pki};
use super::messages::{
    AdvertiseKeys, Envelope, ForwardedShares, KeyDirectory, MaskedInput, PeerKeys, RevealedShare,
    Setup, ShareKeys, ShareKind, UnmaskRequest, UnmaskResponse,
};
use super::prg::{apply_masks, MaskTerm};
use super::shamir::{split, SecretShare, SHARE_BYTES};
use super::{ClientId, Stage};
use crate::error::{Error, Result};

mod consistency;

/// The state a client is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStage {
    Created,
    KeysAdvertised,
    SharesSent,
    InputSent,
    Signed,
}

/// The two shares a client holds for one neighbour (or for itself).
#[derive(Clone)]
struct Held {
    seed_share: SecretShare,
    key_share: SecretShare,
}

/// One client's side of one SecAgg+ round.
#[derive(Clone)]
pub struct SecAggClient {
    id: ClientId,
    setup: Setup,
    dim: usize,
    stage: ClientStage,
    shamir_seed: Zeroizing<[u8; 32]>,
    rounding_seed: Zeroizing<[u8; 32]>,
    self_seed: Zeroizing<[u8; 32]>,
    mask_keys: KeyPair,
    enc_keys: KeyPair,
    peers: BTreeMap<ClientId, PeerKeys>,
    held: BTreeMap<ClientId, Held>,
    revealed: BTreeMap<ClientId, ShareKind>,
    identity: Option<(Identity, Pki)>,
    signed_survivors: Option<(Vec<ClientId>, Vec<u8>)>,
    policy: ClientPolicy,
}

impl std::fmt::Debug for SecAggClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggClient")
            .field("id", &self.id)
            .field("run", &self.setup.run)
            .field("round", &self.setup.round)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

fn err(stage: Stage, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.name().into(),
        reason: reason.into(),
    }
}

impl SecAggClient {
    /// A client `id` for the round described by `setup`. `seed` is the client's secret
    /// randomness for this round (keys, self-mask seed, Shamir polynomials, stochastic
    /// rounding): it must come from a CSPRNG (e.g. the OS) and never be reused.
    ///
    /// The secrets are drawn from `seed` at once; the client keeps only zeroizing copies
    /// (the seed of its Shamir polynomials included: the polynomials are drawn from it
    /// inside [`share_keys`](Self::share_keys) by a generator that is wiped on drop).
    pub fn new(id: ClientId, setup: &Setup, seed: [u8; 32]) -> Result<Self> {
        setup.config.validate()?;
        let dim = usize::try_from(setup.dim).map_err(|_| Error::config("dim", "too large"))?;
        let mut rng = SecretRng::new(&Zeroizing::new(seed), b"client");
        let mask_keys = KeyPair::from_seed(*rng.draw());
        let enc_keys = KeyPair::from_seed(*rng.draw());
        let self_seed = rng.draw();
        let (run, round) = (setup.run, setup.round);
        let rounding_seed = derive_key(&rng.draw()[..], Purpose::Rounding, run, round, id, id)?;
        let shamir_seed = rng.draw();
        rng.check()?;
        Ok(SecAggClient {
            id,
            setup: setup.clone(),
            dim,
            stage: ClientStage::Created,
            shamir_seed,
            rounding_seed,
            self_seed,
            mask_keys,
            enc_keys,
            peers: BTreeMap::new(),
            held: BTreeMap::new(),
            revealed: BTreeMap::new(),
            identity: None,
            signed_survivors: None,
            policy: ClientPolicy::default(),
        })
    }

    /// Pin the round parameters this client accepts (default [`ClientPolicy::default`]);
    /// a setup or directory below it is refused before anything is sent. Call before
    /// stage 0.
    pub fn with_policy(mut self, policy: ClientPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The client's policy.
    pub fn policy(&self) -> &ClientPolicy {
        &self.policy
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The round number.
    pub fn round(&self) -> u64 {
        self.setup.round
    }

    /// The run id.
    pub fn run(&self) -> u64 {
        self.setup.run
    }

    /// The length of the delta vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The round's largest client weight W (the weight of a full-weight input).
    pub fn max_weight(&self) -> f64 {
        self.setup.config.max_weight
    }

    fn expect_stage(&self, want: &[ClientStage], stage: Stage) -> Result<()> {
        if want.contains(&self.stage) {
            Ok(())
        } else {
            Err(err(
                stage,
                format!("client {} is in state {:?}", self.id, self.stage),
            ))
        }
    }

    fn check_header(&self, run: u64, round: u64, recipient: ClientId, stage: Stage) -> Result<()> {
        let s = &self.setup;
        if run != s.run || round != s.round || recipient != self.id {
            return Err(err(
                stage,
                format!(
                    "message for run {run}, round {round}, client {recipient}; this is run {}, \
                     round {}, client {}",
                    s.run, s.round, self.id
                ),
            ));
        }
        Ok(())
    }

    fn check_policy(&self, stage: Stage) -> Result<()> {
        let signed = self.identity.is_some();
        self.policy.check_setup(&self.setup, signed, stage)
    }

    /// Stage 0: the two public keys (idempotent until stage 1).
    pub fn advertise_keys(&mut self) -> Result<AdvertiseKeys> {
        self.expect_stage(
            &[ClientStage::Created, ClientStage::KeysAdvertised],
            Stage::AdvertiseKeys,
        )?;
        self.check_policy(Stage::AdvertiseKeys)?;
        let (mask_pk, enc_pk) = (self.mask_keys.public_bytes(), self.enc_keys.public_bytes());
        let (run, round) = (self.setup.run, self.setup.round);
        let signature = match &self.identity {
            Some((id, _)) => id.sign_keys(run, round, self.id, &mask_pk, &enc_pk)?,
            None => Vec::new(),
        };
        self.stage = ClientStage::KeysAdvertised;
        Ok(AdvertiseKeys {
            run,
            round,
            client: self.id,
            mask_pk,
            enc_pk,
            signature,
        })
    }

    /// Switch to the active-adversary mode: sign the round keys with `identity`, require
    /// every neighbour's keys to be signed under `pki`, and require the consistency check
    /// ([`consistency_check`](Self::consistency_check)) before unmasking. Call before stage 0.
    pub fn with_identity(mut self, identity: Identity, pki: Pki) -> Self {
        self.identity = Some((identity, pki));
        self
    }

    /// Stage 1: check the neighbour directory and send encrypted shares to every neighbour.
    pub fn share_keys(&mut self, directory: &KeyDirectory) -> Result<ShareKeys> {
        let stage = Stage::ShareKeys;
        self.expect_stage(&[ClientStage::KeysAdvertised], stage)?;
        self.check_header(directory.run, directory.round, directory.recipient, stage)?;
        self.check_policy(stage)?;
        let cfg = &self.setup.config;
        let (t, k) = (cfg.t(), cfg.k());
        let (run, round) = (self.setup.run, self.setup.round);
        let peers = &directory.peers;
        if peers.len() > k {
            return Err(err(
                stage,
                format!("{} neighbours exceed k = {k}", peers.len()),
            ));
        }
        if peers.len() < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: peers.len(),
            });
        }
        self.policy.check_neighbourhood(peers.len(), stage)?;
        let mut by_id = BTreeMap::new();
        let mut keys = BTreeSet::new();
        for p in peers {
            if by_id.insert(p.client, p.clone()).is_some() {
                return Err(err(stage, format!("neighbour {} listed twice", p.client)));
            }
            if !keys.insert(p.mask_pk) || !keys.insert(p.enc_pk) {
                return Err(err(stage, "public keys are not unique"));
            }
            if let Some((_, pki)) = &self.identity {
                pki.verify_keys(run, round, p.client, &p.mask_pk, &p.enc_pk, &p.signature)?;
            }
        }
        match by_id.get(&self.id) {
            Some(me)
                if me.mask_pk == self.mask_keys.public_bytes()
                    && me.enc_pk == self.enc_keys.public_bytes() => {}
            _ => return Err(err(stage, "own keys missing or altered in the directory")),
        }
        let holders: Vec<ClientId> = by_id.keys().copied().collect();
        let secret_key = self.mask_keys.secret_bytes();
        let mut rng = SecretRng::new(&self.shamir_seed, b"shamir");
        let seed_shares = split(&self.self_seed, t, &holders, &mut rng)?;
        let key_shares = split(&secret_key, t, &holders, &mut rng)?;
        rng.check()?;
        drop(rng);
        let mut envelopes = Vec::with_capacity(holders.len().saturating_sub(1));
        let mut own = None;
        for ((&v, seed_share), key_share) in holders.iter().zip(seed_shares).zip(key_shares) {
            if v == self.id {
                own = Some(Held {
                    seed_share,
                    key_share,
                });
                continue;
            }
            let peer = by_id
                .get(&v)
                .ok_or_else(|| err(stage, "neighbour vanished"))?;
            let shared = agree(&self.enc_keys, &peer.enc_pk)?;
            let key = derive_key(
                &shared[..],
                Purpose::ShareEncryption,
                run,
                round,
                self.id,
                v,
            )?;
            let mut plain = Zeroizing::new(Vec::with_capacity(2 * SHARE_BYTES));
            plain.extend_from_slice(&seed_share.to_bytes());
            plain.extend_from_slice(&key_share.to_bytes());
            let ciphertext = seal(&key, run, round, self.id, v, &plain)?;
            envelopes.push(Envelope {
                src: self.id,
                dst: v,
                ciphertext,
            });
        }
        let own = own.ok_or_else(|| err(stage, "own share missing"))?;
        self.held = BTreeMap::from([(self.id, own)]);
        self.peers = by_id;
        self.stage = ClientStage::SharesSent;
        Ok(ShareKeys {
            run,
            round,
            client: self.id,
            envelopes,
        })
    }

    /// The client's own encoding `[q_u] ‖ Q_u` of `delta` (deterministic given the client's
    /// seed): exactly what [`masked_input`](Self::masked_input) masks. For exactness tests.
    pub fn encode_input(&self, delta: &[f32], weight: f64) -> Result<Vec<u64>> {
        if delta.len() != self.dim {
            return Err(Error::Shape {
                what: "secagg delta".into(),
                expected: vec![self.dim],
                got: vec![delta.len()],
            });
        }
        encode(
            &self.setup.config,
            self.id,
            delta,
            weight,
            &self.rounding_seed,
        )
    }

    /// Stage 2: decrypt the forwarded shares and return the masked encoding of `delta`
    /// (the model **update** w_local − w_global, length `dim`) with weight `weight` ≤ W.
    /// A ciphertext that fails authentication rejects the whole message (nothing is stored).
    pub fn masked_input(
        &mut self,
        forwarded: &ForwardedShares,
        delta: &[f32],
        weight: f64,
    ) -> Result<MaskedInput> {
        let stage = Stage::MaskedInput;
        self.expect_stage(&[ClientStage::SharesSent], stage)?;
        self.check_header(forwarded.run, forwarded.round, forwarded.recipient, stage)?;
        let (run, round) = (self.setup.run, self.setup.round);
        let mut received: BTreeMap<ClientId, Held> = BTreeMap::new();
        for e in &forwarded.envelopes {
            if e.dst != self.id || e.src == self.id || !self.peers.contains_key(&e.src) {
                return Err(err(
                    stage,
                    format!("unexpected envelope {} -> {}", e.src, e.dst),
                ));
            }
            if received.contains_key(&e.src) {
                return Err(err(stage, format!("two envelopes from client {}", e.src)));
            }
            let peer = self
                .peers
                .get(&e.src)
                .ok_or_else(|| err(stage, "unknown neighbour"))?;
            let shared = agree(&self.enc_keys, &peer.enc_pk)?;
            let purpose = Purpose::ShareEncryption;
            let key = derive_key(&shared[..], purpose, run, round, self.id, e.src)?;
            let plain = open(&key, run, round, e.src, self.id, &e.ciphertext)?;
            if plain.len() != 2 * SHARE_BYTES {
                return Err(err(
                    stage,
                    format!("share bundle from client {} has wrong size", e.src),
                ));
            }
            let seed_share = SecretShare::from_bytes(&plain[..SHARE_BYTES])?;
            let key_share = SecretShare::from_bytes(&plain[SHARE_BYTES..])?;
            received.insert(
                e.src,
                Held {
                    seed_share,
                    key_share,
                },
            );
        }
        let t = self.setup.config.t();
        if received.len() + 1 < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: received.len() + 1,
            });
        }
        self.policy.check_neighbourhood(received.len() + 1, stage)?;
        let mut values = self.encode_input(delta, weight)?;
        let mut terms = Vec::with_capacity(received.len() + 1);
        let self_mask = derive_key(
            &self.self_seed[..],
            Purpose::SelfMask,
            run,
            round,
            self.id,
            self.id,
        )?;
        terms.push(MaskTerm::add(*self_mask));
        for &v in received.keys() {
            let peer = self
                .peers
                .get(&v)
                .ok_or_else(|| err(stage, "unknown neighbour"))?;
            let shared = agree(&self.mask_keys, &peer.mask_pk)?;
            let s = derive_key(&shared[..], Purpose::Mask, run, round, self.id, v)?;
            terms.push(MaskTerm::signed(*s, self.id > v));
        }
        let bits = self.setup.config.modulus_bits;
        apply_masks(&mut values, &terms, bits)?;
        self.held.extend(received);
        self.stage = ClientStage::InputSent;
        Ok(MaskedInput {
            run,
            round,
            client: self.id,
            modulus_bits: bits,
            values,
        })
    }

    /// The neighbours this client masked with in stage 2 (itself included).
    pub fn masked_with(&self) -> Vec<ClientId> {
        self.held.keys().copied().collect()
    }

    /// Stage 3: reveal self-mask-seed shares for `alive` and mask-key shares for `dropped`.
    /// Refuses (revealing nothing) if the lists overlap, name a client it did not mask with,
    /// list itself as dropped, have fewer than t live clients, or ask for the other kind of
    /// share of a client than an earlier request in this round.
    pub fn unmask(&mut self, request: &UnmaskRequest) -> Result<UnmaskResponse> {
        let stage = Stage::Unmask;
        if self.identity.is_some() {
            self.expect_stage(&[ClientStage::Signed], stage)?;
            self.check_signed_request(request)?;
        } else {
            self.expect_stage(&[ClientStage::InputSent], stage)?;
        }
        self.check_header(request.run, request.round, request.recipient, stage)?;
        let t = self.setup.config.t();
        let mut asked: BTreeMap<ClientId, ShareKind> = BTreeMap::new();
        let lists = [
            (&request.alive, ShareKind::SelfMaskSeed),
            (&request.dropped, ShareKind::MaskKey),
        ];
        for (list, kind) in lists {
            for &v in list.iter() {
                if asked.insert(v, kind).is_some() {
                    return Err(err(
                        stage,
                        format!("client {v} listed twice (alive and dropped?)"),
                    ));
                }
                if !self.held.contains_key(&v) {
                    return Err(err(
                        stage,
                        format!("client {v} is not a neighbour this client masked with"),
                    ));
                }
                if let Some(&before) = self.revealed.get(&v) {
                    if before != kind {
                        return Err(err(
                            stage,
                            format!("refusing to reveal both share kinds of client {v}"),
                        ));
                    }
                }
            }
        }
        if asked.get(&self.id) != Some(&ShareKind::SelfMaskSeed) {
            return Err(err(stage, "this client must be listed as alive"));
        }
        if request.alive.len() < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: request.alive.len(),
            });
        }
        let mut shares = Vec::with_capacity(asked.len());
        for (v, kind) in asked {
            let held = self
                .held
                .get(&v)
                .ok_or_else(|| err(stage, "share missing"))?;
            let share = match kind {
                ShareKind::SelfMaskSeed => held.seed_share.clone(),
                ShareKind::MaskKey => held.key_share.clone(),
            };
            self.revealed.insert(v, kind);
            shares.push(RevealedShare {
                owner: v,
                kind,
                share,
            });
        }
        Ok(UnmaskResponse {
            run: self.setup.run,
            round: self.setup.round,
            client: self.id,
            shares,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::SecAggConfig;

    /// The Shamir polynomials come from a zeroizing seed (no `ChaCha20Rng` holding the round
    /// secret lives in the client): the shares are still a deterministic function of the
    /// client's seed, and the seed field is wiped on drop.
    #[test]
    fn shamir_polynomials_come_from_a_zeroizing_seed() -> Result<()> {
        let setup = Setup {
            run: 2,
            round: 1,
            dim: 3,
            config: SecAggConfig::new(3).with_threshold(2),
        };
        let mut clients: Vec<SecAggClient> = (0..3)
            .map(|id| SecAggClient::new(id, &setup, [id as u8 + 1; 32]))
            .collect::<Result<_>>()?;
        let peers: Vec<PeerKeys> = clients
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
            .collect::<Result<_>>()?;
        let dir = KeyDirectory {
            run: 2,
            round: 1,
            recipient: 0,
            peers,
        };
        let seed: &Zeroizing<[u8; 32]> = &clients[0].shamir_seed;
        assert_ne!(**seed, [0; 32]);
        let mut twin = clients[0].clone();
        let a = clients[0].share_keys(&dir)?;
        let b = twin.share_keys(&dir)?;
        assert_eq!(a, b, "shares are deterministic given the seed");
        let own = |c: &SecAggClient| c.held.get(&0).map(|h| h.seed_share.to_bytes());
        assert_eq!(own(&clients[0]), own(&twin));
        // a client built from another seed shares with other polynomials
        let mut other = SecAggClient::new(0, &setup, [9; 32])?;
        let mut dir2 = dir.clone();
        let k = other.advertise_keys()?;
        if let Some(me) = dir2.peers.iter_mut().find(|p| p.client == 0) {
            (me.mask_pk, me.enc_pk) = (k.mask_pk, k.enc_pk);
        }
        other.share_keys(&dir2)?;
        assert_ne!(own(&clients[0]), own(&other));
        Ok(())
    }
}
