//! Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially private
//! learning with adaptive clipping").
//!
//! Each round every client reports the bit `b_i = 1{‖Δ_i‖ ≤ C}` (its update was **not**
//! clipped). The server forms the noisy fraction `b̃ = (Σ b_i + N(0, σ_b²)) / m` and moves the
//! norm geometrically towards the target quantile `γ`:
//!
//! `C ← C · exp(−η (b̃ − γ))`
//!
//! so if fewer than `γ` of the updates fit under `C`, `C` grows, and if more fit, it shrinks.
//! (Flower 1.41 feeds the *clipped* fraction into the same formula, which moves `C` the wrong
//! way; the tests here pin the direction.) Releasing `b̃` costs privacy too: to keep the
//! overall noise multiplier at `z`, the update noise uses
//! `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)` ([`effective_noise_multiplier`]), which needs `z < 2σ_b`;
//! an accountant steps both releases (`z_Δ` and `2σ_b`), which compose to `z`.
//!
//! ```
//! use battery_fl_core::dp::{AdaptiveClipConfig, AdaptiveClipState, GaussianNoise};
//!
//! // noise on the count switched off to show the deterministic rule
//! let cfg = AdaptiveClipConfig::default().with_count_noise_std(0.0);
//! let mut state = AdaptiveClipState::new(1.0, cfg)?;
//! let mut noise = GaussianNoise::from_seed(0);
//! // every update was clipped (b̃ = 0 < γ = 0.5): C grows by exp(0.2 · 0.5)
//! let c = state.update(&[false, false], &mut noise)?;
//! assert!((c - 0.1_f64.exp()).abs() < 1e-12);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::noise::GaussianNoise;
use super::round::RoundNoise;
use super::DpMode;
use crate::error::{Error, Result};

/// Settings of adaptive clipping. Every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptiveClipConfig {
    /// Target fraction `γ` of updates that should be **unclipped** (`‖Δ‖ ≤ C`), in [0, 1].
    /// Default 0.5 (track the median norm).
    pub target_unclipped_quantile: f64,
    /// Learning rate `η` of the geometric update, > 0. Default 0.2 (Andrew et al., Flower).
    pub learning_rate: f64,
    /// Std `σ_b` of the noise on the count of unclipped updates, ≥ 0. `None` (the default)
    /// uses `m / 20` for `m` clients, as Andrew et al. recommend. 0 switches the noise off,
    /// which makes the count non-private (tests only).
    pub count_noise_std: Option<f64>,
}

impl Default for AdaptiveClipConfig {
    fn default() -> Self {
        AdaptiveClipConfig {
            target_unclipped_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_std: None,
        }
    }
}

impl AdaptiveClipConfig {
    /// The defaults; same as [`Default::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the target unclipped quantile `γ`.
    pub fn with_target_unclipped_quantile(mut self, gamma: f64) -> Self {
        self.target_unclipped_quantile = gamma;
        self
    }

    /// Set the learning rate `η`.
    pub fn with_learning_rate(mut self, eta: f64) -> Self {
        self.learning_rate = eta;
        self
    }

    /// Set a fixed count-noise std `σ_b` (instead of `m / 20`).
    pub fn with_count_noise_std(mut self, sigma_b: f64) -> Self {
        self.count_noise_std = Some(sigma_b);
        self
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let g = self.target_unclipped_quantile;
        if !(0.0..=1.0).contains(&g) {
            return Err(Error::config(
                "target_unclipped_quantile",
                format!("must be in [0, 1], got {g}"),
            ));
        }
        let eta = self.learning_rate;
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::config(
                "learning_rate",
                format!("must be positive and finite, got {eta}"),
            ));
        }
        if let Some(s) = self.count_noise_std {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::config(
                    "count_noise_std",
                    format!("must be finite and >= 0, got {s}"),
                ));
            }
        }
        Ok(())
    }

    /// `σ_b` for `m` clients: the configured value, or `m / 20`.
    pub fn count_noise_std_for(&self, num_clients: usize) -> f64 {
        self.count_noise_std.unwrap_or(num_clients as f64 / 20.0)
    }
}

/// The update noise multiplier `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)` that keeps the overall
/// noise multiplier at `z` when the count of unclipped updates is released with noise `σ_b`.
///
/// # Errors
/// [`Error::InvalidConfig`] if `z` is not positive and finite or `σ_b` is negative or not
/// finite; [`Error::Privacy`] if `z ≥ 2σ_b` (the count would need all of the budget).
pub fn effective_noise_multiplier(noise_multiplier: f64, count_noise_std: f64) -> Result<f64> {
    let z = noise_multiplier;
    if !(z.is_finite() && z > 0.0) {
        return Err(Error::config(
            "noise_multiplier",
            format!("must be positive and finite, got {z}"),
        ));
    }
    if !(count_noise_std.is_finite() && count_noise_std >= 0.0) {
        return Err(Error::config(
            "count_noise_std",
            format!("must be finite and >= 0, got {count_noise_std}"),
        ));
    }
    let two_sb = 2.0 * count_noise_std;
    if z >= two_sb {
        return Err(Error::Privacy {
            reason: format!(
                "adaptive clipping needs noise_multiplier {z} < 2 * count_noise_std = {two_sb}; \
                 raise count_noise_std (or the number of clients) or lower the noise multiplier"
            ),
        });
    }
    Ok((z.powi(-2) - two_sb.powi(-2)).powf(-0.5))
}

/// The evolving clipping norm of adaptive clipping; serializable for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveClipState {
    config: AdaptiveClipConfig,
    clipping_norm: f64,
    rounds: u64,
}

impl AdaptiveClipState {
    /// Start at `initial_clipping_norm`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the norm is not positive and finite or the config is invalid.
    pub fn new(initial_clipping_norm: f64, config: AdaptiveClipConfig) -> Result<Self> {
        config.validate()?;
        if !(initial_clipping_norm.is_finite() && initial_clipping_norm > 0.0) {
            return Err(Error::config(
                "clipping_norm",
                format!("must be positive and finite, got {initial_clipping_norm}"),
            ));
        }
        Ok(AdaptiveClipState {
            config,
            clipping_norm: initial_clipping_norm,
            rounds: 0,
        })
    }

    /// The clipping norm `C` to use in the current round.
    pub fn clipping_norm(&self) -> f64 {
        self.clipping_norm
    }

    /// How many updates of `C` have been applied.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The settings.
    pub fn config(&self) -> &AdaptiveClipConfig {
        &self.config
    }

    /// `σ_b` for `m` clients (see [`AdaptiveClipConfig::count_noise_std`]).
    pub fn count_noise_std(&self, num_clients: usize) -> f64 {
        self.config.count_noise_std_for(num_clients)
    }

    /// `z_Δ` for overall noise multiplier `z` and `m` clients ([`effective_noise_multiplier`]).
    ///
    /// # Errors
    /// As [`effective_noise_multiplier`].
    pub fn update_noise_multiplier(
        &self,
        noise_multiplier: f64,
        num_clients: usize,
    ) -> Result<f64> {
        effective_noise_multiplier(noise_multiplier, self.count_noise_std(num_clients))
    }

    /// The noise scales of this round: current `C` and `z_Δ` for overall `z`.
    ///
    /// # Errors
    /// As [`update_noise_multiplier`](Self::update_noise_multiplier) and [`RoundNoise::new`].
    pub fn round_noise(
        &self,
        mode: DpMode,
        noise_multiplier: f64,
        num_clients: usize,
    ) -> Result<RoundNoise> {
        let z_delta = self.update_noise_multiplier(noise_multiplier, num_clients)?;
        RoundNoise::new(mode, z_delta, self.clipping_norm, num_clients)
    }

    /// The noise multiplier of the count's release, for an accountant: `2σ_b` for `m`
    /// clients. Centred bits `b_i − ½` move the noisy sum by at most ½ when one client is
    /// added or removed (the adjacency of the update's release, whose denominator is fixed),
    /// so noise `σ_b` is a Gaussian mechanism of multiplier `σ_b / ½`.
    pub fn count_noise_multiplier(&self, num_clients: usize) -> f64 {
        2.0 * self.count_noise_std(num_clients)
    }

    /// End of round: given each client's bit "not clipped" (`‖Δ_i‖ ≤ C`, e.g.
    /// [`ClipOutcome::unclipped`](super::ClipOutcome::unclipped)), add `N(0, σ_b²)` to the
    /// count and apply the geometric update. Returns the new `C`. Every sampled client's bit
    /// is here: [`update_over`](Self::update_over) with `unclipped.len()` clients.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] for no flags; otherwise as
    /// [`update_from_noisy_count`](Self::update_from_noisy_count). The state is unchanged on error.
    pub fn update(&mut self, unclipped: &[bool], noise: &mut GaussianNoise) -> Result<f64> {
        self.update_over(unclipped, unclipped.len(), noise)
    }

    /// End of a round that sampled `sampled` clients, of which those with a bit in
    /// `unclipped` replied: the centred estimator of Andrew et al. (as TensorFlow Privacy's
    /// quantile estimator), `b̃ = (Σ (b_i − ½) + N(0, σ_b²)) / sampled + ½` with `σ_b` for
    /// `sampled` clients, a fixed public denominator as the update's. With every client's bit
    /// it is `(Σ b_i + N(0, σ_b²)) / sampled`. Returns the new `C`.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] for no flags, [`Error::InvalidConfig`] for more flags than
    /// sampled clients; otherwise as
    /// [`update_from_noisy_count`](Self::update_from_noisy_count). The state is unchanged on error.
    pub fn update_over(
        &mut self,
        unclipped: &[bool],
        sampled: usize,
        noise: &mut GaussianNoise,
    ) -> Result<f64> {
        let n = unclipped.len();
        if n == 0 {
            return Err(Error::NotEnoughData {
                what: "adaptive clipping update".into(),
                needed: 1,
                got: 0,
            });
        }
        if n > sampled {
            return Err(Error::config(
                "sampled",
                format!("{n} clipping bits from {sampled} sampled clients"),
            ));
        }
        let count = unclipped.iter().filter(|&&b| b).count() as f64;
        // Σ (b_i − ½) + ½ sampled = Σ b_i when every sampled client replied
        let missing = (sampled - n) as f64 / 2.0;
        let noisy = count + noise.sample(self.count_noise_std(sampled))? + missing;
        self.update_from_noisy_count(noisy, sampled)
    }

    /// End of round when the noisy count `Σ b_i + N(0, σ_b²)` was formed elsewhere (e.g. by
    /// secure aggregation of bits that each client noised with `σ_b / √m`). Returns the new `C`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `num_clients` is 0 or the count is not finite;
    /// [`Error::Privacy`] if the new norm would not be positive and finite. The state is
    /// unchanged on error.
    pub fn update_from_noisy_count(
        &mut self,
        noisy_unclipped_count: f64,
        num_clients: usize,
    ) -> Result<f64> {
        if num_clients == 0 {
            return Err(Error::config("num_clients", "must be at least 1"));
        }
        if !noisy_unclipped_count.is_finite() {
            return Err(Error::config(
                "noisy_unclipped_count",
                format!("must be finite, got {noisy_unclipped_count}"),
            ));
        }
        let fraction = noisy_unclipped_count / num_clients as f64;
        let step = -self.config.learning_rate * (fraction - self.config.target_unclipped_quantile);
        let next = self.clipping_norm * step.exp();
        if !(next.is_finite() && next > 0.0) {
            return Err(Error::Privacy {
                reason: format!("adaptive clipping norm left the positive finite range ({next})"),
            });
        }
        self.clipping_norm = next;
        self.rounds += 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noiseless() -> Result<AdaptiveClipState> {
        AdaptiveClipState::new(1.0, AdaptiveClipConfig::default().with_count_noise_std(0.0))
    }

    #[test]
    fn all_clipped_grows_all_unclipped_shrinks() -> Result<()> {
        let mut g = GaussianNoise::from_seed(0);
        let mut s = noiseless()?;
        for r in 1..=5 {
            let c = s.update(&[false; 4], &mut g)?;
            assert!((c - (0.1 * f64::from(r)).exp()).abs() < 1e-12);
        }
        let mut s = noiseless()?;
        for r in 1..=5 {
            let c = s.update(&[true; 4], &mut g)?;
            assert!((c - (-0.1 * f64::from(r)).exp()).abs() < 1e-12);
        }
        // exactly at the target quantile: C stays
        let mut s = noiseless()?;
        assert_eq!(s.update(&[true, false], &mut g)?, 1.0);
        assert_eq!(s.rounds(), 1);
        Ok(())
    }

    #[test]
    fn z_delta_formula_and_error() -> Result<()> {
        // z = 1, σ_b = 1: z_Δ = (1 − 1/4)^(−1/2) = 2/√3
        assert!((effective_noise_multiplier(1.0, 1.0)? - 2.0 / 3f64.sqrt()).abs() < 1e-12);
        assert!(matches!(
            effective_noise_multiplier(1.0, 0.5),
            Err(Error::Privacy { .. })
        ));
        assert!(matches!(
            effective_noise_multiplier(1.0, 0.0),
            Err(Error::Privacy { .. })
        ));
        assert!(matches!(
            effective_noise_multiplier(0.0, 1.0),
            Err(Error::InvalidConfig { .. })
        ));
        // default σ_b = m/20: 100 clients → σ_b = 5
        let s = AdaptiveClipState::new(0.1, AdaptiveClipConfig::default())?;
        assert_eq!(s.count_noise_std(100), 5.0);
        assert!((s.update_noise_multiplier(1.0, 100)? - (1.0 - 0.01f64).powf(-0.5)).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn errors_leave_state_unchanged() -> Result<()> {
        let mut s = noiseless()?;
        let before = s.clone();
        assert!(s.update(&[], &mut GaussianNoise::from_seed(1)).is_err());
        let more_bits_than_clients =
            s.update_over(&[true, true], 1, &mut GaussianNoise::from_seed(1));
        assert!(more_bits_than_clients.is_err());
        assert!(s.update_from_noisy_count(f64::NAN, 3).is_err());
        assert!(s.update_from_noisy_count(-1e6, 1).is_err()); // exp overflow
        assert_eq!(s, before);
        assert!(AdaptiveClipConfig::default()
            .with_target_unclipped_quantile(1.5)
            .validate()
            .is_err());
        assert!(AdaptiveClipConfig::default()
            .with_learning_rate(0.0)
            .validate()
            .is_err());
        assert!(AdaptiveClipConfig::default()
            .with_count_noise_std(-1.0)
            .validate()
            .is_err());
        assert!(AdaptiveClipState::new(0.0, AdaptiveClipConfig::default()).is_err());
        Ok(())
    }
}
