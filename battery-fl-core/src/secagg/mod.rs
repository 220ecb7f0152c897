//! Secure aggregation (SecAgg+, Bell et al. 2020; Bonawitz et al. 2017 with the complete graph).
//!
//! The server learns only the sum of the surviving clients' encoded, weighted model **deltas**
//! (callers pass the update w_local − w_global, not raw weights: deltas have a much smaller
//! range, so a smaller clipping range c gives a finer resolution at the same T).
//!
//! - [`crypto`]: X25519 key agreement (two key pairs per client per round), HKDF-SHA256 with
//!   domain separation, ChaCha20-Poly1305 share encryption with AD = (round, src, dst).
//! - [`prg`]: ChaCha20 masks keyed with the full 256-bit seed, exactly uniform mod 2^b.
//! - [`shamir`]: t-of-n sharing of 32-byte secrets over a 252-bit prime field.
//! - [`graph`]: the Harary ring over a random permutation (or the complete graph).
//! - [`encoding`]: weight prefix, clipping, stochastic rounding, decoding.
//! - [`messages`]: serde message types with a strict binary encoding.
//! - [`SecAggClient`] and [`SecAggServer`]: the per-round state machines (stages
//!   [`Stage::AdvertiseKeys`] … [`Stage::Unmask`]) with U1 ⊇ U2 ⊇ U3 dropout handling.
//! - [`simulate_round`]: an in-process driver with simulated dropouts.
//!
//! Security model: by default, an honest-but-curious server colluding with fewer than t
//! clients of any neighbourhood. With a PKI ([`identity`]: [`SecAggClient::with_identity`],
//! [`SecAggServer::with_pki`]) clients sign their round keys (no key substitution) and the
//! survivor set U3 in a consistency-check round, and refuse unmask requests that do not match
//! t signatures on the U3 they signed (no equivocation about dropouts), as in Bonawitz et al.'s
//! active variant. Bell et al.'s malicious-secure SecAgg+ variant is not implemented.
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
pub mod prg;
mod server;
pub mod shamir;
mod simulate;
mod unmask;
mod wire;

pub use client::SecAggClient;
pub use config::{log_neighbours, SecAggConfig};
pub use encoding::Decoded;
pub use graph::CommGraph;
pub use identity::{Identity, Pki};
pub use messages::{
    AdvertiseKeys, ConsistencyCheck, ConsistencySignature, Envelope, ForwardedShares, KeyDirectory,
    MaskedInput, PeerKeys, RevealedShare, Setup, ShareKeys, ShareKind, UnmaskRequest,
    UnmaskResponse,
};
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
