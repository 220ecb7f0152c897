//! The protocol messages, one per stage and direction.
//!
//! Every message is a serde type (so JSON works for debugging) and has a compact, strict binary
//! encoding `to_bytes()` / `from_bytes()` (magic `SA+\x02`, a type tag, then the fields; see
//! the `codec` module) that any transport can carry: Flower messages, a C caller, files.
//! Every message carries the run id and the round number, and a party refuses a message of
//! another run or round. Decoding untrusted bytes returns [`Error::SecAgg`](crate::Error::SecAgg) at stage `decode`
//! and never panics.
//!
//! ```
//! use battery_fl_core::secagg::messages::{AdvertiseKeys, UnmaskRequest};
//!
//! let m = AdvertiseKeys {
//!     run: 0, round: 3, client: 7, mask_pk: [1; 32], enc_pk: [2; 32], signature: vec![],
//! };
//! let bytes = m.to_bytes();
//! assert_eq!(AdvertiseKeys::from_bytes(&bytes)?, m);
//! assert!(AdvertiseKeys::from_bytes(&bytes[..bytes.len() - 1]).is_err()); // truncated
//! assert!(UnmaskRequest::from_bytes(&bytes).is_err()); // wrong type
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::config::SecAggConfig;
use super::shamir::SecretShare;
use super::ClientId;

/// Server → all sampled clients, before stage 0: the round's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Run id: distinguishes runs (federations, experiments) whose round numbers restart at
    /// the same values; bound into every key, ciphertext and signature (default 0).
    pub run: u64,
    /// Round number (bound into every key, ciphertext and signature).
    pub round: u64,
    /// Length of the delta vectors.
    pub dim: u64,
    /// The protocol parameters.
    pub config: SecAggConfig,
}

/// Stage 0, client → server: the two fresh public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertiseKeys {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// Sender.
    pub client: ClientId,
    /// X25519 public key for pairwise masks.
    pub mask_pk: [u8; 32],
    /// X25519 public key for share encryption.
    pub enc_pk: [u8; 32],
    /// Ed25519 signature of (run, round, client, mask_pk, enc_pk) by the client's identity key;
    /// empty without a PKI (honest-but-curious mode).
    pub signature: Vec<u8>,
}

/// One neighbour's public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKeys {
    /// The neighbour.
    pub client: ClientId,
    /// Its mask public key.
    pub mask_pk: [u8; 32],
    /// Its encryption public key.
    pub enc_pk: [u8; 32],
    /// Its signature on the keys (empty without a PKI).
    pub signature: Vec<u8>,
}

/// Stage 1, server → client: the keys of its live neighbourhood N(u) ∩ U1 (itself included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDirectory {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The client this directory is for.
    pub recipient: ClientId,
    /// Neighbours' keys, sorted by client id.
    pub peers: Vec<PeerKeys>,
}

/// An encrypted share bundle from `src` to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Sender.
    pub src: ClientId,
    /// Recipient.
    pub dst: ClientId,
    /// ChaCha20-Poly1305 ciphertext of the two shares (AD = run, round, src, dst).
    pub ciphertext: Vec<u8>,
}

/// Stage 1, client → server: one envelope per neighbour (other than itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareKeys {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// Sender.
    pub client: ClientId,
    /// The envelopes.
    pub envelopes: Vec<Envelope>,
}

/// Stage 2, server → client: the envelopes addressed to it by neighbours in U2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedShares {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The client these are for.
    pub recipient: ClientId,
    /// The envelopes (`dst == recipient`).
    pub envelopes: Vec<Envelope>,
}

/// Stage 2, client → server: the masked encoded input `[q_u] ‖ Q_u + masks mod 2^b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// Sender.
    pub client: ClientId,
    /// b (32 or 64): values are packed in b/8 bytes each.
    pub modulus_bits: u32,
    /// The masked vector, entries in [0, 2^b).
    pub values: Vec<u64>,
}

/// Which secret a revealed share belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ShareKind {
    /// A share of the self-mask seed b_v (revealed for survivors, v ∈ U3).
    SelfMaskSeed,
    /// A share of the mask secret key s_v^SK (revealed for dropped clients, v ∈ U2 \ U3).
    MaskKey,
}

/// Stage 3, server → client: whose shares to reveal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The client asked.
    pub recipient: ClientId,
    /// Neighbours in U3 (itself included): reveal their self-mask-seed shares.
    pub alive: Vec<ClientId>,
    /// Neighbours in U2 \ U3: reveal their mask-key shares.
    pub dropped: Vec<ClientId>,
    /// With a PKI: at least t signatures on the survivor set U3 from the consistency check
    /// (empty otherwise).
    pub signatures: Vec<ConsistencySignature>,
}

/// Consistency check (with a PKI only), server → each survivor: the survivor set U3 to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyCheck {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The client asked.
    pub recipient: ClientId,
    /// U3, sorted.
    pub survivors: Vec<ClientId>,
}

/// Consistency check, client → server: the client's Ed25519 signature on (run, round, U3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencySignature {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The signer.
    pub client: ClientId,
    /// 64-byte Ed25519 signature.
    pub signature: Vec<u8>,
}

/// A revealed share of `owner`'s secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedShare {
    /// Whose secret.
    pub owner: ClientId,
    /// Which secret.
    pub kind: ShareKind,
    /// The share (held by the responding client).
    pub share: SecretShare,
}

/// Stage 3, client → server: the requested shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskResponse {
    /// Run id (as in the [`Setup`]).
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// Sender (the share holder).
    pub client: ClientId,
    /// The shares.
    pub shares: Vec<RevealedShare>,
}
