//! Cross-conformal intervals with the fold models kept (CV+; Barber, Candès, Ramdas and
//! Tibshirani, "Predictive inference with the jackknife+", Ann. Statist. 2021).
//!
//! [`BatLiNet::cross_calibrate`] scores each training cell with a model trained without its
//! fold and then centres every interval on the *final* model's prediction. When few cells
//! train, a fold model on three quarters of them errs more than the final model, and those
//! intervals are wider than they need be. CV+ centres each fold's contribution on that fold
//! model's own prediction of the new cell:
//! cell `i` of fold `k(i)`, with normalized score `R_i = |ln y_i − ln μ₋ₖ₍ᵢ₎(x_i)| / d₋ₖ₍ᵢ₎(x_i)`,
//! gives the new cell `x` the bounds `ln μ₋ₖ₍ᵢ₎(x) ∓ R_i · d₋ₖ₍ᵢ₎(x)`; the interval runs from the
//! `⌊(1 − c)(n + 1)⌋`-th smallest lower bound to the `⌈c (n + 1)⌉`-th smallest upper bound.
//! `d` is the difficulty of the intervals module: a cell's spread over its references plus
//! `β`, the median spread of the scored cells. The errors that widen the interval are then
//! the errors of the models that centre it. Coverage is at least `1 − 2(1 − c)` for
//! exchangeable cells and close to `c` in practice.
//!
//! Like every conformal method it assumes the new cells are exchangeable with the training
//! cells. On MATR they are not: the `train` split holds the cells that are hard to predict (the
//! longest lives), its 4-fold errors are about twice the primary test's, and CV+ covered all
//! 42 primary-test cells at 80 % as the cross-fitted calibration did (BENCHMARKS.md "BatLiNet
//! intervals", session 15).
//!
//! The interval belongs to the fold models, not to the final model: report it beside the final
//! model's point prediction (which usually lies inside it). It costs `folds` trainings and
//! `folds` predictions of each new cell; nothing is stored, so the fold models and the training
//! cells stay with their owner.

use super::conformal::{conformal_quantile, median_in_place};
use super::{BatLiNet, Dataset};
use crate::error::{Error, Result};

/// CV+ intervals of `targets` at each of `coverages`: `[coverage][target] = (lower, upper)` in
/// cycles.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossConformalIntervals {
    /// The coverages asked for, in order.
    pub coverages: Vec<f64>,
    /// Per coverage, per target: (lower, upper) in cycles, clipped to the prediction bound.
    pub bounds: Vec<Vec<(f64, f64)>>,
}

impl BatLiNet {
    /// CV+ intervals for `targets` (see the module docs): split `training` (the cells this
    /// model was trained on) into `folds` seeded folds as [`cross_calibrate`](Self::cross_calibrate)
    /// does, train a model of this configuration on all folds but one, score the fold it did
    /// not see and predict every target, each fold model with its own training cells as
    /// references.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a coverage outside (0, 1), fewer than 2 folds or more folds
    /// than cells, or a target that is also a training cell; [`Error::NotEnoughData`] when
    /// the training cells are too few for a coverage (about `c / (1 − c)`); the errors of
    /// training and prediction.
    pub fn cross_conformal_intervals(
        &self,
        training: &Dataset,
        targets: &Dataset,
        folds: usize,
        coverages: &[f64],
    ) -> Result<CrossConformalIntervals> {
        if let Some(&c) = coverages.iter().find(|&&c| !(c > 0.0 && c < 1.0)) {
            return Err(Error::config(
                "coverage",
                format!("must lie in (0, 1), got {c}"),
            ));
        }
        if let Some(id) = targets.shared_cell(training) {
            return Err(Error::config(
                "targets",
                format!("cell {id} is a training cell: CV+ intervals are for new cells"),
            ));
        }
        // fail before any training when the cells cannot give a coverage
        let placeholder = vec![0.0; training.len()];
        for &c in coverages {
            conformal_quantile(&placeholder, c)?;
        }
        let labels = self.require_labels()?;
        // per scored cell: (its fold, error in ln life, spread); per fold, per target:
        // (ln life, spread)
        let mut scored = Vec::with_capacity(training.len());
        let mut predicted = Vec::with_capacity(folds);
        for (k, (held, rest)) in self.fold_splits(training, folds)?.into_iter().enumerate() {
            let mut model = BatLiNet::new(self.config.clone(), self.featurizer.clone())?;
            model.fit(&rest)?;
            let draw = model.reference_draw();
            for p in model.points(&rest, &held, &rest, draw)? {
                scored.push((k, p.error, p.spread));
            }
            let spreads = model.spreads(targets, &rest, draw)?;
            predicted.push(
                spreads
                    .into_iter()
                    .map(|s| (s.ln_life, s.spread))
                    .collect::<Vec<_>>(),
            );
        }
        let beta = median_in_place(&mut scored.iter().map(|s| s.2).collect::<Vec<_>>());
        let difficulty = |spread: f64| if beta > 0.0 { spread + beta } else { 1.0 };
        let cathodes = targets.cathodes();
        let mut bounds = vec![Vec::with_capacity(targets.len()); coverages.len()];
        for (t, cathode) in cathodes.into_iter().enumerate() {
            // each scored cell's bounds for this target, sorted once for every coverage
            let (mut lowers, mut uppers): (Vec<f64>, Vec<f64>) = scored
                .iter()
                .map(|&(k, error, spread)| {
                    let (ln_life, target_spread) = predicted[k][t];
                    let half = error / difficulty(spread) * difficulty(target_spread);
                    (-(ln_life - half), ln_life + half)
                })
                .unzip();
            lowers.sort_by(f64::total_cmp);
            uppers.sort_by(f64::total_cmp);
            let (lo, hi) = labels.log_bounds_for(cathode);
            for (out, &c) in bounds.iter_mut().zip(coverages) {
                let lower = -conformal_quantile(&lowers, c)?;
                let upper = conformal_quantile(&uppers, c)?;
                out.push((lower.clamp(lo, hi).exp(), upper.clamp(lo, hi).exp()));
            }
        }
        Ok(CrossConformalIntervals {
            coverages: coverages.to_vec(),
            bounds,
        })
    }
}
