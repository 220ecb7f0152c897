//! Robust rules: coordinate-wise median and trimmed mean (Yin et al. 2018). Both ignore
//! sample counts, so a client cannot buy influence by claiming more samples.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{as_parameters, check_all, Aggregator, ClientUpdate, UpdatePolicy};
use crate::error::{Error, Result};
use crate::model::ModelParams;

fn coordinatewise(
    global: &ModelParams,
    updates: &[ClientUpdate],
    reduce: impl Fn(&mut [f32]) -> f32 + Sync,
) -> Result<ModelParams> {
    let params = as_parameters(global, updates)?;
    let mut out = global.clone();
    for (t, dst) in out.values_mut().enumerate() {
        let bufs: Vec<&[f32]> = params
            .iter()
            .map(|p| p.params()[t].data.as_slice())
            .collect();
        dst.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            let mut column = vec![0f32; bufs.len()];
            for (j, d) in chunk.iter_mut().enumerate() {
                let i = c * 4096 + j;
                for (k, b) in bufs.iter().enumerate() {
                    column[k] = b[i];
                }
                *d = reduce(&mut column);
            }
        });
    }
    Ok(out)
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_unstable_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Coordinate-wise median of the clients' weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FedMedian {
    /// Checks applied to every update.
    pub policy: UpdatePolicy,
}

impl Aggregator for FedMedian {
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
        check_all(global, updates, &self.policy)?;
        coordinatewise(global, updates, median)
    }

    fn name(&self) -> &'static str {
        "fed_median"
    }
}

/// The trimmed fraction every layer defaults to (0.2): `FederationConfig::trimmed_beta`, the
/// C `bfl_aggregator_config.trimmed_beta` and the Python and Flower settings.
pub const DEFAULT_TRIMMED_BETA: f64 = 0.2;

/// Coordinate-wise trimmed mean: drop the `floor(beta · n)` smallest and largest values of
/// each coordinate, average the rest. Runs default `beta` to [`DEFAULT_TRIMMED_BETA`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedTrimmedAvg {
    /// Fraction trimmed from each end, in [0, 0.5).
    pub beta: f64,
    /// Checks applied to every update.
    pub policy: UpdatePolicy,
}

impl FedTrimmedAvg {
    /// Trimmed mean with fraction `beta` cut from each end.
    pub fn new(beta: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&beta) {
            return Err(Error::config(
                "beta",
                format!("must be in [0, 0.5), got {beta}"),
            ));
        }
        Ok(FedTrimmedAvg {
            beta,
            policy: UpdatePolicy::default(),
        })
    }
}

impl Aggregator for FedTrimmedAvg {
    fn aggregate(&mut self, global: &ModelParams, updates: &[ClientUpdate]) -> Result<ModelParams> {
        check_all(global, updates, &self.policy)?;
        let cut = (self.beta * updates.len() as f64).floor() as usize;
        coordinatewise(global, updates, |v| {
            v.sort_unstable_by(f32::total_cmp);
            let kept = &v[cut..v.len() - cut];
            (kept.iter().map(|&x| f64::from(x)).sum::<f64>() / kept.len() as f64) as f32
        })
    }

    fn name(&self) -> &'static str {
        "fed_trimmed_avg"
    }
}
