//! Prediction intervals with a coverage guarantee and out-of-distribution flags for the
//! linear model.
//!
//! **Intervals** are split-conformal in log space, normalized by the leverage. A new cell's
//! error in ln(life) has variance `σ² (1 + h)`, with `h = zᵀ (Zᵀ Z + λ P)⁻¹ z` its leverage (how
//! far it lies from the training cells in feature space); a training cell's leave-one-out
//! residual `e_i / (1 − h_i)` has variance `σ² / (1 − h_i)`. So the calibration scores are
//! `|e_i| / sqrt(1 − h_i)` on the cells the model was fitted on (closed-form leave-one-out, the
//! jackknife: no cell is set aside) or `|e_i| / sqrt(1 + h_i)` on held-out cells, and a new
//! cell's interval at coverage `c` is `exp(ŷ ± q · sqrt(1 + h))`, with `q` the
//! `⌈(n + 1) c⌉`-th smallest score. Cells near the training data get narrow intervals, cells
//! far from it wide ones. With exchangeable cells the held-out version covers at least `c`
//! (split conformal); the leave-one-out version is the jackknife, which covers about `c` in
//! practice (Barber et al. 2021 bound it at `1 − 2(1 − c)` in the worst case).
//!
//! Intervals are clipped to the prediction bound (the model never predicts beyond it).
//!
//! **Out-of-distribution flag**: a cell is flagged when its cathode chemistry is in neither the
//! training nor the calibration cells, or when its leverage exceeds the largest leverage among the calibration cells
//! (it lies further from the training data than any cell the intervals were calibrated on; a
//! fitted calibration cell counts with its leverage against the fit without it,
//! `h_i / (1 − h_i)`). Both rules are read off the training data; no constant is tuned.
//!
//! Calibration stays with whoever holds the cells: in a federation each fleet calibrates its
//! own model on its own cells.

use serde::{Deserialize, Serialize};

use super::{LinearModel, LinearRow, LinearStatistics};
use crate::error::{Error, Result};
use crate::model::{conformal_quantile, LABEL_GROUPS};

/// Calibration scores of a linear model (sorted), and the largest calibration leverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Normalized absolute ln(life) residuals, ascending.
    pub scores: Vec<f64>,
    /// Largest leverage among the calibration cells (a fitted cell's against the fit without
    /// it).
    pub max_leverage: f64,
    /// Which [`LABEL_GROUPS`] cathodes the calibration cells have.
    pub cathodes_seen: Vec<bool>,
}

impl Calibration {
    /// The conformal quantile at `coverage`: the `⌈(n + 1) c⌉`-th smallest score. Needs at
    /// least `c / (1 − c)` cells (9 for 90 %).
    pub fn quantile(&self, coverage: f64) -> Result<f64> {
        conformal_quantile(&self.scores, coverage)
    }
}

/// One prediction of the linear model with its interval and flags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearPrediction {
    /// Predicted cycle life (bounded).
    pub life: f64,
    /// Lower end of the interval (cycles).
    pub lower: f64,
    /// Upper end of the interval (cycles).
    pub upper: f64,
    /// Whether the point prediction hit the bound around the training lives.
    pub bounded: bool,
    /// The cell's leverage.
    pub leverage: f64,
    /// Cathode never seen in training, or leverage above every calibration cell's.
    pub out_of_distribution: bool,
}

impl LinearModel {
    /// The leverage `zᵀ (Zᵀ Z + λ P)⁻¹ z` of a row.
    pub fn leverage(&self, row: &LinearRow) -> Result<f64> {
        let z = self.standardization.apply(row, self.feature_set)?;
        let d = z.len();
        if self.inverse.len() != d * d {
            return Err(Error::Model {
                reason:
                    "linear model without its inverse normal matrix (saved by an older version)"
                        .into(),
            });
        }
        Ok((0..d)
            .map(|i| z[i] * (0..d).map(|j| self.inverse[i * d + j] * z[j]).sum::<f64>())
            .sum())
    }

    /// Calibrate intervals on labelled `rows`: the cells the model was fitted on
    /// (`fitted = true`, closed-form leave-one-out residuals) or cells it never saw
    /// (`fitted = false`).
    pub fn calibrate(&self, rows: &[LinearRow], fitted: bool) -> Result<Calibration> {
        let mut scores = Vec::with_capacity(rows.len());
        let mut max_leverage: f64 = 0.0;
        let mut cathodes_seen = vec![false; LABEL_GROUPS.len()];
        for r in rows {
            if let Some(g) = r.cathode {
                cathodes_seen[g] = true;
            }
            let h = self.leverage(r)?;
            let e = r.require_label()? - self.predict_log(r)?;
            let score = if fitted {
                if h >= 1.0 - 1e-9 {
                    f64::INFINITY
                } else {
                    (e / (1.0 - h)).abs() * (1.0 - h).sqrt()
                }
            } else {
                e.abs() / (1.0 + h).sqrt()
            };
            scores.push(score);
            // a fitted cell is compared by its leverage against the fit *without* it,
            // h / (1 - h): what a new cell's leverage against the full fit corresponds to
            let comparable = if fitted { h / (1.0 - h).max(1e-12) } else { h };
            max_leverage = max_leverage.max(comparable);
        }
        scores.sort_by(f64::total_cmp);
        Ok(Calibration {
            scores,
            max_leverage,
            cathodes_seen,
        })
    }

    /// Calibrate on labelled `rows` the model was fitted on, leaving out one *group* at a time
    /// (a batch, a fleet: `groups[i]` is row `i`'s): the model's settings are refitted on the
    /// other groups and scored on the group left out. Where new cells come from a new group,
    /// its shift is in the scores, which the leave-one-out calibration cannot see; the price is
    /// wider intervals. Needs at least two groups.
    pub fn calibrate_by_group(&self, rows: &[LinearRow], groups: &[usize]) -> Result<Calibration> {
        if groups.len() != rows.len() {
            return Err(Error::Shape {
                what: "calibration groups".into(),
                expected: vec![rows.len()],
                got: vec![groups.len()],
            });
        }
        let mut distinct = groups.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 2 {
            return Err(Error::NotEnoughData {
                what: "groups to calibrate by".into(),
                needed: 2,
                got: distinct.len(),
            });
        }
        let mut parts = Vec::with_capacity(distinct.len());
        for g in distinct {
            let (held, rest): (Vec<_>, Vec<_>) =
                rows.iter().zip(groups).partition(|(_, &h)| h == g);
            let rest: Vec<LinearRow> = rest.into_iter().map(|(r, _)| r.clone()).collect();
            let held: Vec<LinearRow> = held.into_iter().map(|(r, _)| r.clone()).collect();
            let model = LinearModel::fit(
                &LinearStatistics::from_rows(&rest)?,
                &self.standardization,
                self.feature_set,
                self.lambda,
                None,
                &self.early_life,
            )?;
            parts.push(model.calibrate(&held, false)?);
        }
        let mut scores: Vec<f64> = parts.iter().flat_map(|p| p.scores.clone()).collect();
        scores.sort_by(f64::total_cmp);
        let mut cathodes_seen = vec![false; LABEL_GROUPS.len()];
        for r in rows {
            if let Some(g) = r.cathode {
                cathodes_seen[g] = true;
            }
        }
        Ok(Calibration {
            scores,
            max_leverage: parts.iter().map(|p| p.max_leverage).fold(0.0, f64::max),
            cathodes_seen,
        })
    }

    /// Predictions of `rows` with intervals at `coverage` from `calibration`, and flags.
    pub fn intervals(
        &self,
        rows: &[LinearRow],
        calibration: &Calibration,
        coverage: f64,
    ) -> Result<Vec<LinearPrediction>> {
        let q = calibration.quantile(coverage)?;
        let (lo, hi) = self.log_life_bounds;
        rows.iter()
            .map(|r| {
                let y = self.predict_log(r)?;
                let h = self.leverage(r)?;
                let half = q * (1.0 + h).sqrt();
                let unseen = self.unseen_cathode(r, calibration);
                Ok(LinearPrediction {
                    life: y.clamp(lo, hi).exp(),
                    lower: (y - half).clamp(lo, hi).exp(),
                    upper: (y + half).clamp(lo, hi).exp(),
                    bounded: !(lo..=hi).contains(&y),
                    leverage: h,
                    out_of_distribution: unseen || h > calibration.max_leverage,
                })
            })
            .collect()
    }

    /// Whether `row`'s cathode is in neither the training nor the calibration cells.
    fn unseen_cathode(&self, row: &LinearRow, calibration: &Calibration) -> bool {
        let seen = |v: &[bool], g: usize| v.get(g).copied().unwrap_or(false);
        row.cathode
            .is_some_and(|g| !seen(&self.cathodes_seen, g) && !seen(&calibration.cathodes_seen, g))
    }

    /// The out-of-distribution flag of each row (module docs): a cathode in neither the
    /// training nor the calibration cells, or a leverage above every calibration cell's. No
    /// coverage and no labels needed.
    pub fn out_of_distribution(
        &self,
        rows: &[LinearRow],
        calibration: &Calibration,
    ) -> Result<Vec<bool>> {
        rows.iter()
            .map(|r| {
                let h = self.leverage(r)?;
                Ok(self.unseen_cathode(r, calibration) || h > calibration.max_leverage)
            })
            .collect()
    }
}
