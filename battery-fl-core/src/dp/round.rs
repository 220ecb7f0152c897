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
/// In distributed mode the *sum* of the client noises is `N(0, (zC)²)`, the same as central
/// mode; it is meant for secure aggregation, where the server never sees a single update
/// (distributed DP without it is refused: [`check_mode`]). If clients
/// drop out, the sum carries less noise than planned, so the client noise is sized for the
/// smallest number of survivors the round accepts ([`with_min_survivors`](Self::with_min_survivors),
/// e.g. secure aggregation's threshold; default `m`): with `s` survivors the sum carries
/// `zC·√(min(s, t)/t)`, and [`effective_noise_multiplier`](Self::effective_noise_multiplier)
/// is what the accountant must be given.
///
/// The mean is always `sum / m` with `m` the number of clients **sampled** for the round,
/// fixed and public before it starts ([`mean_of_sum`](Self::mean_of_sum)), never the
/// number of replies: a data-dependent denominator would double the sensitivity that is
/// accounted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundNoise {
    /// Where the noise is added.
    pub mode: DpMode,
    /// The noise multiplier `z` applied to the update (with adaptive clipping: `z_Δ`).
    pub noise_multiplier: f64,
    /// The clipping norm `C` of this round.
    pub clipping_norm: f64,
    /// The number of clients `m` sampled for this round: the fixed denominator of the mean.
    pub num_clients: usize,
    /// The smallest number of survivors the round accepts (distributed mode sizes each
    /// client's noise for it); `None` = `num_clients`.
    #[serde(default)]
    pub min_survivors: Option<usize>,
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
            min_survivors: None,
        })
    }

    /// Size distributed noise for `t` survivors (`1 <= t <= num_clients`): each client adds
    /// `zC/√t`, so any `t` or more survivors carry at least `zC` together.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `1 <= t <= num_clients`.
    pub fn with_min_survivors(mut self, t: usize) -> Result<Self> {
        if t == 0 || t > self.num_clients {
            return Err(Error::config(
                "min_survivors",
                format!("must be in 1..={}, got {t}", self.num_clients),
            ));
        }
        self.min_survivors = Some(t);
        Ok(self)
    }

    /// The number of survivors the client noise is sized for (`t`, default `m`).
    pub fn noise_shares(&self) -> usize {
        self.min_survivors.unwrap_or(self.num_clients).max(1)
    }

    /// The noise multiplier the released mean really carries when `survivors` updates reach
    /// it: `z` in central and local mode, `z·√(min(s, t)/t)` in distributed mode. Give this
    /// to the accountant, not `z`.
    pub fn effective_noise_multiplier(&self, survivors: usize) -> f64 {
        match self.mode {
            DpMode::Central | DpMode::Local => self.noise_multiplier,
            DpMode::Distributed => {
                let t = self.noise_shares();
                self.noise_multiplier * (survivors.min(t) as f64 / t as f64).sqrt()
            }
        }
    }

    /// The mean update `sum / m` with the fixed, public denominator `m = num_clients`.
    ///
    pub fn mean_of_sum(&self, sum: &ModelParams) -> ModelParams {
        let mut mean = sum.clone();
        mean.scale(1.0 / self.num_clients as f32);
        mean
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
            DpMode::Distributed => self.sum_std() / (self.noise_shares() as f64).sqrt(),
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

    /// Client side: add [`client_std`](Self::client_std) noise to a clipped update. In
    /// central mode there is none, and `noise` is left untouched (no call is drawn), so a
    /// simulation that noises its clients from the coordinator's round generator draws the
    /// server's noise from the same call as a deployment's server does.
    ///
    /// # Errors
    /// As [`GaussianNoise::add_to_params`].
    pub fn add_client_noise(
        &self,
        update: &mut ModelParams,
        noise: &mut GaussianNoise,
    ) -> Result<()> {
        if self.mode == DpMode::Central {
            return Ok(());
        }
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

/// Refuse a DP mode the deployment cannot honour: distributed noise (`zC/√t` per client) only
/// protects anyone when the server sees nothing but the sum, i.e. with secure aggregation.
/// Without it, use local mode (each client adds `zC`, accounted as it is).
///
/// ```
/// use battery_fl_core::dp::{check_mode, DpMode};
/// assert!(check_mode(DpMode::Distributed, false).is_err());
/// assert!(check_mode(DpMode::Distributed, true).is_ok());
/// assert!(check_mode(DpMode::Local, false).is_ok());
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] (`dp.mode`) for distributed mode without secure aggregation.
pub fn check_mode(mode: DpMode, secure_aggregation: bool) -> Result<()> {
    if mode == DpMode::Distributed && !secure_aggregation {
        return Err(Error::config(
            "dp.mode",
            "distributed DP needs secure aggregation: without it the server sees each \
             under-noised update (use local mode)",
        ));
    }
    Ok(())
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
        assert_eq!(d.effective_noise_multiplier(2), 2.0 * 0.5_f64.sqrt());
        assert!(RoundNoise::new(DpMode::Central, -1.0, 1.0, 1).is_err());
        assert!(RoundNoise::new(DpMode::Central, 1.0, 0.0, 1).is_err());
        Ok(())
    }

    /// Clients drop out after noising: the survivors' noise is less than planned. Sized for
    /// the threshold, the noise of any t survivors reaches zC, and the accounted multiplier
    /// is what the sum really carries (measured on drawn noise, not only by formula).
    #[test]
    fn distributed_noise_is_sized_for_the_survivors() -> Result<()> {
        let (z, c, m) = (1.0, 1.0, 10);
        let naive = RoundNoise::new(DpMode::Distributed, z, c, m)?;
        let sized = naive.with_min_survivors(6)?;
        assert!(naive.with_min_survivors(0).is_err() && naive.with_min_survivors(11).is_err());
        let mut noise = GaussianNoise::from_seed(3);
        let draws = 4000;
        let std_of_sum = |rn: &RoundNoise, s: usize, noise: &mut GaussianNoise| -> Result<f64> {
            let mut acc = 0.0;
            for _ in 0..draws {
                let mut sum = 0.0;
                for _ in 0..s {
                    sum += noise.sample(rn.client_std())?;
                }
                acc += sum * sum;
            }
            Ok((acc / draws as f64).sqrt())
        };
        // 6 of 10 survive: sized for m, the sum carries ~0.77 zC, and that is what is accounted
        let carried = std_of_sum(&naive, 6, &mut noise)?;
        assert!((carried - 0.6_f64.sqrt()).abs() < 0.05, "{carried}");
        assert!((naive.effective_noise_multiplier(6) - 0.6_f64.sqrt()).abs() < 1e-12);
        // sized for t = 6, the 6 survivors carry zC
        let carried = std_of_sum(&sized, 6, &mut noise)?;
        assert!((carried - 1.0).abs() < 0.05, "{carried}");
        assert_eq!(sized.effective_noise_multiplier(6), z);
        assert_eq!(sized.effective_noise_multiplier(10), z);
        Ok(())
    }

    /// The mean divides by the sampled count, whatever number of updates arrived.
    #[test]
    fn mean_has_a_fixed_denominator() -> Result<()> {
        let rn = RoundNoise::new(DpMode::Central, 1.0, 1.0, 4)?;
        let sum = ModelParams::new(vec![("w".into(), vec![2], vec![2.0, 4.0])])?;
        let mean = rn.mean_of_sum(&sum);
        assert_eq!(mean.flatten(), vec![0.5, 1.0]);
        Ok(())
    }
}
