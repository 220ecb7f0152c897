//! BatLiNet predictions a BMS can act on: conformal intervals, the spread over references and
//! out-of-distribution flags.
//!
//! **The spread.** Branch B predicts a target once per reference, `p_k = (1 − α)·A + α·(B_k +
//! y_ref,k)`, and the model reports their median. How much the `K` predictions disagree,
//! measured as the robust spread (MAD × 1.4826) of `ln p_k`, says how hard the cell is: its
//! references tell different stories about it.
//!
//! **Intervals** are split-conformal in ln(life), normalized by that spread. On labelled cells
//! the model was *not* trained on, each cell's score is `|ln y − ln ŷ| / (s + β)`, with `s` its
//! spread and `β` the median spread of the calibration cells (so that a cell whose references
//! happen to agree does not get a zero-width interval); a new cell's interval at coverage `c` is
//! `exp(ln ŷ ± q · (s + β))`, with `q` the `⌈(n + 1) c⌉`-th smallest score. With exchangeable
//! cells it covers at least `c` (Lei et al. 2018, normalized split conformal). When the median
//! spread is zero (one reference, or a single-branch model) all cells get the same width: plain
//! split conformal. Intervals are clipped to the prediction bound.
//!
//! Chemistries age differently, so one pooled quantile can over-cover some and under-cover
//! others. With [`IntervalCalibration::by_chemistry`] (the default), each cathode chemistry
//! with at least [`MONDRIAN_MIN_CELLS`] calibration cells gets its own quantile (Mondrian
//! conformal, Vovk et al. 2005: coverage then holds within each chemistry); a chemistry with
//! fewer cells takes the pooled quantile, which guarantees coverage over all cells but not
//! within that chemistry. The threshold is the conformal quantile's own slack: over `n`
//! exchangeable cells it covers, in expectation over the calibration draw, between `c` and
//! `c + 1/(n + 1)`, so from 19 cells on a chemistry's own quantile over-covers by at most 5
//! points, while over a dozen cells it is the largest score or close to it (BENCHMARKS.md
//! "BatLiNet intervals"). A calibration read back from JSON keeps the setting it was saved
//! with; calibrating again takes the default.
//!
//! Calibration cells must be held out from training: scores of cells the network has fitted are
//! too small. [`BatLiNet::calibrate`] takes cells the user set aside;
//! [`BatLiNet::cross_calibrate`] needs none and trains `folds` models instead, each scoring the
//! cells it did not see (cross-conformal; the final model, trained on every cell, is at least
//! as accurate as the fold models, so the intervals are conservative: with few training cells,
//! much too wide). [`BatLiNet::cross_conformal_intervals`] (module `cross_conformal`) keeps the
//! fold models and centres each fold's contribution on its own prediction (CV+).
//!
//! **Out-of-distribution flag** (a rule read off the data, no tuned constant): a cell is flagged
//! when its cathode chemistry is in neither the training nor the calibration cells, or when its
//! genome distance to the nearest training cell exceeds that of every calibration cell and
//! every training cell's distance to its nearest *other* training cell of the same cathode.
//! By exchangeability an in-distribution cell is then flagged *by distance* with probability
//! at most `1 / (max(n, m) + 1)` for `n` calibration cells and `m` training cells of its
//! chemistry: against the calibration cells as in split conformal; against the training cells
//! because a training cell's distance to the others is at least its distance to the others
//! and the new cell, the score exchangeable with the new cell's. The training cells need none
//! set aside: a federated fleet that holds out four cells takes its threshold from its dozen
//! or more training cells, not from those four. Neighbours are sought within a cathode so that
//! the lone cell of a chemistry (a whole cathode mismatch away from every other cell) does not
//! lift the threshold for everyone; the price is a threshold that can only rise with more
//! cells, so the flag is conservative. Separately, `bounded` says the point prediction hit
//! the bound around the training lives, and `outside_label_range` that it lies outside the
//! lives the model was trained on.
//!
//! A calibration holds the training cells' fingerprints and scores: like the cells, it stays
//! with its owner. In a federation each fleet calibrates its own model on its own cells.

use serde::{Deserialize, Serialize};

use super::config::ReferenceSelection;
use super::conformal::{conformal_quantile, median_in_place, robust_spread, IntervalSummary};
use super::{label_group, BatLiNet, Dataset};
use crate::error::{Error, Result};
use crate::genome::{GenomeFingerprint, GenomeIndex};

mod calibration;

/// How inference references are drawn: how many per target, by which rule, from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceDraw {
    /// References per target.
    pub k: usize,
    /// Random (seeded) or genome-nearest.
    pub selection: ReferenceSelection,
    /// Seed of random selection.
    pub seed: u64,
}

/// What a BatLiNet calibration learned from held-out cells (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalCalibration {
    /// Normalized scores `|ln y − ln ŷ| / (s + β)`, ascending.
    pub scores: Vec<f64>,
    /// The scores of each [`LABEL_GROUPS`](super::LABEL_GROUPS) cathode's calibration cells,
    /// ascending.
    #[serde(default)]
    pub group_scores: Vec<Vec<f64>>,
    /// Give a cell of a chemistry with at least [`MONDRIAN_MIN_CELLS`] calibration cells its
    /// chemistry's quantile (Mondrian conformal), others the pooled one (default on; `false`:
    /// one pooled quantile for every cell).
    #[serde(default = "default_by_chemistry")]
    pub by_chemistry: bool,
    /// `β`: the median spread of the calibration cells (0: every cell gets the same width).
    pub scale: f64,
    /// Largest genome distance from a calibration cell to its nearest training cell, or from
    /// a training cell to its nearest other training cell of the same cathode (the flag's
    /// threshold; see the module docs).
    pub max_distance: f64,
    /// The training cells' fingerprints (distances of new cells are measured to them).
    pub training: Vec<GenomeFingerprint>,
    /// Smallest and largest training life (cycles).
    pub label_range: (f64, f64),
    /// The cathode chemistries of the training and calibration cells (sorted, distinct).
    pub cathodes: Vec<String>,
    /// How references were drawn (predictions with intervals draw them the same way: the
    /// spread depends on it).
    pub draw: ReferenceDraw,
    /// SHA-256 (hex) of the calibrated model's bytes: a model trained or changed since no
    /// longer matches its calibration.
    pub model_digest: String,
    /// `scores` are not (only) the owner's: a federated fleet with too few held-out cells
    /// took every fleet's, pooled through a secure sum
    /// ([`federation::intervals`](crate::federation::intervals)); its coverage then rests on
    /// the fleets' scores being exchangeable.
    #[serde(default)]
    pub pooled: bool,
    /// The calibration cells' plain errors `|ln y − ln ŷ|`, ascending: what owners pool (one
    /// owner's normalized scores are divided by its own `β` and do not mix with another's).
    #[serde(default)]
    pub errors: Vec<f64>,
}

/// Default folds of [`BatLiNet::cross_calibrate`]: ten, each fold model on 90 % of the cells
/// (fewer folds, weaker fold models, wider intervals: BENCHMARKS.md "BatLiNet intervals",
/// session 26). It costs ten trainings.
pub const DEFAULT_CALIBRATION_FOLDS: usize = 10;

/// Fewest calibration cells of a chemistry for its own (Mondrian) quantile: the conformal
/// quantile over `n` cells over-covers, in expectation, by at most `1/(n + 1)`: 5 points from
/// 19 cells on.
pub const MONDRIAN_MIN_CELLS: usize = 19;

fn default_by_chemistry() -> bool {
    true
}

/// One BatLiNet prediction with its interval, spread and flags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted cycle life (bounded), as [`BatLiNet::predict_with`] gives it.
    pub life: f64,
    /// Lower end of the interval (cycles).
    pub lower: f64,
    /// Upper end of the interval (cycles).
    pub upper: f64,
    /// Robust spread of the per-reference predictions in ln(life) (0 with one reference or one
    /// branch).
    pub spread: f64,
    /// Smallest per-reference prediction (cycles): with `reference_high`, the naive interval.
    pub reference_low: f64,
    /// Largest per-reference prediction (cycles).
    pub reference_high: f64,
    /// Genome distance to the nearest training cell.
    pub training_distance: f64,
    /// Genome distance to the nearest reference used (`None` for a single-branch model).
    pub reference_distance: Option<f64>,
    /// Whether the point prediction hit the bound around the training lives.
    pub bounded: bool,
    /// Whether the point prediction lies outside the training lives.
    pub outside_label_range: bool,
    /// Cathode in neither training nor calibration cells, or further (genome distance) from
    /// the training cells than the calibration's `max_distance` (every calibration cell, and
    /// every training cell from its nearest other of its cathode).
    pub out_of_distribution: bool,
}

impl IntervalSummary {
    /// The summary of BatLiNet `predictions` on cells of known `lives` (as [`of`](Self::of)).
    ///
    /// # Errors
    /// [`Error::Shape`] when the lengths differ.
    pub fn of_predictions(predictions: &[Prediction], lives: &[Option<f64>]) -> Result<Self> {
        let lower: Vec<f64> = predictions.iter().map(|p| p.lower).collect();
        let upper: Vec<f64> = predictions.iter().map(|p| p.upper).collect();
        let flagged: Vec<bool> = predictions.iter().map(|p| p.out_of_distribution).collect();
        Self::of(&lower, &upper, &flagged, lives)
    }
}

/// A target's point prediction in ln(life) with the spread of its per-reference predictions.
pub(super) struct Spread {
    pub(super) ln_life: f64,
    bounded: bool,
    pub(super) spread: f64,
    low: f64,
    high: f64,
    reference_distance: Option<f64>,
}

/// One held-out cell's error, spread and distance to the training cells.
pub(super) struct Point {
    group: Option<usize>,
    pub(super) error: f64,
    pub(super) spread: f64,
    distance: f64,
}

impl BatLiNet {
    /// The configured way of drawing inference references.
    pub fn reference_draw(&self) -> ReferenceDraw {
        ReferenceDraw {
            k: self.config.inference_references,
            selection: self.config.selection,
            seed: self.config.seed,
        }
    }

    /// Per target: the bounded point prediction in ln(life) and the spread of its
    /// per-reference predictions.
    pub(super) fn spreads(
        &self,
        targets: &Dataset,
        references: &Dataset,
        draw: ReferenceDraw,
    ) -> Result<Vec<Spread>> {
        let labels = self.require_labels()?;
        self.check_dataset(targets, "target")?;
        let alpha = self.config.effective_alpha();
        let out = self.branch_outputs(targets, references, draw.k, draw.selection, draw.seed)?;
        let cathodes = targets.cathodes();
        let references_index = GenomeIndex::new(references.fingerprints().to_vec());
        (0..targets.len())
            .map(|t| {
                let c = cathodes[t];
                let ln = |y: f64| labels.inverse_bounded_for(y, c).0.ln();
                let per_reference: Vec<f64> = match &out.b {
                    Some(b) => b[t]
                        .iter()
                        .map(|yb| (1.0 - alpha) * out.a[t] + alpha * yb)
                        .collect(),
                    None => vec![out.a[t]],
                };
                // the point prediction exactly as `predict` computes it
                let point = match &out.b {
                    Some(b) => {
                        (1.0 - alpha) * out.a[t] + alpha * median_in_place(&mut b[t].clone())
                    }
                    None => out.a[t],
                };
                let (life, bounded) = labels.inverse_bounded_for(point, c);
                let logs: Vec<f64> = per_reference.iter().map(|&y| ln(y)).collect();
                let reference_distance = out.b.as_ref().map(|_| {
                    out.references[t]
                        .iter()
                        .map(|&r| references_index.distance_to(&targets.fingerprints()[t], r))
                        .fold(f64::INFINITY, f64::min)
                });
                Ok(Spread {
                    ln_life: life.ln(),
                    bounded,
                    spread: robust_spread(&logs),
                    low: logs.iter().copied().fold(f64::INFINITY, f64::min).exp(),
                    high: logs.iter().copied().fold(f64::NEG_INFINITY, f64::max).exp(),
                    reference_distance,
                })
            })
            .collect()
    }

    /// Errors, spreads and training distances of labelled `held_out` cells, predicted with
    /// `references`.
    pub(super) fn points(
        &self,
        training: &Dataset,
        held_out: &Dataset,
        references: &Dataset,
        draw: ReferenceDraw,
    ) -> Result<Vec<Point>> {
        if let Some(id) = held_out.shared_cell(training) {
            return Err(Error::config(
                "calibration",
                format!("cell {id} is also a training cell: calibrate on held-out cells"),
            ));
        }
        let lives = held_out.require_labels()?;
        let index = GenomeIndex::new(training.fingerprints().to_vec());
        let spreads = self.spreads(held_out, references, draw)?;
        let cathodes = held_out.cathodes();
        Ok(spreads
            .into_iter()
            .zip(lives)
            .zip(held_out.fingerprints())
            .zip(cathodes)
            .map(|(((s, y), fp), c)| Point {
                group: label_group(c),
                error: (y.ln() - s.ln_life).abs(),
                spread: s.spread,
                distance: nearest_distance(&index, fp),
            })
            .collect())
    }

    /// Calibrate intervals and flags on labelled `calibration` cells held out from
    /// `training` (the cells the model was trained on), predicted with `references`
    /// (usually the training cells) and the configured reference draw.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a calibration cell is also a training cell,
    /// [`Error::NotEnoughData`] without calibration cells or references, and the errors of
    /// prediction.
    pub fn calibrate(
        &self,
        training: &Dataset,
        calibration: &Dataset,
        references: &Dataset,
    ) -> Result<IntervalCalibration> {
        let points = self.points(training, calibration, references, self.reference_draw())?;
        IntervalCalibration::from_points(self, points, training, calibration)
    }

    /// Calibrate without setting cells aside: split `training` (the cells this model was
    /// trained on) into `folds` seeded folds, train a fresh model of this configuration on
    /// all folds but one and score the fold it did not see, with the other folds as
    /// references. Costs `folds` trainings on `(folds − 1) / folds` of the cells.
    ///
    /// The fold models are trained by [`fit`](BatLiNet::fit) (ordinary training, each on its
    /// own cells' statistics): they stand for this model only if it was trained the same way.
    /// For a model trained otherwise (federated, with DP-SGD), calibrate on held-out cells with
    /// [`calibrate`](BatLiNet::calibrate). Cross-conformal coverage is guaranteed only at about
    /// `1 − 2(1 − c)` in the worst case (Barber et al. 2021); it is near `c` in practice.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than 2 folds or more folds than cells, and the
    /// errors of training and prediction.
    pub fn cross_calibrate(&self, training: &Dataset, folds: usize) -> Result<IntervalCalibration> {
        let mut points = Vec::with_capacity(training.len());
        for (held, rest) in self.fold_splits(training, folds)? {
            let mut model = BatLiNet::new(self.config.clone(), self.featurizer.clone())?;
            model.fit(&rest)?;
            points.extend(model.points(&rest, &held, &rest, model.reference_draw())?);
        }
        IntervalCalibration::from_points(self, points, training, training)
    }

    /// Calibrate this model with the held-out errors of `fitted`, a model of the same
    /// configuration trained on `fit` only: `held_out` are the other cells of `training`
    /// (everything this model was trained on), never seen by `fitted`, predicted with `fit`
    /// as references. As in [`cross_calibrate`](BatLiNet::cross_calibrate), `fitted` stands
    /// for this model, which trained on more cells and is at least as accurate: the intervals
    /// are conservative. A federated fleet calibrates so (the model it chose, as trained
    /// before its validation cells were added).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a `held_out` cell is also in `fit`,
    /// [`Error::NotEnoughData`] without held-out cells or references, and the errors of
    /// prediction.
    pub fn calibrate_from(
        &self,
        fitted: &BatLiNet,
        fit: &Dataset,
        held_out: &Dataset,
        training: &Dataset,
    ) -> Result<IntervalCalibration> {
        let points = fitted.points(fit, held_out, fit, self.reference_draw())?;
        IntervalCalibration::from_points(self, points, training, held_out)
    }

    /// `training` split into `folds` seeded folds: per fold, (the fold, the other folds).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than 2 folds or more folds than cells.
    pub(super) fn fold_splits(
        &self,
        training: &Dataset,
        folds: usize,
    ) -> Result<Vec<(Dataset, Dataset)>> {
        if folds < 2 || folds > training.len() {
            return Err(Error::config(
                "folds",
                format!(
                    "need 2 to {} (the training cells), got {folds}",
                    training.len()
                ),
            ));
        }
        let mut order: Vec<usize> = (0..training.len()).collect();
        rand::seq::SliceRandom::shuffle(
            order.as_mut_slice(),
            &mut crate::rng::substream(self.config.seed, 11),
        );
        (0..folds)
            .map(|fold| {
                let (held, rest): (Vec<usize>, Vec<usize>) =
                    (0..order.len()).partition(|i| i % folds == fold);
                let pick = |idx: Vec<usize>| {
                    training.subset(&idx.iter().map(|&i| order[i]).collect::<Vec<_>>())
                };
                Ok((pick(held)?, pick(rest)?))
            })
            .collect()
    }

    /// Predictions of `targets` with intervals at `coverage` and flags, references from
    /// `references` drawn as the calibration drew them.
    ///
    /// # Errors
    /// [`Error::Model`] when `calibration` was made for another model (or this one before it
    /// changed), [`Error::InvalidConfig`] for a coverage outside (0, 1),
    /// [`Error::NotEnoughData`] when the calibration has too few cells for it, and the errors
    /// of prediction.
    pub fn predict_intervals(
        &self,
        targets: &Dataset,
        references: &Dataset,
        calibration: &IntervalCalibration,
        coverage: f64,
    ) -> Result<Vec<Prediction>> {
        if self.digest()? != calibration.model_digest {
            return Err(Error::Model {
                reason: "the calibration is for another model (trained, loaded or changed \
                         since): calibrate again"
                    .into(),
            });
        }
        calibration.validate()?;
        let q = conformal_quantile(&calibration.scores, coverage)?;
        let draw = calibration.draw;
        // a chemistry's own quantile where it has the cells for a tight one
        let group_q: Vec<Option<f64>> = calibration
            .group_scores
            .iter()
            .map(|g| {
                conformal_quantile(g, coverage)
                    .ok()
                    .filter(|_| calibration.by_chemistry && g.len() >= MONDRIAN_MIN_CELLS)
            })
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let labels = self.require_labels()?;
        let index = GenomeIndex::new(calibration.training.clone());
        let spreads = self.spreads(targets, references, draw)?;
        let cathodes = targets.cathodes();
        // a cell without a known cathode is judged by its genome distance alone
        let seen = |c: Option<&str>| {
            c.is_none_or(|c| calibration.cathodes.contains(&c.to_ascii_uppercase()))
        };
        let (lo_life, hi_life) = calibration.label_range;
        Ok(spreads
            .into_iter()
            .enumerate()
            .map(|(t, s)| {
                let c = cathodes[t];
                let (lo, hi) = labels.log_bounds_for(c);
                let q = label_group(c)
                    .and_then(|g| group_q.get(g).copied().flatten())
                    .unwrap_or(q);
                let half = q * calibration.difficulty(s.spread);
                let distance = nearest_distance(&index, &targets.fingerprints()[t]);
                let life = s.ln_life.exp();
                Prediction {
                    life,
                    lower: (s.ln_life - half).clamp(lo, hi).exp(),
                    upper: (s.ln_life + half).clamp(lo, hi).exp(),
                    spread: s.spread,
                    reference_low: s.low,
                    reference_high: s.high,
                    training_distance: distance,
                    reference_distance: s.reference_distance,
                    bounded: s.bounded,
                    outside_label_range: !(lo_life..=hi_life).contains(&life),
                    out_of_distribution: !seen(c) || distance > calibration.max_distance,
                }
            })
            .collect())
    }
}

impl BatLiNet {
    /// SHA-256 (hex) of the model's bytes (settings, label transform, input scales, weights).
    fn digest(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(self.to_bytes()?);
        Ok(hash.iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn nearest_distance(index: &GenomeIndex, fp: &GenomeFingerprint) -> f64 {
    index
        .nearest(fp, 1)
        .first()
        .map_or(f64::INFINITY, |&(_, d)| d)
}
