//! Shared statistics across fleets: one label transform (from per-fleet count, sum and sum of
//! squares of the log labels) and one set of input scales, summed through secure aggregation
//! when configured, so the coordinator learns totals only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::SecureAggregation;
use crate::error::{Error, Result};
use crate::model::{Dataset, InputScales, InputStats, LabelTransform};
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
            return Err(Error::config(
                "labels",
                format!("cycle lives must be positive, got {v}"),
            ));
        }
        let logs = lives.iter().map(|v| v.ln());
        Ok(LabelStats {
            count: lives.len() as f64,
            sum: logs.clone().sum(),
            sum_sq: logs.map(|l| l * l).sum(),
        })
    }
}

/// What a fleet contributes to the shared statistics, as one vector in the layout every
/// fleet sends to be summed (in the simulation and in Flower alike): its label count,
/// Σ ln(life), Σ ln(life)², then the input statistics of its training cells
/// ([`Dataset::input_stats`]). Summed over fleets, [`shared_statistics`] turns the total into
/// the label transform and input scales one model fitted on the pooled cells would use.
pub fn fleet_statistics(train: &Dataset) -> Result<Vec<f64>> {
    let labels = LabelStats::of(&train.require_labels()?)?;
    let mut v = vec![labels.count, labels.sum, labels.sum_sq];
    v.extend(train.input_stats().to_vec());
    Ok(v)
}

/// The shared label transform and input scales (for inputs of `shape`) from
/// [`fleet_statistics`] summed over fleets. The two cell counts are rounded: a secure sum
/// carries them to about 4e-7.
pub fn shared_statistics(
    total: &[f64],
    shape: [usize; 3],
) -> Result<(LabelTransform, InputScales)> {
    let [count, sum, sum_sq, inputs @ ..] = total else {
        return Err(Error::Shape {
            what: "summed fleet statistics".into(),
            expected: vec![3 + InputStats::len_for(shape)],
            got: vec![total.len()],
        });
    };
    let mut inputs = inputs.to_vec();
    if let Some(cells) = inputs.first_mut() {
        *cells = cells.round();
    }
    let labels = LabelTransform::from_sums(count.round(), *sum, *sum_sq)?;
    let scales = InputScales::from_stats(&InputStats::from_vec(&inputs, shape)?, shape)?;
    Ok((labels, scales))
}

/// Public bound on any summed statistic (secure aggregation clips to it).
const STATS_BOUND: f64 = 1e9;

/// Sum per-fleet statistic vectors, through a secure-aggregation round when `secure` is given
/// (64-bit modulus; resolution about 4e-7 per coordinate for fewer than 1024 fleets).
pub fn secure_sum(
    vectors: &[Vec<f64>],
    secure: Option<&SecureAggregation>,
    seed: u64,
) -> Result<Vec<f64>> {
    let Some(first) = vectors.first() else {
        return Err(Error::NotEnoughData {
            what: "statistics to sum".into(),
            needed: 1,
            got: 0,
        });
    };
    if let Some(v) = vectors.iter().find(|v| v.len() != first.len()) {
        return Err(Error::Shape {
            what: "statistics vector".into(),
            expected: vec![first.len()],
            got: vec![v.len()],
        });
    }
    if let Some(x) = vectors
        .iter()
        .flatten()
        .find(|x| !(x.is_finite() && x.abs() <= STATS_BOUND))
    {
        return Err(Error::config(
            "statistics",
            format!("{x} is outside the public bound ±{STATS_BOUND}"),
        ));
    }
    let Some(sa) = secure else {
        return Ok((0..first.len())
            .map(|i| vectors.iter().map(|v| v[i]).sum())
            .collect());
    };
    let n = vectors.len();
    // the finest grid that cannot wrap: n * T < 2^63
    let bits = 62 - (usize::BITS - n.leading_zeros());
    let config = SecAggConfig {
        num_clients: n,
        neighbours: sa.neighbours.filter(|&k| k < n),
        threshold: sa.threshold,
        clipping_range: STATS_BOUND,
        target_range: 1u64 << bits.min(52),
        modulus_bits: 64,
        max_weight: 1.0,
    };
    // each f64 travels as two f32 (high part + rounding remainder) so the sum keeps far more
    // than f32 precision; the quantization grid (2 * bound / T) then sets the resolution
    let dim = first.len();
    let inputs: Vec<Vec<f32>> = vectors
        .iter()
        .map(|v| {
            let hi: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let lo = v.iter().zip(&hi).map(|(&x, &h)| (x - f64::from(h)) as f32);
            hi.iter().copied().chain(lo).collect()
        })
        .collect();
    let mean = simulate_round(&inputs, &vec![1.0; n], &config, &BTreeMap::new(), seed)?;
    Ok((0..dim)
        .map(|i| (f64::from(mean[i]) + f64::from(mean[dim + i])) * n as f64)
        .collect())
}

/// The shared label transform from every fleet's [`LabelStats`] (see [`secure_sum`]).
pub fn federated_label_transform(
    stats: &[LabelStats],
    secure: Option<&SecureAggregation>,
    seed: u64,
) -> Result<LabelTransform> {
    let vectors: Vec<Vec<f64>> = stats
        .iter()
        .map(|s| vec![s.count, s.sum, s.sum_sq])
        .collect();
    let total = secure_sum(&vectors, secure, seed)?;
    LabelTransform::from_sums(total[0].round(), total[1], total[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{synthetic::FleetConfig, LabelConfig};
    use crate::features::{Featurizer, FeaturizerConfig};

    #[test]
    fn summed_fleet_statistics_give_the_pooled_fit() -> Result<()> {
        let featurizer = Featurizer::new(FeaturizerConfig::default().with_interp_dim(16))?;
        let fleets: Vec<Dataset> = FleetConfig::default()
            .with_fleets(3)
            .with_cells_per_fleet(3)
            .with_cycles(120)
            .generate()?
            .iter()
            .map(|f| Dataset::from_cells(&f.cells, &featurizer, &[0, 1], &LabelConfig::default()))
            .collect::<Result<_>>()?;
        let pooled = Dataset::concat(&fleets.iter().collect::<Vec<_>>())?;
        let shape = pooled.shape;
        let stats: Vec<Vec<f64>> = fleets.iter().map(fleet_statistics).collect::<Result<_>>()?;
        assert_eq!(stats[0].len(), 3 + InputStats::len_for(shape));
        let want_labels = LabelTransform::fit(&pooled.require_labels()?)?;
        let want_scales = InputScales::from_stats(&pooled.input_stats(), shape)?;
        for secure in [None, Some(SecureAggregation::default())] {
            let total = secure_sum(&stats, secure.as_ref(), 5)?;
            let (labels, scales) = shared_statistics(&total, shape)?;
            assert!((labels.mean - want_labels.mean).abs() < 1e-5, "{labels:?}");
            assert!((labels.std - want_labels.std).abs() < 1e-5, "{labels:?}");
            for (a, b) in scales.branch_a.iter().zip(&want_scales.branch_a) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{a} vs {b}");
            }
            for (a, b) in scales.branch_b.iter().zip(&want_scales.branch_b) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
        // a truncated vector is a shape error, not a panic
        assert!(matches!(
            shared_statistics(&stats[0][..2], shape),
            Err(Error::Shape { .. })
        ));
        assert!(shared_statistics(&stats[0][..10], shape).is_err());
        Ok(())
    }

    #[test]
    fn secure_sums_give_the_pooled_transform() {
        let fleets = [
            vec![300.0, 500.0, 900.0],
            vec![1200.0, 2000.0],
            vec![150.0, 700.0, 800.0, 2500.0],
        ];
        let pooled: Vec<f64> = fleets.iter().flatten().copied().collect();
        let want = LabelTransform::fit(&pooled).unwrap();
        let stats: Vec<LabelStats> = fleets.iter().map(|f| LabelStats::of(f).unwrap()).collect();
        let plain = federated_label_transform(&stats, None, 0).unwrap();
        let secure =
            federated_label_transform(&stats, Some(&SecureAggregation::default()), 3).unwrap();
        for t in [plain, secure] {
            assert!((t.mean - want.mean).abs() < 1e-3, "{t:?} vs {want:?}");
            assert!((t.std - want.std).abs() < 1e-3, "{t:?} vs {want:?}");
        }
    }
}
