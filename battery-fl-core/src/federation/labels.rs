//! Shared statistics across fleets: one label transform (from per-fleet count, sum and sum of
//! squares of the log labels) and one set of input scales, summed through secure aggregation
//! when configured, so the coordinator learns totals only.

use std::collections::BTreeMap;

use super::config::SecureAggregation;
use crate::error::{Error, Result};
use crate::model::{
    grouped_label_sums, Dataset, InputScales, InputStats, LabelGrouping, LabelTransform,
    LABEL_GROUPS,
};
use crate::secagg::simulate_round_report;
use crate::secagg::statistics::{decode_statistics, encode_statistics, statistics_config};

/// Length of the label part of [`fleet_statistics`]: count, Σ ln(life) and Σ ln(life)²,
/// pooled and then per [`LABEL_GROUPS`](crate::model::LABEL_GROUPS) entry.
pub const LABEL_STATISTICS_LEN: usize = 3 * (1 + LABEL_GROUPS.len());

/// What a fleet contributes to the shared statistics, as one vector in the layout every
/// fleet sends to be summed (in the simulation and in Flower alike): the label sums of its
/// training cells ([`grouped_label_sums`], [`LABEL_STATISTICS_LEN`] numbers), then their input
/// statistics ([`Dataset::input_stats`]). Summed over fleets, [`shared_statistics`] turns the
/// total into the label transform and input scales one model fitted on the pooled cells
/// would use.
pub fn fleet_statistics(train: &Dataset) -> Result<Vec<f64>> {
    let mut v = grouped_label_sums(&train.require_labels()?, &train.cathodes())?;
    v.extend(train.input_stats().to_vec());
    Ok(v)
}

/// The shared label transform (with `grouping`) and input scales (for inputs of `shape`)
/// from [`fleet_statistics`] summed over fleets. Cell counts are rounded: a secure sum
/// carries them to about 4e-7.
pub fn shared_statistics(
    total: &[f64],
    shape: [usize; 3],
    grouping: LabelGrouping,
) -> Result<(LabelTransform, InputScales)> {
    let expected = LABEL_STATISTICS_LEN + InputStats::len_for(shape);
    if total.len() != expected {
        return Err(Error::Shape {
            what: "summed fleet statistics".into(),
            expected: vec![expected],
            got: vec![total.len()],
        });
    }
    let (labels, inputs) = total.split_at(LABEL_STATISTICS_LEN);
    let mut inputs = inputs.to_vec();
    inputs[0] = inputs[0].round();
    let labels = LabelTransform::from_grouped_sums(labels, grouping)?;
    let scales = InputScales::from_stats(&InputStats::from_vec(&inputs, shape)?, shape)?;
    Ok((labels, scales))
}

/// Set `worker`'s label transform and input scales to the shared ones of `fleets`' training
/// cells: one [`secure_sum`] of every fleet's [`fleet_statistics`] (masks seeded with
/// `seed`), as a Flower node sends them.
#[cfg(feature = "tch")]
pub(crate) fn set_shared_statistics(
    worker: &mut crate::model::BatLiNet,
    fleets: &[super::FleetData],
    secure: Option<&SecureAggregation>,
    seed: u64,
) -> Result<()> {
    let stats = fleets
        .iter()
        .map(|f| fleet_statistics(&f.train))
        .collect::<Result<Vec<_>>>()?;
    let total = secure_sum(&stats, secure, seed)?;
    let grouping = worker.config().label_grouping;
    let shape = worker.input_shape();
    let (labels, scales) = shared_statistics(&total, shape, grouping)?;
    worker.set_label_transform(labels);
    worker.set_input_scales(scales)
}

/// Sum per-fleet statistic vectors, through a secure-aggregation round when `secure` is given
/// ([`crate::secagg::statistics`]: the encoding the Flower nodes use too; resolution about
/// 4e-7 per coordinate for fewer than 1024 fleets).
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
    let inputs: Vec<Vec<f32>> = vectors
        .iter()
        .map(|v| encode_statistics(v))
        .collect::<Result<_>>()?;
    let Some(sa) = secure else {
        return Ok((0..first.len())
            .map(|i| vectors.iter().map(|v| v[i]).sum())
            .collect());
    };
    let n = vectors.len();
    let config = statistics_config(n, sa.neighbours, sa.threshold)?;
    let report = simulate_round_report(&inputs, &vec![1.0; n], &config, &BTreeMap::new(), seed)?;
    decode_statistics(&config, &report.output.encoded_sum, report.u3.len())
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
        let shape = pooled.shape();
        let stats: Vec<Vec<f64>> = fleets.iter().map(fleet_statistics).collect::<Result<_>>()?;
        assert_eq!(
            stats[0].len(),
            LABEL_STATISTICS_LEN + InputStats::len_for(shape)
        );
        let want_labels = LabelTransform::fit(&pooled.require_labels()?)?;
        let want_grouped = LabelTransform::fit_grouped(
            &pooled.require_labels()?,
            &pooled.cathodes(),
            LabelGrouping::Cathode,
        )?;
        assert_ne!(want_grouped, want_labels, "the fleets mix chemistries");
        let want_scales = InputScales::from_stats(&pooled.input_stats(), shape)?;
        for secure in [None, Some(SecureAggregation::default())] {
            let total = secure_sum(&stats, secure.as_ref(), 5)?;
            let (labels, scales) = shared_statistics(&total, shape, LabelGrouping::Pooled)?;
            assert!((labels.mean - want_labels.mean).abs() < 1e-5, "{labels:?}");
            assert!((labels.std - want_labels.std).abs() < 1e-5, "{labels:?}");
            let (grouped, _) = shared_statistics(&total, shape, LabelGrouping::Cathode)?;
            for c in ["LFP", "NMC", "NCA", "LCO"] {
                let want = want_grouped.moments(Some(c));
                let got = grouped.moments(Some(c));
                assert!(
                    (got.mean - want.mean).abs() < 1e-5,
                    "{c}: {got:?} vs {want:?}"
                );
                assert!(
                    (got.std - want.std).abs() < 1e-5,
                    "{c}: {got:?} vs {want:?}"
                );
            }
            for (a, b) in scales.branch_a.iter().zip(&want_scales.branch_a) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{a} vs {b}");
            }
            for (a, b) in scales.branch_b.iter().zip(&want_scales.branch_b) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3), "{a} vs {b}");
            }
        }
        // a truncated vector is a shape error, not a panic
        assert!(matches!(
            shared_statistics(&stats[0][..2], shape, LabelGrouping::Pooled),
            Err(Error::Shape { .. })
        ));
        assert!(shared_statistics(&stats[0][..30], shape, LabelGrouping::Cathode).is_err());
        Ok(())
    }
}
