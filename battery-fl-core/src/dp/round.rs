//! The noise scales of one DP round in each [`DpMode`], and where they are added.
//!
//! ```
//! use battery_fl_core::dp::{DpMode, RoundNoise};
//!
//! // z = 1, C = 2, 4 clients
//! let d = RoundNoise::new(DpMode::Distributed, 1.0, 2.0, 4)?;
//! assert_eq!(d.client_std(), 1.0); // zC/√m per client; the sum carries zC = 2
//! let c = RoundNoise { mode: DpMode::Central, ..d };
//! assert_eq!((c.server_sum_std(), c.server_mean_std()), (2.0, 0.5));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::noise::GaussianNoise;
use super::DpMode;
use crate::error::{Error, Result};
use crate::model::ModelParams;

/// The noise scales of one round, for one [`DpMode`].
///
/// With noise multiplier `z`, clipping norm `C` and `m` clients:
///
/// | mode | each client adds | server adds to the **sum** | server adds to the **mean** (sum / m) |
/// |---|---|---|---|
/// | central | nothing | `N(0, (zC)²)` | `N(0, (zC/m)²)` |
/// | local | `N(0, (zC)²)` | nothing | nothing |
/// | distributed | `N(0, (zC)²/m)` | nothing | nothing |
///
/// In distributed mode the *sum* of the `m` client noises is `N(0, (zC)²)`, the same as
/// central mode; it is meant for secure aggregation, where the server never sees a single
/// update. If clients drop out, the sum carries less noise than planned: set `m` to the
/// smallest number of survivors the round accepts (secure aggregation's threshold), so the
/// survivors' noise alone reaches `zC`. In central mode `m` must be fixed before the round
/// (as Flower's `num_sampled_clients`), not the number of replies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundNoise {
    /// Where the noise is added.
    pub mode: DpMode,
    /// The noise multiplier `z` applied to the update (with adaptive clipping: `z_Δ`).
    pub noise_multiplier: f64,
    /// The clipping norm `C` of this round.
    pub clipping_norm: f64,
    /// The number of clients `m` of this round.
    pub num_clients: usize,
}

impl RoundNoise {
    /// Check the values and build.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `noise_multiplier ≥ 0`, `clipping_norm > 0` (both
    /// finite) and `num_clients ≥ 1`.
    pub fn new(
        mode: DpMode,
        noise_multiplier: f64,
        clipping_norm: f64,
        num_clients: usize,
    ) -> Result<Self> {
        if !(noise_multiplier.is_finite() && noise_multiplier >= 0.0) {
            return Err(Error::config(
                "noise_multiplier",
                format!("must be finite and >= 0, got {noise_multiplier}"),
            ));
        }
        if !(clipping_norm.is_finite() && clipping_norm > 0.0) {
            return Err(Error::config(
                "clipping_norm",
                format!("must be positive and finite, got {clipping_norm}"),
            ));
        }
        if num_clients == 0 {
            return Err(Error::config("num_clients", "must be at least 1"));
        }
        Ok(RoundNoise {
            mode,
            noise_multiplier,
            clipping_norm,
            num_clients,
        })
    }

    /// The standard deviation `zC` carried by the sum of the clipped updates.
    pub fn sum_std(&self) -> f64 {
        self.noise_multiplier * self.clipping_norm
    }

    /// The std each client adds to its own clipped update (see the table above).
    pub fn client_std(&self) -> f64 {
        match self.mode {
            DpMode::Central => 0.0,
            DpMode::Local => self.sum_std(),
            DpMode::Distributed => self.sum_std() / (self.num_clients as f64).sqrt(),
        }
    }

    /// The std the server adds to the sum of the clipped updates (`zC` in central mode).
    pub fn server_sum_std(&self) -> f64 {
        match self.mode {
            DpMode::Central => self.sum_std(),
            DpMode::Local | DpMode::Distributed => 0.0,
        }
    }

    /// The std the server adds to the mean `sum / m` (`zC/m` in central mode).
    pub fn server_mean_std(&self) -> f64 {
        self.server_sum_std() / self.num_clients as f64
    }

    /// Client side: add [`client_std`](Self::client_std) noise to a clipped update.
    ///
    /// # Errors
    /// As [`GaussianNoise::add_to_params`].
    pub fn add_client_noise(
        &self,
        update: &mut ModelParams,
        noise: &mut GaussianNoise,
    ) -> Result<()> {
        noise.add_to_params(update, self.client_std())
    }

    /// Server side: add [`server_sum_std`](Self::server_sum_std) noise to the sum of
    /// clipped updates.
    ///
    /// # Errors
    /// As [`GaussianNoise::add_to_params`].
    pub fn add_server_noise_to_sum(
        &self,
        sum: &mut ModelParams,
        noise: &mut GaussianNoise,
    ) -> Result<()> {
        noise.add_to_params(sum, self.server_sum_std())
    }

    /// Server side: add [`server_mean_std`](Self::server_mean_std) noise to the unweighted
    /// mean (sum / m) of clipped updates.
    ///
    /// # Errors
    /// As [`GaussianNoise::add_to_params`].
    pub fn add_server_noise_to_mean(
        &self,
        mean: &mut ModelParams,
        noise: &mut GaussianNoise,
    ) -> Result<()> {
        noise.add_to_params(mean, self.server_mean_std())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_noise_scales_per_mode() -> Result<()> {
        let c = RoundNoise::new(DpMode::Central, 2.0, 0.5, 4)?;
        assert_eq!(
            (c.client_std(), c.server_sum_std(), c.server_mean_std()),
            (0.0, 1.0, 0.25)
        );
        let l = RoundNoise {
            mode: DpMode::Local,
            ..c
        };
        assert_eq!((l.client_std(), l.server_sum_std()), (1.0, 0.0));
        let d = RoundNoise {
            mode: DpMode::Distributed,
            ..c
        };
        assert_eq!((d.client_std(), d.server_sum_std()), (0.5, 0.0));
        assert!(RoundNoise::new(DpMode::Central, 1.0, 1.0, 0).is_err());
        assert!(RoundNoise::new(DpMode::Central, -1.0, 1.0, 1).is_err());
        assert!(RoundNoise::new(DpMode::Central, 1.0, 0.0, 1).is_err());
        Ok(())
    }
}
