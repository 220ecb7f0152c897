//! Secure aggregation (SecAgg+, Bell et al. 2020; Bonawitz et al. 2017 with the complete graph).
//!
//! The server learns only the sum of the surviving clients' encoded, weighted model **deltas**
//! (callers pass the update w_local − w_global, not raw weights: deltas have a much smaller
//! range, so a smaller clipping range c gives a finer resolution at the same T).
//!
//! - [`crypto`]: X25519 key agreement (two key pairs per client per round), HKDF-SHA256 with
//!   domain separation, ChaCha20-Poly1305 share encryption with AD = (run, round, src, dst).
//! - [`prg`]: ChaCha20 masks keyed with the full 256-bit seed, exactly uniform mod 2^b.
//! - [`shamir`]: t-of-n sharing of 32-byte secrets over a 252-bit prime field.
//! - [`graph`]: the Harary ring over a random permutation (or the complete graph).
//! - [`encoding`]: weight prefix, clipping, stochastic rounding, decoding (with a range check
//!   of the unmasked sum).
//! - [`messages`]: serde message types with a strict binary encoding.
//! - [`SecAggClient`] and [`SecAggServer`]: the per-round state machines (stages
//!   [`Stage::AdvertiseKeys`] … [`Stage::Unmask`]) with U1 ⊇ U2 ⊇ U3 dropout handling.
//! - [`simulate_round`]: an in-process driver with simulated dropouts.
//! - [`statistics`]: secure sums of float64 statistics (one encoding for every caller).
//!
//! # Security model
//!
//! Every message names its run ([`SecAggServer::with_run`]; round numbers restart in every
//! run), round and sender. The run and round are bound into every derived key, AEAD
//! associated data and signature, and a message of another run or round is refused. The
//! server takes the transport's authenticated sender id in every `receive_*` method and
//! refuses a message written in another client's name, so a node cannot impersonate another.
//! After unmasking, every entry of the sum must lie in [0, |U3|·T]
//! ([`encoding::check_range`]); a gross out-of-range encoding fails the round instead of
//! shifting the mean (a sanity bound, not a per-client range proof).
//!
//! Write n, k, t for the round's parameters and c for the number of clients colluding with
//! the server.
//!
//! - **Honest-but-curious server** (the default mode): the server follows the protocol and
//!   learns only the sum over U3 when c < t (c clients hold c < t shares of any secret). A
//!   *malicious* server is not covered: it can substitute the neighbours' public keys
//!   (unsigned) and collect every share itself.
//! - **Malicious server with a PKI** ([`identity`]: [`SecAggClient::with_identity`],
//!   [`SecAggServer::with_pki`]): clients sign their round keys (no key substitution) and
//!   the survivor set U3 in a consistency-check round, and refuse unmask requests that do not
//!   match t signatures on the U3 they signed (Bonawitz et al. 2017, active variant; Bell et
//!   al.'s malicious-secure SecAgg+ variant is not implemented, so sparse graphs are not
//!   covered).
//!
//!   *The collusion bound that actually holds* (honest client v, complete graph k = n,
//!   colluders C with |C| = c): the server decides which keys and encrypted shares reach
//!   whom and which masked inputs it "received"; v masks only with the peers R_v whose
//!   shares reached it (|R_v| ≥ t − 1), and answers an unmask request only if at least t of
//!   its neighbours (itself included) are alive in the U3 it signed, revealing its own share
//!   of its self-mask seed b_v. To isolate x_v the server must remove b_v and every mask of
//!   v with an honest h ∈ R_v, i.e. h must be "dropped" (outside U3) so that h's mask key is
//!   revealed.
//!   1. If c ≥ t − 1, report every honest client but v as dropped: v's neighbourhood
//!      {v} ∪ C passes every check, v and the colluders give t shares of b_v, and the
//!      colluders know their masks with v. **Isolated** (n = 3, t = 2, one colluder).
//!   2. Otherwise v never answers (its live neighbours in U3 would be v and colluders only),
//!      so t shares of b_v must come from C and from honest clients H₁ ⊆ U3 given v's
//!      shares but not giving theirs to v (|H₁| ≥ t − c), while v masks with C and honest
//!      clients H₂ outside U3 (|H₂| ≥ t − 1 − c) whose mask keys C ∪ H₁ reveal. The honest
//!      clients suffice iff 1 + (t − c) + (t − 1 − c) ≤ n − c: **isolated iff 2t ≤ n + c**
//!      (n = 5, t = 3, one colluder).
//!
//!   Conversely, with **c ≤ t − 2 and 2t ≥ n + c + 1** (t > (n + c)/2) some honest
//!   h ∈ R_v ∩ U3 keeps its mask with v secret, so x_v is only ever learned added to x_h;
//!   and no two survivor sets can collect t signatures each (honest clients sign one set, so
//!   that needs 2(t − c) ≤ n − c), so the server cannot equivocate about who dropped. With
//!   c = 0 this always holds (every valid config has t > n/2), but "t > n/2" says nothing
//!   about colluders: n = 3, t = 2 and n = 5, t = 3 fall to one. Since the setup itself is
//!   not signed, every client pins the bound in its own [`ClientPolicy`]
//!   ([`SecAggClient::with_policy`]): with an identity it refuses sparse graphs, t <
//!   `min_threshold` and 2t < n + `min_threshold` − 1 before sending anything, i.e. it
//!   protects against c = `min_threshold` − 2 colluders (default `min_threshold` 2: a
//!   malicious server alone; 3: one colluder, which needs t ≥ 3 and 2t ≥ n + 2).
//!
//! Model parameters: flatten the delta with [`ModelParams::flatten`](crate::model::ModelParams::flatten)
//! and rebuild the aggregate with [`ModelParams::from_flat`](crate::model::ModelParams::from_flat).
//!
//! ```
//! use std::collections::BTreeMap;
//! use battery_fl_core::secagg::{simulate_round_report, SecAggConfig, Stage};
//!
//! let inputs: Vec<Vec<f32>> = (0..5).map(|i| vec![0.01 * i as f32; 4]).collect();
//! let weights = [10.0, 20.0, 30.0, 40.0, 50.0];
//! let config = SecAggConfig::new(5).with_threshold(3);
//! // client 4 drops out while keys are being shared: the round still completes
//! let drops = BTreeMap::from([(4, Stage::ShareKeys)]);
//! let report = simulate_round_report(&inputs, &weights, &config, &drops, 42)?;
//! assert_eq!(report.u3, vec![0, 1, 2, 3]);
//! assert_eq!(report.output.encoded_sum, report.plain_sum); // bit-exact
//! // weighted mean of clients 0..4: (0*10 + 0.01*20 + 0.02*30 + 0.03*40) / 100 = 0.02
//! assert!(report.decoded.mean.iter().all(|m| (m - 0.02).abs() < 1e-4));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

mod client;
mod codec;
mod config;
pub mod crypto;
pub mod encoding;
pub mod graph;
pub mod identity;
pub mod messages;
mod node;
pub mod prg;
mod server;
pub mod shamir;
mod simulate;
pub mod statistics;
mod unmask;
mod wire;

pub use client::SecAggClient;
pub use config::{log_neighbours, ClientPolicy, SecAggConfig};
pub use encoding::Decoded;
pub use graph::CommGraph;
pub use identity::{Identity, Pki};
pub use messages::{
    AdvertiseKeys, ConsistencyCheck, ConsistencySignature, Envelope, ForwardedShares, KeyDirectory,
    MaskedInput, PeerKeys, RevealedShare, Setup, ShareKeys, ShareKind, UnmaskRequest,
    UnmaskResponse,
};
pub use node::NodeSession;
pub use server::{SecAggServer, ServerStage};
pub use simulate::{simulate_round, simulate_round_report, SimulationReport};
pub use unmask::AggregateOutput;
pub use wire::MAGIC;

/// A client's id within a round (e.g. a Flower node id).
pub type ClientId = u64;

/// The protocol stages, in order (used for dropouts and error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// 0: clients advertise their two public keys (defines U1).
    AdvertiseKeys,
    /// 1: clients send encrypted shares to their neighbours (defines U2).
    ShareKeys,
    /// 2: clients send masked inputs (defines U3).
    MaskedInput,
    /// 3: survivors reveal shares for unmasking.
    Unmask,
}

impl Stage {
    /// All stages in order.
    pub const ALL: [Stage; 4] = [
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::Unmask,
    ];

    /// The snake-case name used in errors (`advertise_keys`, `share_keys`, `masked_input`,
    /// `unmask`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::AdvertiseKeys => "advertise_keys",
            Stage::ShareKeys => "share_keys",
            Stage::MaskedInput => "masked_input",
            Stage::Unmask => "unmask",
        }
    }

    /// The stage's number 0..=3.
    pub fn index(self) -> usize {
        self as usize
    }
}
