//! Intervals for the BatLiNet models fleets end with: each fleet calibrates on its own
//! held-out cells, and fleets too small for a quantile of their own take one from a histogram
//! of every fleet's errors, summed securely.
//!
//! **Which cells.** With `auto` (and `auto_head`) personalization each fleet holds out a
//! `validation_fraction` of its training cells from every weight it trains or federates (they still
//! count in the shared label and input statistics); its chosen model, as trained without them
//! ([`FleetState::validated`]), predicts them, and their errors are its conformal scores
//! ([`BatLiNet::calibrate_from`]; the model it uses trained on more cells). The same cells chose
//! the model: a fleet keeps its own unless a shared one passes a paired t-test on them
//! ([`Personalization::Auto`](super::Personalization::Auto)), so a winner's optimism is small but
//! not nil, and the fleets' pooled errors need not be exchangeable: coverage is not guaranteed,
//! only measured (BENCHMARKS.md). The other modes (`none`, `fine_tune`, `head`, `ditto`) train
//! on every cell unless `calibration_holdout` holds the same share out; then no weight of the
//! model a fleet uses trained on them and nothing chose on them, so its errors there are
//! split-conformal scores up to two small departures: the cells count in the shared label and
//! input statistics (as with `auto`), and they are predicted with the fitting cells as
//! references where new cells get all training cells. Without held-out cells
//! calibration is refused, and so is record-level DP-SGD, whose guarantee would not cover the
//! summed errors.
//!
//! **Few cells.** A fleet with 16 training cells validates on 4, and a 90 % conformal
//! quantile needs at least 9. A fleet with [`MONDRIAN_MIN_CELLS`] validation cells or more
//! takes its own quantile of its normalized scores (coverage over its own cells, when they are
//! exchangeable with its future ones; within it, a chemistry with as many cells takes its own,
//! [`IntervalCalibration::by_chemistry`]). A smaller fleet takes the quantile of every
//! fleet's *plain* errors `|ln y − ln ŷ|` pooled (plain split conformal: one width in ln(life)
//! for all its cells): normalized scores are divided by each fleet's own median spread `β`
//! and do not mix across fleets (in the main job a fleet whose model spreads little inflated
//! every other fleet's intervals). Each fleet bins its errors into [`score_histogram`]'s
//! fixed geometric bins (5 % wide), the counts are summed with secure aggregation when the
//! federation uses it, and [`pooled_scores`] reads each count at its bin's upper edge, so the
//! pooled quantile can only be larger than that of the raw errors: at most 5 % wider, never
//! less coverage. The pooled quantile covers, over all fleets' cells together, what a single
//! fleet's covers over its own, *if* the fleets' errors are exchangeable; non-IID fleets are
//! not, so a fleet's own coverage can fall short of the nominal one (BENCHMARKS.md reports it
//! per fleet). With secure aggregation the coordinator learns the summed counts (the pooled
//! distribution of held-out errors, which every fleet receives), never one fleet's; the counts
//! are not differentially private, and a fleet-level DP epsilon reported for the training
//! rounds does not cover them.

use super::fleet::FleetClient;
use super::personalize::FleetState;
use crate::error::{Error, Result};
use crate::model::{BatLiNet, IntervalCalibration, MONDRIAN_MIN_CELLS};

/// Upper edge of the first score bin (scores below it share bin 0).
const FIRST_EDGE: f64 = 1e-3;
/// Ratio of consecutive bin edges.
const BIN_RATIO: f64 = 1.05;
/// Number of bins: edges `FIRST_EDGE · BIN_RATIO^i` up to 1.04e3, and a last bin for
/// anything larger.
pub const SCORE_BINS: usize = 286;

/// The bin of a score: 0 below [`FIRST_EDGE`], the last bin for anything beyond the edges.
fn bin_of(score: f64) -> usize {
    if score < FIRST_EDGE {
        return 0;
    }
    let guess = 1.0 + ((score / FIRST_EDGE).ln() / BIN_RATIO.ln()).floor();
    let mut i = (guess as usize).min(SCORE_BINS - 1);
    // the logarithm can miss an edge by an ulp: the bin's upper edge must hold the score
    while upper_edge(i) < score {
        i += 1;
    }
    while i > 1 && upper_edge(i - 1) >= score {
        i -= 1;
    }
    i
}

/// Upper edge of bin `i`; the last bin stands for any larger score (`f64::MAX`: a cell scored
/// there gets the whole prediction bound).
fn upper_edge(i: usize) -> f64 {
    if i + 1 >= SCORE_BINS {
        f64::MAX
    } else {
        FIRST_EDGE * BIN_RATIO.powi(i as i32)
    }
}

/// Counts of `scores` in the fixed [`SCORE_BINS`] bins (what a fleet sends to the secure sum).
///
/// # Errors
/// [`Error::InvalidConfig`] for a negative or non-finite score.
pub fn score_histogram(scores: &[f64]) -> Result<Vec<f64>> {
    let mut counts = vec![0.0; SCORE_BINS];
    for &s in scores {
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::config(
                "scores",
                format!("conformal scores are finite and non-negative, got {s}"),
            ));
        }
        counts[bin_of(s)] += 1.0;
    }
    Ok(counts)
}

/// Most calibration cells a pooled histogram may hold (a larger total is not a federation's).
pub const MAX_POOLED_CELLS: f64 = 1e7;

/// Scores read back from summed counts, each at its bin's upper edge (ascending). Counts are
/// rounded (the secure sum carries them as fixed-point values).
///
/// # Errors
/// [`Error::Shape`] for a histogram of another length, [`Error::InvalidConfig`] for a
/// negative or non-finite count or more than [`MAX_POOLED_CELLS`] in all.
pub fn pooled_scores(histogram: &[f64]) -> Result<Vec<f64>> {
    if histogram.len() != SCORE_BINS {
        return Err(Error::Shape {
            what: "score histogram".into(),
            expected: vec![SCORE_BINS],
            got: vec![histogram.len()],
        });
    }
    let total: f64 = histogram.iter().sum();
    if !(total.is_finite() && total <= MAX_POOLED_CELLS) {
        return Err(Error::config(
            "histogram",
            format!("{total} cells in all: at most {MAX_POOLED_CELLS} are pooled"),
        ));
    }
    let mut scores = Vec::new();
    for (i, &c) in histogram.iter().enumerate() {
        if !(c.is_finite() && c > -0.5) {
            return Err(Error::config(
                "histogram",
                format!("bin {i} holds {c}: counts are finite and non-negative"),
            ));
        }
        scores.extend(std::iter::repeat_n(upper_edge(i), c.round() as usize));
    }
    Ok(scores)
}

/// A fleet's calibration with the `pooled` plain errors (ascending) of every fleet in place
/// of its own scores when it has fewer than [`MONDRIAN_MIN_CELLS`] validation cells: plain
/// split conformal (`scale` 0, every cell the same width in ln(life)), since one fleet's
/// normalized scores are divided by its own `β` and do not mix with another's. Too few cells
/// for any chemistry's own quantile, it keeps no per-chemistry scores.
///
/// # Errors
/// [`Error::NotEnoughData`] when the pooled errors are empty.
pub fn with_pooled(own: IntervalCalibration, pooled: Vec<f64>) -> Result<IntervalCalibration> {
    if own.scores.len() >= MONDRIAN_MIN_CELLS {
        return Ok(own);
    }
    if pooled.is_empty() {
        return Err(Error::NotEnoughData {
            what: "pooled calibration scores".into(),
            needed: 1,
            got: 0,
        });
    }
    Ok(IntervalCalibration {
        scores: pooled,
        group_scores: Vec::new(),
        scale: 0.0,
        pooled: true,
        ..own
    })
}

impl FleetClient {
    /// The fleet's own calibration of its current model: the errors of `state.validated` on
    /// its validation cells (see the module docs).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless the fleet holds out validation cells (`auto`, `auto_head`
    /// or `calibration_holdout`) and a round has run, or with record-level DP-SGD, and the
    /// errors of
    /// [`BatLiNet::calibrate_from`].
    pub fn calibration(
        &self,
        worker: &mut BatLiNet,
        state: &FleetState,
    ) -> Result<IntervalCalibration> {
        let Some(val) = self.validation_cells() else {
            return Err(Error::config(
                "calibration_holdout",
                "fleet intervals are calibrated on held-out validation cells: set \
                 calibration_holdout (`auto` and `auto_head` always hold them out; a fleet of at \
                 least 2 cells)",
            ));
        };
        if self.record_mechanism().is_some() {
            return Err(Error::config(
                "record_privacy",
                "fleet intervals release summed errors of held-out cells, which record-level \
                 DP-SGD does not cover",
            ));
        }
        let (Some(current), Some(validated)) = (&state.current, &state.validated) else {
            return Err(Error::config(
                "state",
                "the fleet has no model yet: evaluate a round first",
            ));
        };
        let model = current.to_batlinet(worker)?;
        let fitted = validated.to_batlinet(worker)?;
        model.calibrate_from(&fitted, self.fit_cells(), val, self.train_cells())
    }

    /// What the fleet sends to the secure sum: the [`score_histogram`] of its own
    /// calibration cells' plain errors.
    ///
    /// # Errors
    /// Those of [`calibration`](Self::calibration).
    pub fn calibration_histogram(
        &self,
        worker: &mut BatLiNet,
        state: &FleetState,
    ) -> Result<Vec<f64>> {
        score_histogram(&self.calibration(worker, state)?.errors)
    }

    /// The fleet's calibration given `summed`, every fleet's histograms summed: its own
    /// scores with [`MONDRIAN_MIN_CELLS`] validation cells or more, the pooled ones below.
    ///
    /// # Errors
    /// Those of [`calibration`](Self::calibration) and [`pooled_scores`].
    pub fn pooled_calibration(
        &self,
        worker: &mut BatLiNet,
        state: &FleetState,
        summed: &[f64],
    ) -> Result<IntervalCalibration> {
        with_pooled(self.calibration(worker, state)?, pooled_scores(summed)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_score_reads_back_at_or_above_itself_and_within_five_percent() -> Result<()> {
        let scores = [0.0, 2e-4, 1e-3, 0.0123, 0.5, 1.0, 2.7, 40.0, 999.0];
        let back = pooled_scores(&score_histogram(&scores)?)?;
        assert_eq!(back.len(), scores.len());
        for (s, b) in scores.iter().zip(&back) {
            assert!(b >= s, "{b} < {s}");
            if *s >= FIRST_EDGE {
                assert!(*b <= s * BIN_RATIO * (1.0 + 1e-12), "{b} too far above {s}");
            }
        }
        // a score beyond the edges lands in the last bin: the whole bound
        let huge = pooled_scores(&score_histogram(&[5e4])?)?;
        assert_eq!(huge, vec![f64::MAX]);
        Ok(())
    }

    #[test]
    fn bad_scores_and_histograms_are_refused() {
        assert!(score_histogram(&[f64::NAN]).is_err());
        assert!(score_histogram(&[-1.0]).is_err());
        assert!(matches!(pooled_scores(&[1.0; 3]), Err(Error::Shape { .. })));
        let mut h = vec![0.0; SCORE_BINS];
        h[4] = -3.0;
        assert!(pooled_scores(&h).is_err());
        // a forged total is refused, not allocated
        h[4] = 1e300;
        assert!(matches!(
            pooled_scores(&h),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
