//! Unmasking: reconstruct the survivors' self-mask seeds and the dropped clients' mask keys
//! from the revealed shares, and compute the mask terms that cancel what is left in the sum.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use super::config::SecAggConfig;
use super::crypto::{agree, derive_key, KeyPair, Purpose};
use super::encoding::{decode, decode_sum, Decoded};
use super::graph::CommGraph;
use super::messages::{AdvertiseKeys, UnmaskResponse};
use super::prg::MaskTerm;
use super::shamir::reconstruct;
use super::{ClientId, Stage};
use crate::error::{Error, Result};

/// The result of a successful round.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateOutput {
    /// Run id.
    pub run: u64,
    /// Round number.
    pub round: u64,
    /// The clients whose inputs are in the sum (U3), sorted.
    pub survivors: Vec<ClientId>,
    /// The exact unmasked sum mod 2^b of the survivors' encodings `[q_u] ‖ Q_u`
    /// (length dim + 1), before dequantization.
    pub encoded_sum: Vec<u64>,
    /// The round's parameters (for decoding).
    pub config: SecAggConfig,
}

impl AggregateOutput {
    /// Dequantize: the survivors' weighted mean delta and total weight.
    pub fn decode(&self) -> Result<Decoded> {
        decode(&self.config, &self.encoded_sum, self.survivors.len())
    }

    /// Dequantize to the recovered sum Σ d_u·x_u with d_u = w_u/W (the plain sum of the
    /// survivors' deltas when every client sent weight W); see
    /// [`decode_sum`](super::encoding::decode_sum).
    pub fn decode_sum(&self) -> Result<Vec<f32>> {
        decode_sum(&self.config, &self.encoded_sum, self.survivors.len())
    }
}

/// What the server knows at the end of stage 3.
pub(crate) struct UnmaskContext<'a> {
    pub(crate) run: u64,
    pub(crate) round: u64,
    pub(crate) threshold: usize,
    pub(crate) graph: &'a CommGraph,
    pub(crate) keys: &'a BTreeMap<ClientId, AdvertiseKeys>,
    pub(crate) u2: &'a BTreeSet<ClientId>,
    pub(crate) u3: &'a BTreeSet<ClientId>,
    pub(crate) responses: &'a BTreeMap<ClientId, UnmaskResponse>,
}

fn err(stage: Stage, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.name().into(),
        reason: reason.into(),
    }
}

/// The mask terms that cancel what is left in the sum.
pub(crate) fn unmask_terms(ctx: &UnmaskContext<'_>) -> Result<Vec<MaskTerm>> {
    let stage = Stage::Unmask;
    let (t, run, round, graph) = (ctx.threshold, ctx.run, ctx.round, ctx.graph);
    let mut shares: BTreeMap<ClientId, Vec<_>> = BTreeMap::new();
    for r in ctx.responses.values() {
        for s in &r.shares {
            shares
                .entry(s.owner)
                .or_default()
                .push((r.client, s.share.clone()));
        }
    }
    // Check every secret first: nothing is reconstructed unless all can be.
    for &u in ctx.u2 {
        let got = shares.get(&u).map_or(0, Vec::len);
        if got < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got,
            });
        }
    }
    let owners: Vec<ClientId> = ctx.u2.iter().copied().collect();
    let per_owner: Vec<Vec<MaskTerm>> = owners
        .par_iter()
        .map(|&u| -> Result<Vec<MaskTerm>> {
            let list = shares.get(&u).map_or(&[][..], Vec::as_slice);
            let secret = zeroize::Zeroizing::new(reconstruct(list, t)?);
            if ctx.u3.contains(&u) {
                let seed = derive_key(&secret[..], Purpose::SelfMask, run, round, u, u)?;
                return Ok(vec![MaskTerm::sub(*seed)]);
            }
            let keys = KeyPair::from_seed(*secret);
            let advertised = ctx
                .keys
                .get(&u)
                .ok_or_else(|| err(stage, "unknown client"))?;
            if keys.public_bytes() != advertised.mask_pk {
                return Err(err(
                    stage,
                    format!("reconstructed key of client {u} does not match its public key"),
                ));
            }
            let mut terms = Vec::new();
            for v in graph.neighbours(u) {
                if v == u || !ctx.u3.contains(&v) {
                    continue;
                }
                let pk = ctx
                    .keys
                    .get(&v)
                    .ok_or_else(|| err(stage, "unknown client"))?;
                let shared = agree(&keys, &pk.mask_pk)?;
                let s = derive_key(&shared[..], Purpose::Mask, run, round, u, v)?;
                // survivor v added sign(v > u)·PRG(s); remove it
                terms.push(MaskTerm::signed(*s, v < u));
            }
            Ok(terms)
        })
        .collect::<Result<_>>()?;
    Ok(per_owner.into_iter().flatten().collect())
}
