//! Record-level differential privacy of summed per-cell shares: the unit protected is one
//! cell, not one fleet.
//!
//! A fleet releases sums over its cells of per-cell shares whose L2 norm is bounded (the
//! sensitivity `Δ`, for example [`statistics_sensitivity`](crate::model::statistics_sensitivity)
//! for the linear model's statistics). Gaussian noise of std `zΔ` reaches each released sum:
//!
//! - [`DpMode::Local`]: each fleet adds `N(0, (zΔ)²)` to its own sum. The guarantee holds
//!   against everyone, the coordinator and any coalition of other fleets included; the total
//!   carries `√m` times that noise.
//! - [`DpMode::Distributed`] (the default; needs secure aggregation): each of the `m` fleets
//!   adds `N(0, (zΔ)²/m)`, so the total carries `zΔ` and the coordinator sees only the
//!   total. A curious fleet knows its own share of the noise and sees the rest, `zΔ√((m−1)/m)`:
//!   ε is reported for that noise, the weaker of the two.
//!
//! Releases compose by Rényi DP ([`RdpAccountant`]); with [`RecordPrivacy::epsilon`] set, the
//! noise multiplier is the smallest that keeps all the releases within it.
//!
//! ```
//! use battery_fl_core::dp::{DpMode, RecordPrivacy};
//!
//! let p = RecordPrivacy::with_epsilon(4.0);
//! // two releases over five fleets
//! let z = p.noise_multiplier_for(5, 2)?;
//! assert!((p.epsilon_for(z, 5, 2)? - 4.0).abs() < 1e-3);
//! // each fleet's share of the noise: the total carries zΔ
//! assert!((p.fleet_std(z, 2.0, 5) - z * 2.0 / 5f64.sqrt()).abs() < 1e-12);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::{DpMode, GaussianNoise, RdpAccountant};
use crate::error::{Error, Result};

/// Settings of record-level DP: a target ε per cell (or a fixed noise multiplier), δ, where
/// the noise is added, and its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordPrivacy {
    /// ε per cell over everything released, at `delta`; the noise multiplier is found by the
    /// accountant. Default 8.
    pub epsilon: Option<f64>,
    /// Noise multiplier `z` (std / sensitivity) instead of a target ε. Default `None`.
    pub noise_multiplier: Option<f64>,
    /// δ, in (0, 1). Default 1e-5.
    pub delta: f64,
    /// Local or distributed noise ([`DpMode::Central`] is refused: a coordinator that adds
    /// the noise sees the exact sums). Default distributed.
    pub mode: DpMode,
    /// Seed of the noise; `None` (the default, for production) keys it from the OS.
    pub seed: Option<u64>,
}

impl Default for RecordPrivacy {
    fn default() -> Self {
        RecordPrivacy {
            epsilon: Some(8.0),
            noise_multiplier: None,
            delta: 1e-5,
            mode: DpMode::Distributed,
            seed: None,
        }
    }
}

impl RecordPrivacy {
    /// Defaults with target ε per cell `epsilon`.
    pub fn with_epsilon(epsilon: f64) -> Self {
        RecordPrivacy {
            epsilon: Some(epsilon),
            ..Self::default()
        }
    }

    /// Defaults with a fixed noise multiplier instead of a target ε.
    pub fn with_noise_multiplier(noise_multiplier: f64) -> Self {
        RecordPrivacy {
            epsilon: None,
            noise_multiplier: Some(noise_multiplier),
            ..Self::default()
        }
    }

    /// The mode that fits the aggregation: distributed noise under secure aggregation (each
    /// fleet adds a share), local noise without it (each fleet adds all of it).
    pub fn for_aggregation(mut self, secure_aggregation: bool) -> Self {
        self.mode = if secure_aggregation {
            DpMode::Distributed
        } else {
            DpMode::Local
        };
        self
    }

    /// Check every field: exactly one of `epsilon` and `noise_multiplier`, positive and
    /// finite; `delta` in (0, 1); not central mode.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must be positive and finite, got {v}"),
                ))
            }
        };
        match (self.epsilon, self.noise_multiplier) {
            (Some(e), None) => positive("privacy.epsilon", e)?,
            (None, Some(z)) => positive("privacy.noise_multiplier", z)?,
            _ => {
                return Err(Error::config(
                    "privacy",
                    "set exactly one of epsilon and noise_multiplier",
                ))
            }
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::config(
                "privacy.delta",
                format!("must be in (0, 1), got {}", self.delta),
            ));
        }
        if self.mode == DpMode::Central {
            return Err(Error::config(
                "privacy.mode",
                "record-level privacy needs local or distributed noise: a coordinator that adds it sees the exact sums",
            ));
        }
        Ok(())
    }

    /// The noise multiplier that reaches the noise of a released sum, as seen by the weakest
    /// observer (see the module docs), with `fleets` fleets.
    fn effective(&self, z: f64, fleets: usize) -> f64 {
        match self.mode {
            DpMode::Distributed => {
                let m = fleets.max(1) as f64;
                z * ((m - 1.0) / m).sqrt()
            }
            _ => z,
        }
    }

    /// ε per cell after `releases` Gaussian releases with noise multiplier `z` among
    /// `fleets` fleets.
    pub fn epsilon_for(&self, z: f64, fleets: usize, releases: u64) -> Result<f64> {
        self.validate()?;
        if fleets < 2 && self.mode == DpMode::Distributed {
            return Err(Error::NotEnoughData {
                what: "fleets to share distributed noise".into(),
                needed: 2,
                got: fleets,
            });
        }
        RdpAccountant::new().epsilon_after(self.effective(z, fleets), 1.0, releases, self.delta)
    }

    /// The noise multiplier: the given one, or the smallest (to 1e-4 relative) whose
    /// `releases` releases stay within the target ε.
    pub fn noise_multiplier_for(&self, fleets: usize, releases: u64) -> Result<f64> {
        self.validate()?;
        if let Some(z) = self.noise_multiplier {
            self.epsilon_for(z, fleets, releases)?;
            return Ok(z);
        }
        let target = self.epsilon.unwrap_or(f64::INFINITY);
        let (mut lo, mut hi) = (1e-3, 1e4);
        if self.epsilon_for(hi, fleets, releases)? > target {
            return Err(Error::config(
                "privacy.epsilon",
                format!("{target} is out of reach: even noise multiplier {hi} spends more"),
            ));
        }
        while hi / lo > 1.0 + 1e-4 {
            let mid = (lo * hi).sqrt();
            if self.epsilon_for(mid, fleets, releases)? > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(hi)
    }

    /// What `releases` releases among `fleets` fleets spend.
    pub fn report(&self, fleets: usize, releases: u64) -> Result<RecordPrivacyReport> {
        let z = self.noise_multiplier_for(fleets, releases)?;
        Ok(RecordPrivacyReport {
            epsilon: self.epsilon_for(z, fleets, releases)?,
            delta: self.delta,
            noise_multiplier: z,
            mode: self.mode,
            releases,
        })
    }

    /// Std of the noise one fleet adds to a released sum of sensitivity `sensitivity`.
    pub fn fleet_std(&self, z: f64, sensitivity: f64, fleets: usize) -> f64 {
        match self.mode {
            DpMode::Distributed => z * sensitivity / (fleets.max(1) as f64).sqrt(),
            _ => z * sensitivity,
        }
    }

    /// The noise generator: seeded if [`seed`](Self::seed) is set, else keyed from the OS.
    pub fn noise(&self) -> Result<GaussianNoise> {
        GaussianNoise::from_optional_seed(self.seed)
    }
}

/// What a record-level private release spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPrivacyReport {
    /// ε per cell at `delta`.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// The noise multiplier used.
    pub noise_multiplier: f64,
    /// Where the noise was added.
    pub mode: DpMode,
    /// Number of Gaussian releases composed.
    pub releases: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_found_multiplier_meets_the_target_and_more_releases_need_more_noise() {
        let p = RecordPrivacy::with_epsilon(1.0);
        let one = p.noise_multiplier_for(5, 1).unwrap();
        let two = p.noise_multiplier_for(5, 2).unwrap();
        assert!(two > one);
        assert!(p.epsilon_for(two, 5, 2).unwrap() <= 1.0 + 1e-9);
        assert!(p.epsilon_for(two * 0.99, 5, 2).unwrap() > 1.0);
        // local noise protects against everyone with z itself: a smaller multiplier suffices
        let local = RecordPrivacy {
            mode: DpMode::Local,
            ..p.clone()
        };
        assert!(local.noise_multiplier_for(5, 2).unwrap() < two);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let both = RecordPrivacy {
            noise_multiplier: Some(1.0),
            ..RecordPrivacy::default()
        };
        assert!(matches!(both.validate(), Err(Error::InvalidConfig { .. })));
        let central = RecordPrivacy {
            mode: DpMode::Central,
            ..RecordPrivacy::default()
        };
        assert!(central.validate().is_err());
        assert!(RecordPrivacy::with_epsilon(-1.0).validate().is_err());
        assert!(RecordPrivacy::with_noise_multiplier(f64::NAN)
            .validate()
            .is_err());
        assert!(RecordPrivacy::default().epsilon_for(1.0, 1, 1).is_err());
    }
}
