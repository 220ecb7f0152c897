//! Building and checking an [`IntervalCalibration`] from scored held-out cells.

use super::{default_by_chemistry, IntervalCalibration, Point};
use crate::error::{Error, Result};
use crate::genome::{GenomeFingerprint, GenomeIndex};
use crate::model::conformal::median_in_place;
use crate::model::{BatLiNet, Dataset, LABEL_GROUPS};

impl IntervalCalibration {
    pub(super) fn from_points(
        model: &BatLiNet,
        points: Vec<Point>,
        training: &Dataset,
        calibration: &Dataset,
    ) -> Result<Self> {
        if points.is_empty() {
            return Err(Error::NotEnoughData {
                what: "calibration cells".into(),
                needed: 1,
                got: 0,
            });
        }
        let mut spreads: Vec<f64> = points.iter().map(|p| p.spread).collect();
        let scale = median_in_place(&mut spreads);
        let mut calibration_out = IntervalCalibration {
            scores: Vec::new(),
            group_scores: Vec::new(),
            by_chemistry: default_by_chemistry(),
            scale,
            max_distance: points
                .iter()
                .map(|p| p.distance)
                .chain(leave_one_out_distances(training.fingerprints()))
                .fold(0.0, f64::max),
            training: training.fingerprints().to_vec(),
            label_range: label_range(&training.require_labels()?),
            cathodes: {
                let mut all: Vec<String> = training
                    .cathodes()
                    .into_iter()
                    .chain(calibration.cathodes())
                    .flatten()
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
                all.sort();
                all.dedup();
                all
            },
            draw: model.reference_draw(),
            model_digest: model.digest()?,
            pooled: false,
            errors: Vec::new(),
        };
        let mut groups = vec![Vec::new(); LABEL_GROUPS.len()];
        let mut scores = Vec::with_capacity(points.len());
        for p in &points {
            let score = p.error / calibration_out.difficulty(p.spread);
            if let Some(g) = p.group {
                groups[g].push(score);
            }
            scores.push(score);
        }
        for g in groups.iter_mut().chain(std::iter::once(&mut scores)) {
            g.sort_by(f64::total_cmp);
        }
        calibration_out.scores = scores;
        calibration_out.errors = points.iter().map(|p| p.error).collect();
        calibration_out.errors.sort_by(f64::total_cmp);
        calibration_out.group_scores = groups;
        Ok(calibration_out)
    }

    /// Check what a calibration read from outside (JSON, a pickle) must satisfy: finite,
    /// non-negative scores in ascending order (per chemistry too), one score list per
    /// [`LABEL_GROUPS`] chemistry or none, a finite non-negative `scale` and `max_distance`.
    ///
    /// # Errors
    /// [`Error::Model`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        let ascending = |v: &[f64]| {
            v.iter().all(|x| x.is_finite() && *x >= 0.0) && v.windows(2).all(|w| w[0] <= w[1])
        };
        let bad = |reason: &str| {
            Err(Error::Model {
                reason: format!("invalid interval calibration: {reason}"),
            })
        };
        if !ascending(&self.scores)
            || !ascending(&self.errors)
            || !self.group_scores.iter().all(|g| ascending(g))
        {
            return bad("scores must be finite, non-negative and ascending");
        }
        if !(self.group_scores.is_empty() || self.group_scores.len() == LABEL_GROUPS.len()) {
            return bad("one score list per cathode chemistry, or none");
        }
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.scale) || !ok(self.max_distance) {
            return bad("scale and max_distance must be finite and non-negative");
        }
        Ok(())
    }

    /// The divisor of a cell's score with spread `spread`: `spread + β`, or 1 when `β` is 0
    /// (more than half of the calibration cells have no spread: one reference, one branch).
    pub fn difficulty(&self, spread: f64) -> f64 {
        if self.scale > 0.0 {
            spread + self.scale
        } else {
            1.0
        }
    }

    /// Number of calibration cells.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True without calibration cells (never, for a calibration this module made).
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

fn label_range(lives: &[f64]) -> (f64, f64) {
    lives
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| {
            (lo.min(y), hi.max(y))
        })
}

/// Each fingerprint's genome distance to its nearest other one of the same cathode (a cell
/// without a known cathode: of any); none for a cell alone of its cathode.
fn leave_one_out_distances(fingerprints: &[GenomeFingerprint]) -> Vec<f64> {
    let index = GenomeIndex::new(fingerprints.to_vec());
    let alike = |a: &GenomeFingerprint, b: &GenomeFingerprint| match (&a.cathode, &b.cathode) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => true,
    };
    fingerprints
        .iter()
        .enumerate()
        .filter_map(|(i, fp)| {
            index
                .nearest_where(fp, 1, |j| j != i && alike(fp, &fingerprints[j]))
                .first()
                .map(|p| p.1)
        })
        .collect()
}
