//! [`SecAggClient`]: one client's state machine for one round.
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

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::crypto::{agree, derive_key, open, seal, KeyPair, Purpose};
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
    rng: ChaCha20Rng,
    rounding_seed: Zeroizing<[u8; 32]>,
    self_seed: Zeroizing<[u8; 32]>,
    mask_keys: KeyPair,
    enc_keys: KeyPair,
    peers: BTreeMap<ClientId, PeerKeys>,
    held: BTreeMap<ClientId, Held>,
    revealed: BTreeMap<ClientId, ShareKind>,
    identity: Option<(Identity, Pki)>,
    signed_survivors: Option<(Vec<ClientId>, Vec<u8>)>,
}

impl std::fmt::Debug for SecAggClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggClient")
            .field("id", &self.id)
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
    pub fn new(id: ClientId, setup: &Setup, seed: [u8; 32]) -> Result<Self> {
        setup.config.validate()?;
        let dim = usize::try_from(setup.dim).map_err(|_| Error::config("dim", "too large"))?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut draw = || {
            let mut b = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut b[..]);
            b
        };
        let mask_keys = KeyPair::from_seed(*draw());
        let enc_keys = KeyPair::from_seed(*draw());
        let self_seed = draw();
        let rounding_seed = derive_key(&draw()[..], Purpose::Rounding, setup.round, id, id)?;
        Ok(SecAggClient {
            id,
            setup: setup.clone(),
            dim,
            stage: ClientStage::Created,
            rng,
            rounding_seed,
            self_seed,
            mask_keys,
            enc_keys,
            peers: BTreeMap::new(),
            held: BTreeMap::new(),
            revealed: BTreeMap::new(),
            identity: None,
            signed_survivors: None,
        })
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The round number.
    pub fn round(&self) -> u64 {
        self.setup.round
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

    fn check_header(&self, round: u64, recipient: ClientId, stage: Stage) -> Result<()> {
        if round != self.setup.round || recipient != self.id {
            return Err(err(
                stage,
                format!(
                    "message for round {round}, client {recipient}; this is round {}, client {}",
                    self.setup.round, self.id
                ),
            ));
        }
        Ok(())
    }

    /// Stage 0: the two public keys (idempotent until stage 1).
    pub fn advertise_keys(&mut self) -> Result<AdvertiseKeys> {
        self.expect_stage(
            &[ClientStage::Created, ClientStage::KeysAdvertised],
            Stage::AdvertiseKeys,
        )?;
        let (mask_pk, enc_pk) = (self.mask_keys.public_bytes(), self.enc_keys.public_bytes());
        let signature = match &self.identity {
            Some((id, _)) => id.sign_keys(self.setup.round, self.id, &mask_pk, &enc_pk)?,
            None => Vec::new(),
        };
        self.stage = ClientStage::KeysAdvertised;
        Ok(AdvertiseKeys {
            round: self.setup.round,
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
        self.check_header(directory.round, directory.recipient, stage)?;
        let cfg = &self.setup.config;
        let (t, k) = (cfg.t(), cfg.k());
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
                pki.verify_keys(
                    self.setup.round,
                    p.client,
                    &p.mask_pk,
                    &p.enc_pk,
                    &p.signature,
                )?;
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
        let seed_shares = split(&self.self_seed, t, &holders, &mut self.rng)?;
        let key_shares = split(&secret_key, t, &holders, &mut self.rng)?;
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
                self.setup.round,
                self.id,
                v,
            )?;
            let mut plain = Zeroizing::new(Vec::with_capacity(2 * SHARE_BYTES));
            plain.extend_from_slice(&seed_share.to_bytes());
            plain.extend_from_slice(&key_share.to_bytes());
            let ciphertext = seal(&key, self.setup.round, self.id, v, &plain)?;
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
            round: self.setup.round,
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
        self.check_header(forwarded.round, forwarded.recipient, stage)?;
        let round = self.setup.round;
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
            let key = derive_key(&shared[..], Purpose::ShareEncryption, round, self.id, e.src)?;
            let plain = open(&key, round, e.src, self.id, &e.ciphertext)?;
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
        let mut values = self.encode_input(delta, weight)?;
        let mut terms = Vec::with_capacity(received.len() + 1);
        let self_mask = derive_key(
            &self.self_seed[..],
            Purpose::SelfMask,
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
            let s = derive_key(&shared[..], Purpose::Mask, round, self.id, v)?;
            terms.push(MaskTerm::signed(*s, self.id > v));
        }
        let bits = self.setup.config.modulus_bits;
        apply_masks(&mut values, &terms, bits)?;
        self.held.extend(received);
        self.stage = ClientStage::InputSent;
        Ok(MaskedInput {
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
        self.check_header(request.round, request.recipient, stage)?;
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
            round: self.setup.round,
            client: self.id,
            shares,
        })
    }
}
