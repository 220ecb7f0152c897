//! Aggregators and server optimizers for federated rounds.
//!
//! Every aggregator implements [`Aggregator`]: given the current global weights and the
//! round's [`ClientUpdate`]s, it returns the next global weights. Updates are validated first
//! ([`validate_update`]): a shape mismatch, a NaN/Inf or a norm above the bound is rejected
//! with a typed [`UpdateRejection`], and the aggregator's state is left unchanged.
//!
//! ```
//! use battery_fl_core::aggregate::{Aggregator, ClientUpdate, FedAvg};
//! use battery_fl_core::model::ModelParams;
//!
//! let global = ModelParams::new(vec![("w".into(), vec![2], vec![0.0, 0.0])])?;
//! let a = ClientUpdate::parameters("a", 1, global.from_flat(&[1.0, 1.0])?);
//! let b = ClientUpdate::parameters("b", 3, global.from_flat(&[5.0, 1.0])?);
//! let next = FedAvg::default().aggregate(&global, &[a, b])?;
//! assert_eq!(next.flatten(), vec![4.0, 1.0]); // (1*1 + 3*5) / 4
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

mod fedavg;
mod fedopt;
mod robust;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use fedavg::{weighted_mean, FedAvg, FedProx};
pub use fedopt::{FedOpt, FedOptConfig, ServerOptimizer};
pub use robust::{FedMedian, FedTrimmedAvg, DEFAULT_TRIMMED_BETA};

use crate::error::{Error, Result, UpdateRejection};
use crate::model::ModelParams;

/// Whether a client sent its new weights or the difference to the global weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// The client's locally trained weights.
    Parameters,
    /// `local − global`.
    Delta,
}

/// What a client sends back after local training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientUpdate {
    /// Who sent it.
    pub client_id: String,
    /// Local training samples (cells): the FedAvg weight.
    pub num_samples: u64,
    /// Weights or delta.
    pub params: ModelParams,
    /// Which of the two `params` holds.
    pub kind: UpdateKind,
    /// Client-side metrics (loss, RMSE, ...).
    pub metrics: BTreeMap<String, f64>,
}

impl ClientUpdate {
    /// An update carrying new weights.
    pub fn parameters(client_id: impl Into<String>, num_samples: u64, params: ModelParams) -> Self {
        ClientUpdate {
            client_id: client_id.into(),
            num_samples,
            params,
            kind: UpdateKind::Parameters,
            metrics: BTreeMap::new(),
        }
    }

    /// An update carrying `local − global`.
    pub fn delta(client_id: impl Into<String>, num_samples: u64, delta: ModelParams) -> Self {
        ClientUpdate {
            client_id: client_id.into(),
            num_samples,
            params: delta,
            kind: UpdateKind::Delta,
            metrics: BTreeMap::new(),
        }
    }

    /// The update as `local − global`.
    pub fn to_delta(&self, global: &ModelParams) -> Result<ModelParams> {
        match self.kind {
            UpdateKind::Delta => Ok(self.params.clone()),
            UpdateKind::Parameters => self.params.sub(global),
        }
    }
}

/// Checks applied to every update before aggregation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePolicy {
    /// Reject updates whose delta has an L2 norm above this bound (default: no bound).
    pub max_delta_norm: Option<f64>,
}

impl UpdatePolicy {
    /// Check the bound: a positive, finite number when set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (`max_delta_norm`) otherwise.
    pub fn validate(&self) -> Result<()> {
        match self.max_delta_norm {
            Some(bound) if !(bound.is_finite() && bound > 0.0) => Err(Error::config(
                "max_delta_norm",
                format!("must be finite and > 0, got {bound}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Validate one update against the global weights: names and shapes, finiteness, positive
/// weight, and the delta-norm bound.
pub fn validate_update(
    global: &ModelParams,
    update: &ClientUpdate,
    policy: &UpdatePolicy,
) -> Result<()> {
    validate(global, update, policy, true)
}

fn validate(
    global: &ModelParams,
    update: &ClientUpdate,
    policy: &UpdatePolicy,
    scan_finite: bool,
) -> Result<()> {
    let reject = |reason| Error::RejectedUpdate {
        client_id: update.client_id.clone(),
        reason,
    };
    if update.num_samples == 0 {
        return Err(reject(UpdateRejection::InvalidWeight { weight: 0.0 }));
    }
    if let Err(e) = global.check_compatible(&update.params) {
        return Err(reject(UpdateRejection::ShapeMismatch {
            detail: e.to_string(),
        }));
    }
    if scan_finite {
        if let Some(index) = first_non_finite(&update.params) {
            return Err(reject(UpdateRejection::NonFinite { index }));
        }
    }
    if let Some(bound) = policy.max_delta_norm {
        let norm = update.to_delta(global)?.l2_norm();
        if norm > bound {
            return Err(reject(UpdateRejection::NormTooLarge { norm, bound }));
        }
    }
    Ok(())
}

/// Flat index of the first NaN/Inf, scanning in parallel (the common all-finite case reads
/// the update once at memory speed).
fn first_non_finite(params: &ModelParams) -> Option<usize> {
    use rayon::prelude::*;
    let mut offset = 0;
    for p in params.params() {
        let bad = p
            .data
            .par_chunks(1 << 16)
            .any(|c| c.iter().fold(false, |acc, v| acc | !v.is_finite()));
        if bad {
            return p
                .data
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| offset + i);
        }
        offset += p.data.len();
    }
    None
}

/// Split updates into the valid ones and the rejected ones with their reasons.
pub fn partition_updates(
    global: &ModelParams,
    updates: Vec<ClientUpdate>,
    policy: &UpdatePolicy,
) -> (Vec<ClientUpdate>, Vec<(String, UpdateRejection)>) {
    let mut ok = Vec::new();
    let mut rejected = Vec::new();
    for u in updates {
        match validate_update(global, &u, policy) {
            Ok(()) => ok.push(u),
            Err(Error::RejectedUpdate { client_id, reason }) => rejected.push((client_id, reason)),
            Err(other) => rejected.push((
                u.client_id.clone(),
                UpdateRejection::ShapeMismatch {
                    detail: other.to_string(),
                },
            )),
        }
    }
    (ok, rejected)
}

/// A federated aggregation rule.
pub trait Aggregator: Send {
    /// Combine the round's updates into the next global weights. All updates are validated
    /// first; on any error the aggregator's state is unchanged.
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams>;

    /// The rule's name: the snake-case name of its
    /// [`Strategy`](crate::federation::Strategy) (`fed_avg`, `fed_adam`, ...).
    fn name(&self) -> &'static str;
}

pub(crate) fn check_all(
    global: &ModelParams,
    updates: &[ClientUpdate],
    policy: &UpdatePolicy,
) -> Result<()> {
    check_each(global, updates, policy, true)
}

/// [`check_all`] without the finiteness scan when no norm bound needs the values anyway, for
/// an aggregator whose own pass over the values exposes any NaN/Inf (a weighted mean in f64 of
/// finite f32 values is finite; one non-finite input makes it non-finite). Such an aggregator
/// must call [`check_all`] when its result is not finite, to reject the offending update by
/// name; the values are then read twice only in that failing case.
pub(crate) fn check_all_finite_later(
    global: &ModelParams,
    updates: &[ClientUpdate],
    policy: &UpdatePolicy,
) -> Result<()> {
    check_each(global, updates, policy, policy.max_delta_norm.is_some())
}

fn check_each(
    global: &ModelParams,
    updates: &[ClientUpdate],
    policy: &UpdatePolicy,
    scan_finite: bool,
) -> Result<()> {
    if updates.is_empty() {
        return Err(Error::Aggregation {
            reason: "no client updates".into(),
        });
    }
    updates
        .iter()
        .try_for_each(|u| validate(global, u, policy, scan_finite))
}

/// Client parameters in `local` form (delta updates are added to `global`).
pub(crate) fn as_parameters(
    global: &ModelParams,
    updates: &[ClientUpdate],
) -> Result<Vec<ModelParams>> {
    updates
        .iter()
        .map(|u| match u.kind {
            UpdateKind::Parameters => Ok(u.params.clone()),
            UpdateKind::Delta => global.add(&u.params),
        })
        .collect()
}
