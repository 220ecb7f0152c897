//! What the first cycles cannot show: the knee. The best any early-life model can do.
//!
//! A cell's knee (the damage threshold at which fade accelerates, and how sharply) is drawn
//! independently of everything its first cycles record while the knee lies beyond them.
//! Given the rest of the cell's latent model exactly, its life is still a distribution over
//! knee draws; the mean of that distribution is the best prediction in squared error any
//! model of the early cycles can make, and its variance is an error no such model can go
//! below (law of total variance: the recorded cycles are a function of the non-knee
//! parameters and independent noise). [`CellSpec::knee_oracle`] estimates both by Monte Carlo.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::{AgingModel, CellSpec};
use crate::error::{Error, Result};
use crate::rng;

/// A cell's life over fresh draws of its knee, given everything else about it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KneeOracle {
    /// Mean cycle life over the draws: the oracle's prediction.
    pub mean_life: f64,
    /// Standard deviation of the cycle life over the draws: the error no early-life model of
    /// this cell can avoid (0 when the knee lies within the recorded cycles, where they show it).
    pub std_life: f64,
    /// Draws kept (those consistent with what the recorded cycles show).
    pub draws: usize,
}

impl CellSpec {
    /// The life of the cell whose latent model is `model` (drawn for this spec) over `draws`
    /// fresh knee draws, given everything else about it. When the cell's knee lies beyond its
    /// recorded cycles, draws whose knee would fall within them are rejected (the cycles show
    /// that it does not); when it lies within them, the cycles show it and the life is
    /// returned exactly. Deterministic for a given `seed`.
    ///
    /// ```
    /// use battery_fl_core::data::synthetic::{CellSpec, Chemistry};
    ///
    /// let spec = CellSpec::new(Chemistry::Nmc);
    /// let model = spec.draw_aging(&mut battery_fl_core::rng::seeded(3))?;
    /// let oracle = spec.knee_oracle(&model, 500, 1)?;
    /// assert!(oracle.std_life > 0.05 * oracle.mean_life);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero draws or a spec of another chemistry;
    /// [`Error::NotEnoughData`] when fewer than one in a hundred draws is consistent with
    /// the recorded cycles.
    pub fn knee_oracle(&self, model: &AgingModel, draws: usize, seed: u64) -> Result<KneeOracle> {
        if draws == 0 {
            return Err(Error::config("draws", "at least one knee draw"));
        }
        model.with_knee(self, 0.0, 0.0)?; // refuses a spec of another chemistry
        let window = f64::from(self.cycles);
        if model.knee_cycle <= window {
            let life = f64::from(model.cycle_life());
            return Ok(KneeOracle {
                mean_life: life,
                std_life: 0.0,
                draws: 1,
            });
        }
        let mut rng = rng::seeded(seed);
        let mut lives = Vec::with_capacity(draws);
        let mut tries = 0usize;
        while lives.len() < draws && tries < 100 * draws {
            tries += 1;
            let zt: f64 = rng.sample(StandardNormal);
            let zw: f64 = rng.sample(StandardNormal);
            let redrawn = model.with_knee(self, zt, zw)?;
            if redrawn.knee_cycle > window {
                lives.push(f64::from(redrawn.cycle_life()));
            }
        }
        if lives.len() < draws {
            return Err(Error::NotEnoughData {
                what: "knee draws beyond the recorded cycles".into(),
                needed: draws,
                got: lives.len(),
            });
        }
        let n = lives.len() as f64;
        let mean = lives.iter().sum::<f64>() / n;
        let var = lives.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n;
        Ok(KneeOracle {
            mean_life: mean,
            std_life: var.sqrt(),
            draws: lives.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{Chemistry, FleetConfig};

    #[test]
    fn without_variation_the_knee_is_known() -> Result<()> {
        let spec = CellSpec::new(Chemistry::Lfp).with_variation(0.0);
        let model = spec.draw_aging(&mut rng::seeded(1))?;
        let oracle = spec.knee_oracle(&model, 50, 2)?;
        assert!((oracle.mean_life - f64::from(model.cycle_life())).abs() < 1e-9);
        assert!(oracle.std_life < 1e-9);
        Ok(())
    }

    #[test]
    fn the_oracle_beats_the_cells_own_spread_and_keeps_its_rate() -> Result<()> {
        // across cells the life varies with the rate as well as the knee: the oracle's
        // error (the knee alone) must be well below the spread of lives, and its
        // predictions must track the true lives
        let config = FleetConfig::new()
            .with_fleets(1)
            .with_cells_per_fleet(30)
            .with_seed(4);
        let mut sq_err = 0.0;
        let mut floor = 0.0;
        let lives: Vec<f64> = config.aging_models()?[0]
            .iter()
            .map(|(spec, model)| {
                let o = spec.knee_oracle(model, 400, 9)?;
                let life = f64::from(model.cycle_life());
                sq_err += (o.mean_life - life).powi(2);
                floor += o.std_life.powi(2);
                Ok(life)
            })
            .collect::<Result<_>>()?;
        let n = lives.len() as f64;
        let mean = lives.iter().sum::<f64>() / n;
        let spread = (lives.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (rmse, floor) = ((sq_err / n).sqrt(), (floor / n).sqrt());
        assert!(rmse < 0.8 * spread, "oracle {rmse} vs spread {spread}");
        // the oracle's own error is about its floor (same distribution), within sampling
        assert!(
            rmse > 0.4 * floor && rmse < 2.0 * floor,
            "rmse {rmse} floor {floor}"
        );
        Ok(())
    }

    #[test]
    fn bad_requests_are_refused() -> Result<()> {
        let spec = CellSpec::new(Chemistry::Nmc);
        let model = spec.draw_aging(&mut rng::seeded(3))?;
        assert!(matches!(
            spec.knee_oracle(&model, 0, 1),
            Err(Error::InvalidConfig { .. })
        ));
        let lfp = CellSpec::new(Chemistry::Lfp);
        assert!(matches!(
            lfp.knee_oracle(&model, 10, 1),
            Err(Error::InvalidConfig { .. })
        ));
        Ok(())
    }
}
