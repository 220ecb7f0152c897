//! Input statistics and the per-channel scales fitted from them (summable across fleets).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sufficient statistics of a dataset's inputs (shared, possibly through secure aggregation,
/// to fit one [`InputScales`] across fleets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    /// Number of cells.
    pub cells: f64,
    /// Per channel: Σ x² of the branch-A inputs over cells and positions.
    pub sum_sq_a: Vec<f64>,
    /// Per channel: Σ x² of the raw inputs over cells and positions.
    pub sum_sq_raw: Vec<f64>,
    /// Per position (channel, cycle, grid point): Σ x of the raw inputs over cells.
    pub sum_raw: Vec<f64>,
}

impl InputStats {
    /// Flatten to `[cells, sum_sq_a.., sum_sq_raw.., sum_raw..]` (for secure summation).
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![self.cells];
        v.extend(&self.sum_sq_a);
        v.extend(&self.sum_sq_raw);
        v.extend(&self.sum_raw);
        v
    }

    /// Length of [`InputStats::to_vec`] for inputs of `shape`.
    pub fn len_for(shape: [usize; 3]) -> usize {
        1 + 2 * shape[0] + shape.iter().product::<usize>()
    }

    /// Inverse of [`InputStats::to_vec`] for inputs of `shape`.
    pub fn from_vec(v: &[f64], shape: [usize; 3]) -> Result<Self> {
        let c = shape[0];
        let len = Self::len_for(shape);
        if v.len() != len {
            return Err(Error::Shape {
                what: "input statistics".into(),
                expected: vec![len],
                got: vec![v.len()],
            });
        }
        Ok(InputStats {
            cells: v[0],
            sum_sq_a: v[1..1 + c].to_vec(),
            sum_sq_raw: v[1 + c..1 + 2 * c].to_vec(),
            sum_raw: v[1 + 2 * c..].to_vec(),
        })
    }
}

/// Per-channel input scales: network inputs are divided by them so that every channel enters
/// at unit size (intra-cell differences and cell-to-cell differences are millivolts while the
/// raw curves span volts; unscaled, a branch barely learns). A deliberate addition to the
/// published method, fitted on the training data and stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputScales {
    /// Branch A: root mean square of the intra-cell differences, per channel.
    pub branch_a: Vec<f32>,
    /// Branch B: root mean square of target-minus-reference differences between two random
    /// training cells, per channel (sqrt(2) x the across-cell standard deviation).
    pub branch_b: Vec<f32>,
}

impl InputScales {
    /// Scales from summed statistics (floors keep all-zero channels, e.g. the absent ones of
    /// discharge-only data, at scale 1).
    pub fn from_stats(stats: &InputStats, shape: [usize; 3]) -> Result<Self> {
        let n = stats.cells;
        if n.is_nan() || n < 1.0 {
            return Err(Error::NotEnoughData {
                what: "input statistics".into(),
                needed: 1,
                got: 0,
            });
        }
        let [c, h, w] = shape;
        let plane = (h * w) as f64;
        if stats.sum_raw.len() != c * h * w
            || stats.sum_sq_a.len() != c
            || stats.sum_sq_raw.len() != c
        {
            return Err(Error::Shape {
                what: "input statistics".into(),
                expected: vec![c, h, w],
                got: vec![stats.sum_raw.len()],
            });
        }
        let fix = |v: f64| {
            if v.is_finite() && v > 1e-12 {
                v as f32
            } else {
                1.0
            }
        };
        let branch_a = stats
            .sum_sq_a
            .iter()
            .map(|s| fix((s / (n * plane)).sqrt()))
            .collect();
        let branch_b = (0..c)
            .map(|ch| {
                let mean_sq_of_means: f64 = stats.sum_raw[ch * h * w..(ch + 1) * h * w]
                    .iter()
                    .map(|s| (s / n).powi(2))
                    .sum::<f64>()
                    / plane;
                let var = stats.sum_sq_raw[ch] / (n * plane) - mean_sq_of_means;
                fix((2.0 * var.max(0.0)).sqrt())
            })
            .collect();
        Ok(InputScales { branch_a, branch_b })
    }

    /// Unit scales for `channels` channels.
    pub fn unit(channels: usize) -> Self {
        InputScales {
            branch_a: vec![1.0; channels],
            branch_b: vec![1.0; channels],
        }
    }
}
