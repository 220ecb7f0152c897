//! The linear lifetime model: ridge regression of ln(cycle life) on a cell's early-life
//! features ([`EarlyLifeFeatures`]) plus one offset per cathode chemistry, fitted from
//! summable statistics.
//!
//! Everything a fit needs is in [`LinearStatistics`], the sums of the outer products of the
//! cells' design rows (with the label): fleets add theirs through a secure sum and the
//! federated fit is exactly the pooled one. A prior (another model) turns the ridge into
//! mean-regularized multi-task learning: `min Σ (y − z·w)² + λ ‖w − w₀‖²` over the non-intercept
//! weights, which is how a fleet personalizes a model fitted on the other fleets
//! ([`federation::federate_linear`](crate::federation::federate_linear)). Leave-one-out errors
//! come in closed form ([`loo_error`]), so each fleet chooses its features and `λ` on all of
//! its own cells.
//!
//! Features are standardized with the means and scales of a [`Standardization`] (the fleet's
//! own, or the shared one in a federation); cathode offsets are penalized toward the prior
//! (toward zero without one), so a chemistry with two cells borrows from the intercept.
//! Predictions are bounded around the training log labels as BatLiNet's are
//! ([`log_prediction_bounds`](super::log_prediction_bounds)).

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::labels::LABEL_GROUPS;
use crate::data::{Cell, LabelConfig};
use crate::dp::RecordPrivacy;
use crate::error::{Error, Result};
use crate::features::{EarlyLifeConfig, EARLY_LIFE_FEATURE_COUNT};

mod algebra;
mod checked;
mod intervals;
mod ranges;
mod statistics;

pub use intervals::{Calibration, LinearPrediction};
pub use ranges::{statistics_sensitivity, PublicRanges};
pub use statistics::{LinearRow, LinearStatistics, Standardization, LINEAR_STATISTICS_LEN};

/// Columns of a design row: intercept, the early-life features, one indicator per
/// [`LABEL_GROUPS`] cathode.
pub const LINEAR_COLUMNS: usize = 1 + EARLY_LIFE_FEATURE_COUNT + LABEL_GROUPS.len();

/// Which early-life features a linear model reads (indices into
/// [`EARLY_LIFE_FEATURES`](crate::features::EARLY_LIFE_FEATURES)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSet {
    /// Severson's variance model: log10 var ΔQ(V).
    Variance,
    /// The slope of capacity fade alone.
    Fade,
    /// Severson's discharge features: ΔQ(V) variance and minimum, fade slope, early capacity,
    /// fade (what a discharge-only source such as MATR gives).
    Discharge,
    /// Fade slope, temperature, charge and discharge C-rates.
    Conditions,
    /// The fade split into its square-root and linear parts, the straight-line fade slope,
    /// temperature, charge and discharge C-rates.
    Aging,
    /// All ten features.
    Full,
}

impl FeatureSet {
    /// Every feature set, in the order candidates are tried.
    pub const ALL: [FeatureSet; 6] = [
        FeatureSet::Variance,
        FeatureSet::Fade,
        FeatureSet::Discharge,
        FeatureSet::Conditions,
        FeatureSet::Aging,
        FeatureSet::Full,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FeatureSet::Variance => "variance",
            FeatureSet::Fade => "fade",
            FeatureSet::Discharge => "discharge",
            FeatureSet::Conditions => "conditions",
            FeatureSet::Aging => "aging",
            FeatureSet::Full => "full",
        }
    }

    /// The feature indices.
    pub fn features(self) -> &'static [usize] {
        match self {
            FeatureSet::Variance => &[0],
            FeatureSet::Fade => &[2],
            FeatureSet::Discharge => &[0, 1, 2, 3, 4],
            FeatureSet::Conditions => &[2, 5, 6, 7],
            FeatureSet::Aging => &[2, 5, 6, 7, 8, 9],
            FeatureSet::Full => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        }
    }

    /// Design-row columns of the set: intercept, its features, the cathode indicators.
    pub fn columns(self) -> Vec<usize> {
        let mut c = vec![0];
        c.extend(self.features().iter().map(|f| f + 1));
        c.extend(1 + EARLY_LIFE_FEATURE_COUNT..LINEAR_COLUMNS);
        c
    }
}

/// Default of [`LinearConfig::choice_margin`] and
/// [`FederationConfig::choice_margin`](crate::federation::FederationConfig::choice_margin):
/// the normal quantile whose one-sided level (about 2.3 %) a paired t-test of the per-cell
/// differences must pass for a model to replace a fleet's default
/// ([`federation::choice`](crate::federation)). Chosen on draws of the demo fleets other than
/// the benchmark's (data seeds 100-139; BENCHMARKS.md, session 22).
pub const DEFAULT_CHOICE_MARGIN: f64 = 2.0;

/// Settings of the linear model and of its selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinearConfig {
    /// Cycles the features read.
    pub early_life: EarlyLifeConfig,
    /// Candidate feature sets (default: all of [`FeatureSet::ALL`]); a set some cell cannot
    /// give is skipped.
    pub feature_sets: Vec<FeatureSet>,
    /// Candidate ridge strengths, on standardized features (default 0.01 to 1000).
    pub lambdas: Vec<f64>,
    /// In a federation, choose a fleet's model for each cathode chemistry on the fleet's
    /// cells of that chemistry (true), or one model for all its cells (default false: with
    /// two to four cells of a minority chemistry the per-chemistry choice is too noisy on the
    /// demo fleets, see BENCHMARKS.md).
    pub per_chemistry_choice: bool,
    /// In a federation, how clearly a model must validate below a fleet's default (the global
    /// model; under `privacy` the fleet's local model) for the fleet to keep it instead: the
    /// normal quantile of a one-sided paired t-test's level, so about that many standard errors
    /// of the mean per-cell difference on many cells and more on few (default
    /// [`DEFAULT_CHOICE_MARGIN`]; 0 keeps the least mean error). Finite, at least 0.
    pub choice_margin: f64,
    /// Record-level differential privacy of what a fleet sends in a federation
    /// ([`federate_linear`](crate::federation::federate_linear)); `None` (the default) sends
    /// exact sums (secure aggregation still hides each fleet's).
    pub privacy: Option<RecordPrivacy>,
    /// Public ranges that bound one cell's share of the sums under `privacy`.
    pub ranges: PublicRanges,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            early_life: EarlyLifeConfig::default(),
            feature_sets: FeatureSet::ALL.to_vec(),
            lambdas: vec![0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0],
            per_chemistry_choice: false,
            choice_margin: DEFAULT_CHOICE_MARGIN,
            privacy: None,
            ranges: PublicRanges::default(),
        }
    }
}

impl LinearConfig {
    /// Reject empty candidate lists, non-positive or non-finite `λ` and a negative or
    /// non-finite choice margin.
    pub fn validate(&self) -> Result<()> {
        self.early_life.validate()?;
        if let Some(p) = &self.privacy {
            p.validate()?;
            self.ranges.validate()?;
        }
        if !(self.choice_margin.is_finite() && self.choice_margin >= 0.0) {
            return Err(Error::InvalidConfig {
                field: "linear.choice_margin".into(),
                reason: format!("needs a finite value >= 0, got {}", self.choice_margin),
            });
        }
        if self.feature_sets.is_empty() {
            return Err(Error::InvalidConfig {
                field: "linear.feature_sets".into(),
                reason: "needs at least one feature set".into(),
            });
        }
        if self.lambdas.is_empty() || self.lambdas.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(Error::InvalidConfig {
                field: "linear.lambdas".into(),
                reason: format!("need finite values > 0, got {:?}", self.lambdas),
            });
        }
        Ok(())
    }

    /// The early-life features some candidate feature set reads (sorted): all a federation
    /// under [`privacy`](Self::privacy) releases.
    pub fn features_in_use(&self) -> Vec<usize> {
        let mut f: Vec<usize> = self
            .feature_sets
            .iter()
            .flat_map(|s| s.features().iter().copied())
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// The design rows of `cells` (labels read with `label`; a censored cell has none);
    /// `cells` may be owned or borrowed (`&[Cell]` or `&[&Cell]`).
    pub fn rows<C: Borrow<Cell>>(
        &self,
        cells: &[C],
        label: &LabelConfig,
    ) -> Result<Vec<LinearRow>> {
        self.validate()?;
        cells
            .iter()
            .map(|c| LinearRow::of(c.borrow(), &self.early_life, label))
            .collect()
    }
}

/// A fitted linear lifetime model.
///
/// ```
/// use battery_fl_core::data::synthetic::FleetConfig;
/// use battery_fl_core::data::LabelConfig;
/// use battery_fl_core::model::{select_linear, LinearConfig};
///
/// let cells = FleetConfig::default().with_fleets(1).with_cells_per_fleet(16).generate()?
///     .remove(0).cells;
/// let config = LinearConfig::default();
/// let rows = config.rows(&cells[..12], &LabelConfig::default())?;
/// let (model, loo) = select_linear(&rows, &config)?;
/// assert!(loo.is_finite());
/// let lives = model.predict(&cells[12..])?;
/// assert!(lives.iter().all(|l| *l > 100.0));
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "checked::LinearModelFields")]
pub struct LinearModel {
    /// Cycles the features read.
    pub early_life: EarlyLifeConfig,
    /// The features read.
    pub feature_set: FeatureSet,
    /// Ridge strength it was fitted with (infinite: its prior as it is, a model fitted on
    /// other cells; `null` in JSON).
    #[serde(with = "infinite_as_null")]
    pub lambda: f64,
    /// Feature means and scales.
    pub standardization: Standardization,
    /// Weights on [`FeatureSet::columns`] of the standardized row.
    pub weights: Vec<f64>,
    /// Predictions are clamped to `[exp(lo), exp(hi)]`.
    pub log_life_bounds: (f64, f64),
    /// `(Zᵀ Z + λ P)⁻¹` of the fit, row-major: the leverage of a new cell (how far it lies
    /// from the training cells in feature space), which widens its interval
    /// ([`intervals`](LinearModel::intervals)).
    pub inverse: Vec<f64>,
    /// Which [`LABEL_GROUPS`] cathodes the fit saw cells of (its own or its prior's): a cell
    /// of another is out of distribution.
    pub cathodes_seen: Vec<bool>,
}

impl LinearModel {
    /// Ridge fit on `stats` with features standardized by `standardization`, pulled toward
    /// `prior`'s weights (toward zero without one) with strength `lambda`; the intercept is
    /// not penalized. `lambda = ∞` returns the prior with `lambda = ∞` (it was not fitted on
    /// `stats`).
    pub fn fit(
        stats: &LinearStatistics,
        standardization: &Standardization,
        set: FeatureSet,
        lambda: f64,
        prior: Option<&LinearModel>,
        early_life: &EarlyLifeConfig,
    ) -> Result<Self> {
        check_prior(set, standardization, prior)?;
        if lambda.is_infinite() {
            let mut model = required(prior)?.clone();
            model.lambda = f64::INFINITY;
            return Ok(model);
        }
        let (a, b) = algebra::normal_equations(stats, standardization, set, lambda, prior)?;
        let d = set.columns().len();
        let factor = algebra::cholesky(&a, d)?;
        let weights = algebra::cholesky_solve(&factor, &b, d);
        let inverse = algebra::inverse(&factor, d);
        let cathodes_seen = (0..LABEL_GROUPS.len())
            .map(|g| stats.cathode_count(g) > 0.5 || prior.is_some_and(|p| p.cathodes_seen[g]))
            .collect();
        let mut bounds = stats.log_life_bounds()?;
        if let Some(p) = prior {
            bounds = (
                bounds.0.min(p.log_life_bounds.0),
                bounds.1.max(p.log_life_bounds.1),
            );
        }
        Ok(LinearModel {
            early_life: early_life.clone(),
            feature_set: set,
            lambda,
            standardization: standardization.clone(),
            weights,
            log_life_bounds: bounds,
            inverse,
            cathodes_seen,
        })
    }

    /// Predicted ln(cycle life) of a row, unbounded.
    pub fn predict_log(&self, row: &LinearRow) -> Result<f64> {
        let z = self.standardization.apply(row, self.feature_set)?;
        Ok(z.iter().zip(&self.weights).map(|(z, w)| z * w).sum())
    }

    /// Predicted cycle life of each row and whether it hit the bound.
    pub fn predict_rows(&self, rows: &[LinearRow]) -> Result<Vec<(f64, bool)>> {
        let (lo, hi) = self.log_life_bounds;
        rows.iter()
            .map(|r| {
                let y = self.predict_log(r)?;
                Ok((y.clamp(lo, hi).exp(), !(lo..=hi).contains(&y)))
            })
            .collect()
    }

    /// Predicted cycle lives of `cells` (bounded; owned or borrowed cells).
    pub fn predict<C: Borrow<Cell>>(&self, cells: &[C]) -> Result<Vec<f64>> {
        let rows = cells
            .iter()
            .map(|c| LinearRow::of(c.borrow(), &self.early_life, &LabelConfig::default()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.predict_rows(&rows)?.into_iter().map(|p| p.0).collect())
    }
}

/// JSON has no infinity: an infinite `lambda` is written as `null` and read back.
pub(super) mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if value.is_infinite() {
            s.serialize_none()
        } else {
            s.serialize_f64(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// The prior an infinite `lambda` stands for.
fn required(prior: Option<&LinearModel>) -> Result<&LinearModel> {
    prior.ok_or_else(|| Error::InvalidConfig {
        field: "linear.lambda".into(),
        reason: "an infinite lambda needs a prior".into(),
    })
}

fn check_prior(
    set: FeatureSet,
    standardization: &Standardization,
    prior: Option<&LinearModel>,
) -> Result<()> {
    match prior {
        Some(p) if p.feature_set != set || p.standardization != *standardization => {
            Err(Error::InvalidConfig {
                field: "linear.prior".into(),
                reason: format!(
                    "the prior reads `{}` with its own standardization; the fit reads `{}`",
                    p.feature_set.name(),
                    set.name()
                ),
            })
        }
        _ => Ok(()),
    }
}

/// Mean squared leave-one-out error of ln(life) of the fit on `rows` (all labelled) with
/// these settings: the mean of [`loo_squared_errors`].
pub fn loo_error(
    rows: &[LinearRow],
    standardization: &Standardization,
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
) -> Result<f64> {
    let e = loo_squared_errors(rows, standardization, set, lambda, prior)?;
    Ok(e.iter().sum::<f64>() / e.len().max(1) as f64)
}

/// Squared leave-one-out error of ln(life) of each row for the fit on `rows` (all labelled)
/// with these settings (from [`loo_predictions`]). Infinite for a row with all the leverage.
pub fn loo_squared_errors(
    rows: &[LinearRow],
    standardization: &Standardization,
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
) -> Result<Vec<f64>> {
    let p = loo_predictions(rows, standardization, set, lambda, prior)?;
    rows.iter()
        .zip(p)
        .map(|(r, p)| {
            let e = (r.require_label()? - p).powi(2);
            Ok(if e.is_nan() { f64::INFINITY } else { e })
        })
        .collect()
}

/// Leave-one-out predictions of ln(life): for each row, the fit on the *other* rows (all
/// labelled) with these settings, in closed form (`y_i − e_i / (1 − h_ii)`). With `lambda =
/// ∞` they are the prior's predictions (a model fitted elsewhere). Cross-fitted predictions
/// like these are what a second model may learn the residuals of without leaking. NaN for a
/// row with all the leverage.
pub fn loo_predictions(
    rows: &[LinearRow],
    standardization: &Standardization,
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
) -> Result<Vec<f64>> {
    check_prior(set, standardization, prior)?;
    let labels = rows
        .iter()
        .map(LinearRow::require_label)
        .collect::<Result<Vec<_>>>()?;
    if lambda.is_infinite() {
        let p = required(prior)?;
        return rows.iter().map(|r| p.predict_log(r)).collect();
    }
    let stats = LinearStatistics::from_rows(rows)?;
    let (a, b) = algebra::normal_equations(&stats, standardization, set, lambda, prior)?;
    let d = set.columns().len();
    let factor = algebra::cholesky(&a, d)?;
    let w = algebra::cholesky_solve(&factor, &b, d);
    rows.iter()
        .zip(&labels)
        .map(|(r, y)| {
            let z = standardization.apply(r, set)?;
            let h: f64 = z
                .iter()
                .zip(algebra::cholesky_solve(&factor, &z, d))
                .map(|(a, b)| a * b)
                .sum();
            if h >= 1.0 - 1e-9 {
                return Ok(f64::NAN);
            }
            let e = y - z.iter().zip(&w).map(|(z, w)| z * w).sum::<f64>();
            Ok(y - e / (1.0 - h))
        })
        .collect()
}

/// The feature sets of `config` every row can give.
pub fn available_sets(stats: &LinearStatistics, config: &LinearConfig) -> Vec<FeatureSet> {
    config
        .feature_sets
        .iter()
        .copied()
        .filter(|s| stats.has_features(*s))
        .collect()
}

/// A fleet's model alone: its own standardization, the feature set and `λ` with the least
/// leave-one-out error on `rows`. Returns the model (fitted on all rows) and that error.
pub fn select_linear(rows: &[LinearRow], config: &LinearConfig) -> Result<(LinearModel, f64)> {
    config.validate()?;
    let stats = LinearStatistics::from_rows(rows)?;
    let standardization = Standardization::from_statistics(&stats)?;
    let mut best: Option<(f64, FeatureSet, f64)> = None;
    for set in available_sets(&stats, config) {
        for &lambda in &config.lambdas {
            let e = loo_error(rows, &standardization, set, lambda, None)?;
            if best.is_none_or(|b| e < b.0) {
                best = Some((e, set, lambda));
            }
        }
    }
    let (e, set, lambda) = best.ok_or_else(|| Error::NotEnoughData {
        what: "a feature set every cell can give".into(),
        needed: 1,
        got: 0,
    })?;
    let model = LinearModel::fit(
        &stats,
        &standardization,
        set,
        lambda,
        None,
        &config.early_life,
    )?;
    Ok((model, e))
}

#[cfg(test)]
mod tests;
