//! Adaptive server optimizers (Reddi et al., "Adaptive Federated Optimization", ICLR 2021):
//! the weighted mean client delta is a pseudo-gradient Δ for Adam, Yogi or Adagrad on the
//! server.
//!
//! With `m ← β1 m + (1 − β1) Δ` and
//! - FedAdagrad: `v ← v + Δ²`
//! - FedAdam: `v ← β2 v + (1 − β2) Δ²`
//! - FedYogi: `v ← v − (1 − β2) Δ² sign(v − Δ²)`
//!
//! the server applies `x ← x + η m / (√v + τ)`. As in the paper there is no bias correction
//! and `v` starts at `τ²`.

use serde::{Deserialize, Serialize};

use super::fedavg::fedavg;
use super::{check_all, Aggregator, ClientUpdate, UpdateKind, UpdatePolicy};
use crate::error::{Error, Result};
use crate::model::ModelParams;

/// Which adaptive rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerOptimizer {
    /// FedAdagrad.
    Adagrad,
    /// FedAdam.
    Adam,
    /// FedYogi.
    Yogi,
}

/// Settings of a server optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FedOptConfig {
    /// Server learning rate η (default 0.1).
    pub eta: f64,
    /// First-moment decay β1 (default 0.9).
    pub beta1: f64,
    /// Second-moment decay β2 (default 0.99).
    pub beta2: f64,
    /// Adaptivity τ (default 1e-3, the paper's best range).
    pub tau: f64,
    /// Checks applied to every update.
    pub policy: UpdatePolicy,
}

impl Default for FedOptConfig {
    fn default() -> Self {
        FedOptConfig {
            eta: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            tau: 1e-3,
            policy: UpdatePolicy::default(),
        }
    }
}

impl FedOptConfig {
    /// Check the values.
    pub fn validate(&self) -> Result<()> {
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(Error::config("eta", "must be > 0"));
        }
        for (f, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::config(f, format!("must be in [0, 1), got {v}")));
            }
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::config("tau", "must be > 0"));
        }
        Ok(())
    }
}

/// FedAdam / FedYogi / FedAdagrad with its state (checkpointable through serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedOpt {
    /// The rule.
    pub optimizer: ServerOptimizer,
    /// Settings.
    pub config: FedOptConfig,
    m: Option<Vec<f32>>,
    v: Option<Vec<f32>>,
}

impl FedOpt {
    /// A server optimizer with validated settings.
    pub fn new(optimizer: ServerOptimizer, config: FedOptConfig) -> Result<Self> {
        config.validate()?;
        Ok(FedOpt {
            optimizer,
            config,
            m: None,
            v: None,
        })
    }

    /// FedAdam with default settings.
    pub fn adam() -> Self {
        FedOpt {
            optimizer: ServerOptimizer::Adam,
            config: FedOptConfig::default(),
            m: None,
            v: None,
        }
    }

    /// FedYogi with default settings.
    pub fn yogi() -> Self {
        FedOpt {
            optimizer: ServerOptimizer::Yogi,
            config: FedOptConfig::default(),
            m: None,
            v: None,
        }
    }

    /// FedAdagrad with default settings.
    pub fn adagrad() -> Self {
        FedOpt {
            optimizer: ServerOptimizer::Adagrad,
            config: FedOptConfig::default(),
            m: None,
            v: None,
        }
    }
}

impl Aggregator for FedOpt {
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
        check_all(global, updates, &self.config.policy)?;
        // pseudo-gradient: weighted mean of the clients' deltas
        let deltas: Vec<ClientUpdate> = updates
            .iter()
            .map(|u| {
                Ok(ClientUpdate {
                    params: u.to_delta(global)?,
                    kind: UpdateKind::Delta,
                    ..u.clone()
                })
            })
            .collect::<Result<_>>()?;
        let delta = fedavg(&global.zeros_like(), &deltas)?.flatten();
        let n = delta.len();
        let c = &self.config;
        let (b1, b2, tau) = (c.beta1 as f32, c.beta2 as f32, c.tau as f32);
        let mut m = self
            .m
            .clone()
            .filter(|m| m.len() == n)
            .unwrap_or_else(|| vec![0.0; n]);
        let mut v = self
            .v
            .clone()
            .filter(|v| v.len() == n)
            .unwrap_or_else(|| vec![tau * tau; n]);
        let mut x = global.flatten();
        for i in 0..n {
            let d = delta[i];
            m[i] = b1 * m[i] + (1.0 - b1) * d;
            let d2 = d * d;
            v[i] = match self.optimizer {
                ServerOptimizer::Adagrad => v[i] + d2,
                ServerOptimizer::Adam => b2 * v[i] + (1.0 - b2) * d2,
                ServerOptimizer::Yogi => v[i] - (1.0 - b2) * d2 * (v[i] - d2).signum(),
            };
            x[i] += c.eta as f32 * m[i] / (v[i].sqrt() + tau);
        }
        let next = global.from_flat(&x)?;
        self.m = Some(m);
        self.v = Some(v);
        Ok(next)
    }

    fn name(&self) -> &'static str {
        match self.optimizer {
            ServerOptimizer::Adagrad => "fed_adagrad",
            ServerOptimizer::Adam => "fed_adam",
            ServerOptimizer::Yogi => "fed_yogi",
        }
    }
}
