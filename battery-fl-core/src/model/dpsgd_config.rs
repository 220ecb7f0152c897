//! DP-SGD's settings and report.

use serde::{Deserialize, Serialize};

use crate::dp::RdpAccountant;
use crate::error::{Error, Result};

/// Record-level DP-SGD settings (per cell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpSgdConfig {
    /// L2 norm each cell's gradient is clipped to (default 1.0).
    pub clipping_norm: f64,
    /// Noise multiplier `z` (noise std `z·C` on the sum of clipped gradients); `None` (the
    /// default) finds the smallest one that keeps the whole training within `epsilon`.
    pub noise_multiplier: Option<f64>,
    /// Target ε per cell for the whole training (default 8; used when `noise_multiplier` is
    /// `None`, otherwise a budget: training that would spend more is refused before it starts).
    pub epsilon: Option<f64>,
    /// δ of the reported (ε, δ) (default 1e-5).
    pub delta: f64,
    /// Seed of the noise; `None` (the default, for production) keys the CSPRNG from the OS.
    pub seed: Option<u64>,
    /// Where private training starts from fresh weights (the federation's first global
    /// model, [`BatLiNet::start_private`](super::BatLiNet::start_private)), first train them
    /// on the public cells, without noise, with the model's own epochs and batch (default
    /// true). Public cells cost no privacy, and noisy steps from a trained start lose less
    /// than from random weights (BENCHMARKS.md, session 20).
    pub public_pretraining: bool,
    /// Factor on the learning rate of the private steps: DP-SGD steps with the model's (or
    /// the run's) learning rate times this (default 3). With Adam and noise far larger than
    /// the clipped signal, the noise sets each weight's step size, so the signal moves a
    /// weight by about `lr x signal / noise` per step: a larger rate than plain training's
    /// compensates (chosen on another draw of the synthetic fleets, BENCHMARKS.md session 21).
    pub learning_rate_scale: f64,
}

impl Default for DpSgdConfig {
    fn default() -> Self {
        DpSgdConfig {
            clipping_norm: 1.0,
            noise_multiplier: None,
            epsilon: Some(8.0),
            delta: 1e-5,
            seed: None,
            public_pretraining: true,
            learning_rate_scale: 3.0,
        }
    }
}

impl DpSgdConfig {
    /// Check every setting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.clipping_norm) {
            return Err(Error::config(
                "clipping_norm",
                "must be positive and finite",
            ));
        }
        if !positive(self.learning_rate_scale) {
            return Err(Error::config(
                "learning_rate_scale",
                "must be positive and finite",
            ));
        }
        if let Some(z) = self.noise_multiplier {
            if !positive(z) {
                return Err(Error::config(
                    "noise_multiplier",
                    "must be positive and finite",
                ));
            }
        }
        match self.epsilon {
            Some(e) if !positive(e) => {
                return Err(Error::config("epsilon", "must be positive and finite"))
            }
            None if self.noise_multiplier.is_none() => {
                return Err(Error::config(
                    "epsilon",
                    "give a target epsilon or a noise multiplier",
                ))
            }
            _ => {}
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::config("delta", "must lie in (0, 1)"));
        }
        Ok(())
    }

    /// The noise multiplier for `steps` steps at sampling rate `q`: the given one (checked
    /// against the budget `epsilon`), or the smallest (to 1e-4 relative) within `epsilon`.
    ///
    /// # Errors
    /// [`Error::BudgetExhausted`] when the given multiplier would spend more than `epsilon`;
    /// [`Error::InvalidConfig`] when no multiplier up to 1e4 reaches the target.
    pub fn noise_multiplier_for(&self, q: f64, steps: u64) -> Result<f64> {
        self.validate()?;
        let spent = |z: f64| RdpAccountant::new().epsilon_after(z, q, steps, self.delta);
        if let Some(z) = self.noise_multiplier {
            let e = spent(z)?;
            return match self.epsilon {
                Some(max) if e > max => Err(Error::BudgetExhausted {
                    epsilon: e,
                    max_epsilon: max,
                }),
                _ => Ok(z),
            };
        }
        let target = self.epsilon.unwrap_or(f64::INFINITY);
        let (mut lo, mut hi) = (1e-2, 1e4);
        if spent(hi)? > target {
            return Err(Error::config(
                "epsilon",
                format!("{target} is out of reach: even noise multiplier {hi} spends more"),
            ));
        }
        while hi / lo > 1.0 + 1e-4 {
            let mid = (lo * hi).sqrt();
            if spent(mid)? > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }
}

/// What a DP-SGD training spent and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpSgdReport {
    /// Mean per-cell loss of the sampled cells, per epoch (stays with the fleet).
    pub epoch_losses: Vec<f64>,
    /// Optimizer steps.
    pub steps: u64,
    /// Sampling rate `q`.
    pub sample_rate: f64,
    /// Noise multiplier `z`.
    pub noise_multiplier: f64,
    /// ε per cell spent by this training at `delta`.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Share of the sampled cells' gradients that were longer than the clipping norm and
    /// shortened (stays with the fleet, like the losses). Near 0, the noise is sized for
    /// gradients far longer than the real ones; near 1, clipping biases every step.
    #[serde(default)]
    pub clipped_fraction: f64,
}
