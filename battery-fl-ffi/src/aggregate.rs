//! `bfl_aggregator`: federated aggregation rules over flat parameter vectors.

use std::ffi::c_char;
use std::fmt;

use battery_fl_core::aggregate::{
    Aggregator, ClientUpdate, FedAvg, FedMedian, FedOpt, FedOptConfig, FedProx, FedTrimmedAvg,
    ServerOptimizer, UpdatePolicy, DEFAULT_TRIMMED_BETA,
};
use battery_fl_core::federation::FederationConfig;
use battery_fl_core::model::ModelParams;

use crate::boundary::{
    arg_mut, arg_ref, c_str, ffi_boundary, free_handle, out_buffer, out_handle, out_ref,
    put_handle, slice,
};
use crate::status::{bfl_status, FfiError};

/// Aggregation rules for `bfl_aggregator_new` (stable numbers), named like the core's
/// strategies (`fed_avg` is `BFL_AGGREGATOR_KIND_FED_AVG`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bfl_aggregator_kind {
    /// Sample-weighted mean (FedAvg).
    FedAvg = 1,
    /// FedAvg on the server; clients add a proximal term `proximal_mu` (FedProx).
    FedProx = 2,
    /// Coordinate-wise median.
    FedMedian = 3,
    /// Coordinate-wise trimmed mean, `trimmed_beta` cut from each end.
    FedTrimmedAvg = 4,
    /// FedAdam server optimizer.
    FedAdam = 5,
    /// FedYogi server optimizer.
    FedYogi = 6,
    /// FedAdagrad server optimizer.
    FedAdagrad = 7,
}

/// Aggregator settings (`bfl_aggregator_config_default` fills the documented defaults, which
/// are the core's: the same as Python's and Flower's).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bfl_aggregator_config {
    /// Reject updates whose delta `update - global` has an L2 norm above this; 0 means no
    /// bound (default 0).
    pub max_delta_norm: f64,
    /// FedProx proximal weight mu, >= 0 (default 0.01).
    pub proximal_mu: f64,
    /// Trimmed mean: fraction cut from each end, in [0, 0.5) (default 0.2).
    pub trimmed_beta: f64,
    /// Server optimizers: learning rate eta (default 0.1).
    pub eta: f64,
    /// Server optimizers: first-moment decay beta1 (default 0.9).
    pub beta1: f64,
    /// Server optimizers: second-moment decay beta2 (default 0.99).
    pub beta2: f64,
    /// Server optimizers: adaptivity tau (default 1e-3).
    pub tau: f64,
}

impl Default for bfl_aggregator_config {
    fn default() -> Self {
        let opt = FedOptConfig::default();
        bfl_aggregator_config {
            max_delta_norm: 0.0,
            proximal_mu: FederationConfig::default().proximal_mu,
            trimmed_beta: DEFAULT_TRIMMED_BETA,
            eta: opt.eta,
            beta1: opt.beta1,
            beta2: opt.beta2,
            tau: opt.tau,
        }
    }
}

/// An aggregation rule plus the updates collected for the current round. Opaque.
///
/// Threads: `Send + Sync`. `bfl_aggregator_pending` may run concurrently with itself;
/// `bfl_aggregator_add_update` and `bfl_aggregator_finish` need exclusive access.
pub struct bfl_aggregator {
    rule: Box<dyn Aggregator + Sync>,
    pending: Vec<ClientUpdate>,
}

impl fmt::Debug for bfl_aggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("bfl_aggregator")
            .field("rule", &self.rule.name())
            .field("pending", &self.pending.len())
            .finish()
    }
}

fn build(kind: u32, c: &bfl_aggregator_config) -> Result<Box<dyn Aggregator + Sync>, FfiError> {
    let policy = UpdatePolicy {
        max_delta_norm: (c.max_delta_norm != 0.0).then_some(c.max_delta_norm),
    };
    if policy
        .max_delta_norm
        .is_some_and(|b| !(b.is_finite() && b > 0.0))
    {
        return Err(battery_fl_core::Error::InvalidConfig {
            field: "max_delta_norm".into(),
            reason: format!(
                "must be 0 (no bound) or a positive number, got {}",
                c.max_delta_norm
            ),
        }
        .into());
    }
    let fedopt = |optimizer| {
        let config = FedOptConfig {
            eta: c.eta,
            beta1: c.beta1,
            beta2: c.beta2,
            tau: c.tau,
            policy: policy.clone(),
        };
        FedOpt::new(optimizer, config)
    };
    const FEDAVG: u32 = bfl_aggregator_kind::FedAvg as u32;
    const FEDPROX: u32 = bfl_aggregator_kind::FedProx as u32;
    const FEDMEDIAN: u32 = bfl_aggregator_kind::FedMedian as u32;
    const TRIMMED: u32 = bfl_aggregator_kind::FedTrimmedAvg as u32;
    const ADAM: u32 = bfl_aggregator_kind::FedAdam as u32;
    const YOGI: u32 = bfl_aggregator_kind::FedYogi as u32;
    const ADAGRAD: u32 = bfl_aggregator_kind::FedAdagrad as u32;
    Ok(match kind {
        FEDAVG => Box::new(FedAvg::with_policy(policy)),
        FEDPROX => {
            let mut prox = FedProx::new(c.proximal_mu)?;
            prox.fedavg.policy = policy;
            Box::new(prox)
        }
        FEDMEDIAN => Box::new(FedMedian { policy }),
        TRIMMED => {
            let mut trimmed = FedTrimmedAvg::new(c.trimmed_beta)?;
            trimmed.policy = policy;
            Box::new(trimmed)
        }
        ADAM => Box::new(fedopt(ServerOptimizer::Adam)?),
        YOGI => Box::new(fedopt(ServerOptimizer::Yogi)?),
        ADAGRAD => Box::new(fedopt(ServerOptimizer::Adagrad)?),
        other => {
            return Err(FfiError::Invalid(format!(
                "unknown bfl_aggregator_kind {other}"
            )))
        }
    })
}

/// A flat vector as one-tensor `ModelParams`.
fn flat_params(values: &[f32]) -> Result<ModelParams, FfiError> {
    Ok(ModelParams::new(vec![(
        "params".into(),
        vec![values.len()],
        values.to_vec(),
    )])?)
}

/// Fill `*config` with the documented defaults.
///
/// NULL: `config` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_config_default(
    config: *mut bfl_aggregator_config,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(config, "config")? = bfl_aggregator_config::default() };
        Ok(())
    })
}

/// A new aggregator of `kind` (a `bfl_aggregator_kind` value; unknown values give
/// `BFL_STATUS_INVALID_ARGUMENT`) with `config`, or the defaults when `config` is NULL.
/// Server optimizers keep their state across rounds, so use one aggregator for a whole run.
///
/// Ownership: `config` is borrowed; on success `*out` owns a new aggregator
/// (`bfl_aggregator_free`). NULL: `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`; `config` may be
/// NULL. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_new(
    kind: u32,
    config: *const bfl_aggregator_config,
    out: *mut *mut bfl_aggregator,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let out = unsafe { out_handle(out, "out")? };
        // SAFETY: NULL or a live struct (caller's contract).
        let config = unsafe { config.as_ref() }.copied().unwrap_or_default();
        put_handle(
            out,
            bfl_aggregator {
                rule: build(kind, &config)?,
                pending: Vec::new(),
            },
        );
        Ok(())
    })
}

/// Add one client's update for the current round: its flat parameter vector (`is_delta`
/// false) or its delta `local - global` (`is_delta` true), weighted by `num_samples`. The
/// update is checked against the global weights in `bfl_aggregator_finish`.
///
/// Ownership: `client_id` and `params` are borrowed (copied). NULL: `aggregator` or
/// `client_id` NULL, or `params` NULL with `len > 0`, gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `aggregator`.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_add_update(
    aggregator: *mut bfl_aggregator,
    client_id: *const c_char,
    num_samples: u64,
    params: *const f32,
    len: usize,
    is_delta: bool,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (agg, id, values) = unsafe {
            (
                arg_mut(aggregator, "aggregator")?,
                c_str(client_id, "client_id")?,
                slice(params, len, "params")?,
            )
        };
        let params = flat_params(values)?;
        agg.pending.push(if is_delta {
            ClientUpdate::delta(id, num_samples, params)
        } else {
            ClientUpdate::parameters(id, num_samples, params)
        });
        Ok(())
    })
}

/// The number of updates added since the last `bfl_aggregator_finish`, into `*n`.
///
/// NULL: `aggregator` or `n` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe
/// with other read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_pending(
    aggregator: *const bfl_aggregator,
    n: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(n, "n")? = arg_ref(aggregator, "aggregator")?.pending.len() };
        Ok(())
    })
}

/// Close the round: combine the pending updates with the global weights `global` (`len`
/// floats) into the next global weights, written to `out[0..len]` (`out_len >= len`; `out`
/// may be the same buffer as `global`). A short `out` gives `BFL_STATUS_BUFFER_TOO_SMALL`
/// and changes nothing; past that check the pending updates are consumed whether or not the
/// round succeeds. Every update is checked first: a length that differs from `len`, a NaN or
/// infinity, a zero weight or a delta norm above the bound gives
/// `BFL_STATUS_REJECTED_UPDATE` naming the client, and `out` is untouched.
///
/// Ownership: `global` and `out` are borrowed. NULL: `aggregator` NULL, or `global`/`out`
/// NULL with a nonzero length, gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `aggregator`.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_finish(
    aggregator: *mut bfl_aggregator,
    global: *const f32,
    len: usize,
    out: *mut f32,
    out_len: usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let agg = unsafe { arg_mut(aggregator, "aggregator")? };
        // copied before `out` is borrowed, so the two may alias
        // SAFETY: pointer contract of the crate docs.
        let global = flat_params(unsafe { slice(global, len, "global")? })?;
        if out_len < len {
            return Err(FfiError::TooSmall {
                what: "out",
                needed: len,
                got: out_len,
            });
        }
        let updates = std::mem::take(&mut agg.pending);
        let next = agg.rule.aggregate(&global, &updates)?;
        // SAFETY: pointer contract of the crate docs.
        unsafe { out_buffer(out, out_len, len, "out")? }.copy_from_slice(&next.flatten());
        Ok(())
    })
}

/// Free an aggregator (and any pending updates). NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `aggregator` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_aggregator_free(aggregator: *mut bfl_aggregator) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(aggregator) }
}
