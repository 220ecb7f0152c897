//! FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020; the server side is FedAvg).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    check_all, check_all_finite_later, Aggregator, ClientUpdate, UpdateKind, UpdatePolicy,
};
use crate::error::{Error, Result};
use crate::model::ModelParams;

/// Coordinates per parallel work chunk: the chunk's f64 accumulator (32 KB) stays in L1 cache
/// while every client's slice of it streams through once.
const CHUNK: usize = 4 * 1024;

/// Clients folded into the accumulator per pass over it: each accumulator value is loaded and
/// stored once per `GROUP` clients instead of once per client.
const GROUP: usize = 4;

/// `Σ w_i x_i / Σ w_i` over flat buffers of equal length, accumulated in f64, in parallel
/// over chunks. Weights must be positive and finite.
///
/// Every coordinate is summed in client order, `((w_1 x_1 + w_2 x_2) + w_3 x_3) + ...` with
/// `w_i` normalized, so the result does not depend on the chunking or the thread count.
pub fn weighted_mean(buffers: &[&[f32]], weights: &[f64]) -> Result<Vec<f32>> {
    let Some(first) = buffers.first() else {
        return Err(Error::Aggregation {
            reason: "no buffers to average".into(),
        });
    };
    if buffers.len() != weights.len() {
        return Err(Error::Shape {
            what: "weights".into(),
            expected: vec![buffers.len()],
            got: vec![weights.len()],
        });
    }
    if let Some(b) = buffers.iter().find(|b| b.len() != first.len()) {
        return Err(Error::Shape {
            what: "client buffer".into(),
            expected: vec![first.len()],
            got: vec![b.len()],
        });
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(Error::Aggregation {
            reason: format!("weights must be positive and finite, got {w}"),
        });
    }
    let total: f64 = weights.iter().sum();
    let norm: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let mut out = vec![0f32; first.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, dst)| {
        let (lo, len) = (c * CHUNK, dst.len());
        let mut acc = [0f64; CHUNK];
        let acc = &mut acc[..len];
        let mut clients = buffers.chunks_exact(GROUP).zip(norm.chunks_exact(GROUP));
        for (bufs, w) in &mut clients {
            let x: [&[f32]; GROUP] = std::array::from_fn(|k| &bufs[k][lo..lo + len]);
            for (i, a) in acc.iter_mut().enumerate() {
                let mut s = *a;
                for k in 0..GROUP {
                    s += w[k] * f64::from(x[k][i]);
                }
                *a = s;
            }
        }
        let rest = buffers.len() - buffers.len() % GROUP;
        for (buf, &w) in buffers[rest..].iter().zip(&norm[rest..]) {
            for (a, &x) in acc.iter_mut().zip(&buf[lo..lo + len]) {
                *a += w * f64::from(x);
            }
        }
        for (d, a) in dst.iter_mut().zip(acc.iter()) {
            *d = *a as f32;
        }
    });
    Ok(out)
}

/// Sample-weighted mean of the clients' weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FedAvg {
    /// Checks applied to every update.
    pub policy: UpdatePolicy,
}

impl FedAvg {
    /// FedAvg with an update policy.
    pub fn with_policy(policy: UpdatePolicy) -> Self {
        FedAvg { policy }
    }
}

pub(crate) fn fedavg(global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
    let weights: Vec<f64> = updates.iter().map(|u| u.num_samples as f64).collect();
    let mut out = global.clone();
    for (t, dst) in out.values_mut().enumerate() {
        let bufs: Vec<&[f32]> = updates
            .iter()
            .map(|u| u.params.params()[t].data.as_slice())
            .collect();
        let mean = weighted_mean(&bufs, &weights)?;
        // a delta update averages deltas: add them to the global weights
        if updates[0].kind == UpdateKind::Delta {
            dst.iter_mut().zip(&mean).for_each(|(g, d)| *g += d);
        } else {
            dst.copy_from_slice(&mean);
        }
    }
    Ok(out)
}

impl Aggregator for FedAvg {
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
        // The finiteness scan is fused into the mean (one read of the updates instead of
        // two): a non-finite mean means a non-finite input, found and named by `check_all`.
        check_all_finite_later(global, updates, &self.policy)?;
        if updates.iter().any(|u| u.kind != updates[0].kind) {
            return Err(Error::Aggregation {
                reason: "a round mixes parameter and delta updates".into(),
            });
        }
        let out = fedavg(global, updates)?;
        if out
            .params()
            .iter()
            .any(|p| p.data.iter().any(|v| !v.is_finite()))
        {
            check_all(global, updates, &self.policy)?;
            // finite inputs whose global + delta overflowed f32
            return Err(Error::Aggregation {
                reason: "the aggregate overflows f32".into(),
            });
        }
        Ok(out)
    }

    fn name(&self) -> &'static str {
        "fed_avg"
    }
}

/// FedProx: clients add `(mu / 2) ||w − w_global||²` to their local loss (the round config
/// carries `mu` to them); the server averages as FedAvg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedProx {
    /// Proximal weight sent to clients.
    pub mu: f64,
    /// Server-side averaging.
    pub fedavg: FedAvg,
}

impl FedProx {
    /// FedProx with proximal weight `mu` (>= 0).
    pub fn new(mu: f64) -> Result<Self> {
        if !(mu.is_finite() && mu >= 0.0) {
            return Err(Error::config("mu", format!("must be >= 0, got {mu}")));
        }
        Ok(FedProx {
            mu,
            fedavg: FedAvg::default(),
        })
    }
}

impl Aggregator for FedProx {
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
        self.fedavg.aggregate(global, updates)
    }

    fn name(&self) -> &'static str {
        "fed_prox"
    }
}
