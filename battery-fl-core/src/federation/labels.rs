//! One label transform for every fleet, from per-fleet count, sum and sum of squares of the
//! log labels, summed through secure aggregation when configured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::SecureAggregation;
use crate::error::{Error, Result};
use crate::model::LabelTransform;
use crate::secagg::{simulate_round, SecAggConfig};

/// A fleet's sufficient statistics of ln(cycle life).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelStats {
    /// Number of labelled cells.
    pub count: f64,
    /// Σ ln(life).
    pub sum: f64,
    /// Σ ln(life)².
    pub sum_sq: f64,
}

impl LabelStats {
    /// Statistics of one fleet's labels.
    pub fn of(lives: &[f64]) -> Result<Self> {
        if let Some(v) = lives.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(Error::config("labels", format!("cycle lives must be positive, got {v}")));
        }
        let logs = lives.iter().map(|v| v.ln());
        Ok(LabelStats {
            count: lives.len() as f64,
            sum: logs.clone().sum(),
            sum_sq: logs.map(|l| l * l).sum(),
        })
    }
}

/// Scale that brings the statistics inside the secure-aggregation clipping range.
const STATS_SCALE: f64 = 1e4;

/// The shared label transform from every fleet's [`LabelStats`]. With `secure`, the three
/// sums go through a secure-aggregation round (64-bit modulus, fine quantization), so the
/// coordinator learns only the totals.
pub fn federated_label_transform(stats: &[LabelStats], secure: Option<&SecureAggregation>, seed: u64) -> Result<LabelTransform> {
    let total = match secure {
        None => stats.iter().fold([0.0; 3], |acc, s| [acc[0] + s.count, acc[1] + s.sum, acc[2] + s.sum_sq]),
        Some(sa) => {
            let n = stats.len();
            let config = SecAggConfig {
                num_clients: n,
                neighbours: sa.neighbours.filter(|&k| k < n),
                threshold: sa.threshold,
                clipping_range: 1.0,
                target_range: 1 << 40,
                modulus_bits: 64,
                max_weight: 1.0,
            };
            let inputs: Vec<Vec<f32>> = stats
                .iter()
                .map(|s| [s.count, s.sum, s.sum_sq].iter().map(|v| (v / STATS_SCALE) as f32).collect())
                .collect();
            let mean = simulate_round(&inputs, &vec![1.0; n], &config, &BTreeMap::new(), seed)?;
            let back = |v: f32| f64::from(v) * STATS_SCALE * n as f64;
            [back(mean[0]).round(), back(mean[1]), back(mean[2])]
        }
    };
    LabelTransform::from_sums(total[0], total[1], total[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_sums_give_the_pooled_transform() {
        let fleets = [vec![300.0, 500.0, 900.0], vec![1200.0, 2000.0], vec![150.0, 700.0, 800.0, 2500.0]];
        let pooled: Vec<f64> = fleets.iter().flatten().copied().collect();
        let want = LabelTransform::fit(&pooled).unwrap();
        let stats: Vec<LabelStats> = fleets.iter().map(|f| LabelStats::of(f).unwrap()).collect();
        let plain = federated_label_transform(&stats, None, 0).unwrap();
        let secure = federated_label_transform(&stats, Some(&SecureAggregation::default()), 3).unwrap();
        for t in [plain, secure] {
            assert!((t.mean - want.mean).abs() < 1e-3, "{t:?} vs {want:?}");
            assert!((t.std - want.std).abs() < 1e-3, "{t:?} vs {want:?}");
        }
    }
}
