//! Differential privacy: clipping, the Gaussian mechanism (central, local, distributed), adaptive clipping, and an RDP accountant.
//!
//! The building blocks of a DP federated round, as plain functions and small structs, so an
//! aggregation decorator is a thin composition of them:
//!
//! 1. each client clips its update `Δ` to L2 norm `C` ([`clip_l2`], [`clip_l2_slice`]);
//! 2. Gaussian noise with std `zC` reaches the sum of the clipped updates: added by the
//!    server (central), by each client to its own update (local), or split across the `m`
//!    clients as `zC/√m` each (distributed; pairs with secure aggregation). [`RoundNoise`]
//!    gives the scales, [`GaussianNoise`] draws them from ChaCha20, keyed from the OS or a seed;
//! 3. optionally `C` adapts to a target quantile of update norms ([`AdaptiveClipState`]);
//! 4. an [`RdpAccountant`] composes the rounds and reports (ε, δ), refusing rounds beyond a
//!    budget.
//!
//! [`DpConfig`] holds the settings of all four.
//!
//! ```
//! use battery_fl_core::dp::{clip_l2, DpConfig, DpMode};
//! use battery_fl_core::model::ModelParams;
//!
//! let cfg = DpConfig::new(1.0, 1.0).with_mode(DpMode::Central).with_seed(7);
//! cfg.validate()?;
//!
//! // a client clips its update
//! let mut update = ModelParams::new(vec![("w".into(), vec![2], vec![3.0, 4.0])])?;
//! let clip = clip_l2(&mut update, cfg.clipping_norm)?;
//! assert!(clip.clipped && clip.norm == 5.0 && update.l2_norm() <= 1.0);
//!
//! // the server noises the sum of 3 clipped updates with std zC = 1
//! let round = cfg.round_noise(3)?;
//! assert_eq!((round.server_sum_std(), round.client_std()), (1.0, 0.0));
//! let mut sum = update.add(&update)?.add(&update)?;
//! round.add_server_noise_to_sum(&mut sum, &mut cfg.noise_source()?)?;
//!
//! // and accounts for the round (every client sampled)
//! let mut accountant = cfg.accountant()?;
//! accountant.step(cfg.noise_multiplier, 1.0, 1)?;
//! assert!((accountant.epsilon(cfg.target_delta)? - 4.7285).abs() < 1e-3);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

pub mod accountant;
pub mod adaptive;
pub mod clip;
pub mod floor;
pub mod noise;
pub mod rdp;
pub mod record;
pub mod round;
pub mod server;

use serde::{Deserialize, Serialize};

pub use accountant::{PrivacyBudget, RdpAccountant};
pub use adaptive::{effective_noise_multiplier, AdaptiveClipConfig, AdaptiveClipState};
pub use clip::{clip_l2, clip_l2_slice, l2_norm, ClipOutcome};
pub use floor::DpFloor;
pub use noise::{GaussianNoise, NOISE_CHUNK, ROUND_NOISE_STREAM};
pub use record::{RecordPrivacy, RecordPrivacyReport};
pub use round::{check_mode, RoundNoise};
pub use server::{release_mean, ServerDp};

use crate::error::{Error, Result};

/// Where the Gaussian noise is added (see [`RoundNoise`] for the scales).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpMode {
    /// The server adds `N(0, (zC)²)` to the sum (or `(zC/m)²` to the mean) of the clipped
    /// updates; the server is trusted. The default.
    #[default]
    Central,
    /// Each client adds `N(0, (zC)²)` to its own clipped update; nobody is trusted.
    Local,
    /// Each of `m` clients adds `N(0, (zC)²/m)`, so the sum carries `zC`; meant for secure
    /// aggregation.
    Distributed,
}

/// Settings of differential privacy. Every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpConfig {
    /// Noise multiplier `z` (noise std / clipping norm), > 0. With adaptive clipping this is
    /// the overall multiplier; the update gets `z_Δ`. Default 1.0.
    pub noise_multiplier: f64,
    /// Clipping norm `C` (initial norm when adaptive), > 0. Default 1.0.
    pub clipping_norm: f64,
    /// Where noise is added. Default [`DpMode::Central`].
    pub mode: DpMode,
    /// Adaptive clipping; `None` (the default) keeps `C` fixed.
    pub adaptive: Option<AdaptiveClipConfig>,
    /// Seed of the noise. `None` (the default, for production) keys the CSPRNG from the OS;
    /// `Some` makes the noise reproducible (tests, simulation).
    pub seed: Option<u64>,
    /// δ of the reported (ε, δ), in (0, 1). Default 1e-5.
    pub target_delta: f64,
    /// Refuse rounds that would push ε above this. Default `None` (no budget).
    pub max_epsilon: Option<f64>,
}

impl Default for DpConfig {
    fn default() -> Self {
        DpConfig {
            noise_multiplier: 1.0,
            clipping_norm: 1.0,
            mode: DpMode::Central,
            adaptive: None,
            seed: None,
            target_delta: 1e-5,
            max_epsilon: None,
        }
    }
}

impl DpConfig {
    /// Defaults with the given noise multiplier and clipping norm.
    pub fn new(noise_multiplier: f64, clipping_norm: f64) -> Self {
        DpConfig {
            noise_multiplier,
            clipping_norm,
            ..Self::default()
        }
    }

    /// Set the noise multiplier `z`.
    pub fn with_noise_multiplier(mut self, noise_multiplier: f64) -> Self {
        self.noise_multiplier = noise_multiplier;
        self
    }

    /// Set the (initial) clipping norm `C`.
    pub fn with_clipping_norm(mut self, clipping_norm: f64) -> Self {
        self.clipping_norm = clipping_norm;
        self
    }

    /// Set the mode.
    pub fn with_mode(mut self, mode: DpMode) -> Self {
        self.mode = mode;
        self
    }

    /// Turn on adaptive clipping.
    pub fn with_adaptive(mut self, adaptive: AdaptiveClipConfig) -> Self {
        self.adaptive = Some(adaptive);
        self
    }

    /// Make the noise reproducible from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Set δ.
    pub fn with_target_delta(mut self, target_delta: f64) -> Self {
        self.target_delta = target_delta;
        self
    }

    /// Set the ε budget.
    pub fn with_max_epsilon(mut self, max_epsilon: f64) -> Self {
        self.max_epsilon = Some(max_epsilon);
        self
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let z = self.noise_multiplier;
        if !(z.is_finite() && z > 0.0) {
            return Err(Error::config(
                "noise_multiplier",
                format!("must be positive and finite, got {z}"),
            ));
        }
        let c = self.clipping_norm;
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::config(
                "clipping_norm",
                format!("must be positive and finite, got {c}"),
            ));
        }
        let d = self.target_delta;
        if !(d > 0.0 && d < 1.0) {
            return Err(Error::config(
                "target_delta",
                format!("must be in (0, 1), got {d}"),
            ));
        }
        if let Some(e) = self.max_epsilon {
            if !(e.is_finite() && e > 0.0) {
                return Err(Error::config(
                    "max_epsilon",
                    format!("must be positive and finite, got {e}"),
                ));
            }
        }
        if let Some(a) = &self.adaptive {
            a.validate()?;
            if let Some(sb) = a.count_noise_std {
                if z >= 2.0 * sb {
                    return Err(Error::config(
                        "adaptive.count_noise_std",
                        format!(
                            "noise_multiplier {z} must be < 2 * count_noise_std = {}",
                            2.0 * sb
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The noise generator: seeded if [`seed`](Self::seed) is set, else keyed from the OS.
    ///
    /// # Errors
    /// [`Error::Privacy`] if the OS has no randomness to give.
    pub fn noise_source(&self) -> Result<GaussianNoise> {
        GaussianNoise::from_optional_seed(self.seed)
    }

    /// An empty accountant, with the budget `max_epsilon` at `target_delta` if set.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the config is invalid.
    pub fn accountant(&self) -> Result<RdpAccountant> {
        self.validate()?;
        match self.max_epsilon {
            Some(e) => RdpAccountant::new().with_max_epsilon(e, self.target_delta),
            None => Ok(RdpAccountant::new()),
        }
    }

    /// The adaptive-clipping state starting at `clipping_norm`, if adaptive clipping is on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the config is invalid.
    pub fn adaptive_state(&self) -> Result<Option<AdaptiveClipState>> {
        self.validate()?;
        self.adaptive
            .clone()
            .map(|a| AdaptiveClipState::new(self.clipping_norm, a))
            .transpose()
    }

    /// The noise scales of a round with `m` clients at the fixed `z` and `C` of this config
    /// (with adaptive clipping use [`AdaptiveClipState::round_noise`] instead).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the config is invalid or `num_clients` is 0.
    pub fn round_noise(&self, num_clients: usize) -> Result<RoundNoise> {
        self.validate()?;
        RoundNoise::new(
            self.mode,
            self.noise_multiplier,
            self.clipping_norm,
            num_clients,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_serde_round_trips() -> Result<()> {
        let cfg = DpConfig::default()
            .with_adaptive(AdaptiveClipConfig::default())
            .with_max_epsilon(3.0);
        cfg.validate()?;
        let json = serde_json::to_string(&cfg).map_err(|e| Error::Privacy {
            reason: e.to_string(),
        })?;
        assert!(json.contains("\"mode\":\"central\""));
        let back: DpConfig = serde_json::from_str(&json).map_err(|e| Error::Privacy {
            reason: e.to_string(),
        })?;
        assert_eq!(back, cfg);
        let partial: DpConfig =
            serde_json::from_str(r#"{"mode":"distributed"}"#).map_err(|e| Error::Privacy {
                reason: e.to_string(),
            })?;
        assert_eq!(partial, DpConfig::default().with_mode(DpMode::Distributed));
        Ok(())
    }

    #[test]
    fn invalid_fields_are_named() {
        let field = |c: DpConfig| match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => format!("{other:?}"),
        };
        assert_eq!(field(DpConfig::new(0.0, 1.0)), "noise_multiplier");
        assert_eq!(field(DpConfig::new(1.0, f64::NAN)), "clipping_norm");
        assert_eq!(
            field(DpConfig::default().with_target_delta(0.0)),
            "target_delta"
        );
        assert_eq!(
            field(DpConfig::default().with_max_epsilon(-1.0)),
            "max_epsilon"
        );
        let tight = AdaptiveClipConfig::default().with_count_noise_std(0.4);
        assert_eq!(
            field(DpConfig::default().with_adaptive(tight)),
            "adaptive.count_noise_std"
        );
    }
}
