//! The federated linear lifetime model: an exact fit from securely summed statistics, then a
//! personal model per fleet chosen on the fleet's own cells.
//!
//! 1. Each fleet sums its cells' [`LinearStatistics`]; one secure sum gives the total, from
//!    which every fleet reads the shared standardization and, for any settings, the model
//!    fitted on all cells (the federated fit *is* the pooled fit, up to the secure sum's
//!    quantization).
//! 2. Settings of the shared model (feature set, `λ`) are chosen by leave-one-fleet-out: a
//!    fleet fits the model of the *other* fleets (total minus its own statistics, computed at
//!    home) and scores it on its own cells; the squared errors go through a second secure sum.
//! 3. Personalization, per fleet, on its own cells only: its local model
//!    ([`select_linear`]); the *personalized* one, a ridge toward the other fleets' model
//!    (feature set and `λ` in the grid or `∞` by the least leave-one-out error on all of its
//!    cells); and the *global* one, the federation's fit on every fleet's cells.
//! 4. The fleet keeps the global model unless one of its own fits validates better on its
//!    cells by a one-sided paired t-test of the per-cell differences at
//!    [`LinearConfig::choice_margin`] (default [`DEFAULT_CHOICE_MARGIN`]: about 2.2 standard
//!    errors on 16 cells; `federation::choice`); under [`LinearConfig::privacy`] the
//!    default is its local model and the noisy global model must prove itself. Its own fits
//!    are scored by the nested
//!    leave-one-out error of the whole selection (each cell predicted by the selection of set
//!    and `λ` run without it; 20 folds above 20 cells), the global model by the fit on the
//!    total minus that cell, computed at home. The plain leave-one-out error of a selected
//!    fit is the least of dozens of candidates' and favoured the fleet's own fits for
//!    nothing; and even nested, the least of three noisy errors on 16 or so cells picked own
//!    fits that lost on new cells (BENCHMARKS.md, sessions 14 and 22). The shared
//!    standardization and the settings come from sums that include the fleet's cells, a small
//!    optimism of every score alike. With [`LinearConfig::per_chemistry_choice`]
//!    (genome-aware) it chooses for each cathode chemistry on its cells of that chemistry, so
//!    a minority chemistry is not decided by the majority's cells. A chemistry the fleet has
//!    no cell of is predicted by the global model.
//!
//! The coordinator learns the summed statistics and the summed validation errors, never one
//! fleet's. With [`LinearConfig::privacy`] both sums are record-level differentially private
//! ([`RecordPrivacy`](crate::dp::RecordPrivacy)): each fleet clamps its cells to public
//! ranges ([`PublicRanges`](crate::model::PublicRanges)), so one cell moves its statistics by
//! at most [`statistics_sensitivity`](crate::model::statistics_sensitivity) and its validation errors by at most
//! `ERROR_CLIP √candidates`, and adds its share of Gaussian noise to both; everything after
//! the sums is post-processing, and each fleet's own models are fitted at home.

use serde::{Deserialize, Serialize};

use super::config::SecureAggregation;
use super::labels::secure_sum;
use crate::dp::{check_mode, RecordPrivacyReport};
use crate::error::{Error, Result};
use crate::model::{
    Calibration, LinearConfig, LinearModel, LinearPrediction, LinearRow, LABEL_GROUPS,
};

mod choice;
mod protocol;

pub use crate::model::DEFAULT_CHOICE_MARGIN;
pub use protocol::{
    linear_share, linear_statistics, linear_total, SharedLinear, ERROR_CLIP, RELEASES,
};

/// Which of its models a fleet uses for a chemistry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearChoice {
    /// Its own model.
    Local,
    /// Its ridge toward the other fleets' model.
    Personalized,
    /// The federation's model, fitted on every fleet's cells (its own included).
    Global,
}

impl LinearChoice {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            LinearChoice::Local => "local",
            LinearChoice::Personalized => "personalized",
            LinearChoice::Global => "global",
        }
    }
}

/// A fleet's choice for one cathode chemistry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChemistryChoice {
    /// The cathode ([`LABEL_GROUPS`] name, `None` for one not listed).
    pub cathode: Option<String>,
    /// The fleet's training cells of it.
    pub cells: usize,
    /// The model it uses for it.
    pub choice: LinearChoice,
    /// Mean squared held-out error of ln(life) of that model on those cells (nested
    /// leave-one-out for the fleet's own fits, leave-one-out of the fit on the total for the
    /// global model).
    pub error: f64,
}

/// What one fleet ends with (its personal state: it never leaves the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearFleet {
    /// Its model alone (settings by leave-one-out on its cells).
    pub local: LinearModel,
    /// Mean squared error of ln(life) on its cells of the local selection, nested: each
    /// cell predicted by the selection run on the other cells.
    pub local_error: f64,
    /// Its ridge toward the other fleets' model.
    pub personalized: LinearModel,
    /// The same nested error of the personalized selection.
    pub personalized_error: f64,
    /// The other fleets' model (fitted at home from the total minus its own statistics).
    pub shared: LinearModel,
    /// Its (out-of-sample) error on the fleet's cells.
    pub shared_error: f64,
    /// The federation's model with the shared settings, fitted on the total (under privacy,
    /// if the fleet's cells lack a feature of those settings, the best validated settings its
    /// cells can use).
    pub global: LinearModel,
    /// Its leave-one-out error on the fleet's cells: each cell predicted by the fit on the
    /// total minus that cell.
    pub global_error: f64,
    /// Per cathode chemistry of its training cells, the model it uses.
    pub choices: Vec<ChemistryChoice>,
}

impl LinearFleet {
    /// The model the fleet uses for a cell of `cathode` (a [`LABEL_GROUPS`] index): its
    /// choice for that chemistry, the global model for a chemistry it has no cell of.
    pub fn model_for(&self, cathode: Option<usize>) -> &LinearModel {
        let name = cathode.map(|g| LABEL_GROUPS[g].to_string());
        match self.choices.iter().find(|c| c.cathode == name) {
            Some(c) => self.model(c.choice),
            None => &self.global,
        }
    }

    /// One of its three models.
    pub fn model(&self, choice: LinearChoice) -> &LinearModel {
        match choice {
            LinearChoice::Local => &self.local,
            LinearChoice::Personalized => &self.personalized,
            LinearChoice::Global => &self.global,
        }
    }

    /// Predicted cycle life of each row with the fleet's model for its chemistry, and
    /// whether it hit the bound.
    pub fn predict_rows(&self, rows: &[LinearRow]) -> Result<Vec<(f64, bool)>> {
        rows.iter()
            .map(|r| {
                let p = self
                    .model_for(r.cathode)
                    .predict_rows(std::slice::from_ref(r))?;
                Ok(p[0])
            })
            .collect()
    }

    /// Predictions of `rows` with the fleet's model for each cell's chemistry, intervals at
    /// `coverage` calibrated on the fleet's own training cells `train` (leave-one-out for the
    /// models fitted on them, held-out errors for a personalized model at `λ = ∞`, which is the
    /// other fleets' model) and out-of-distribution
    /// flags ([`LinearModel::intervals`]).
    pub fn intervals(
        &self,
        train: &[LinearRow],
        rows: &[LinearRow],
        coverage: f64,
    ) -> Result<Vec<LinearPrediction>> {
        // each of the (at most three) models is calibrated once, on the fleet's own cells
        let mut calibrations: Vec<(*const LinearModel, Calibration)> = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let model = self.model_for(r.cathode);
            let at = match calibrations
                .iter()
                .position(|(m, _)| std::ptr::eq(*m, model))
            {
                Some(at) => at,
                None => {
                    // a personalized model at lambda = inf is the other fleets' model: the
                    // fleet's own cells are held out for it; every other was fitted on them
                    let fitted = model.lambda.is_finite();
                    calibrations.push((model, model.calibrate(train, fitted)?));
                    calibrations.len() - 1
                }
            };
            out.extend(model.intervals(std::slice::from_ref(r), &calibrations[at].1, coverage)?);
        }
        Ok(out)
    }

    /// Mean squared held-out error of ln(life) of its choices over all its cells.
    pub fn personal_error(&self) -> f64 {
        let (sum, n) = self.choices.iter().fold((0.0, 0usize), |(s, n), c| {
            (s + c.error * c.cells as f64, n + c.cells)
        });
        sum / n.max(1) as f64
    }
}

/// The outcome of [`federate_linear`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearFederation {
    /// The model fitted on every fleet's cells with the leave-one-fleet-out settings.
    pub global: LinearModel,
    /// Its leave-one-fleet-out mean squared error of ln(life), over all cells.
    pub global_error: f64,
    /// Per fleet, in input order.
    pub fleets: Vec<LinearFleet>,
    /// What the releases spent, under [`LinearConfig::privacy`].
    #[serde(default)]
    pub privacy: Option<RecordPrivacyReport>,
}

/// Fit the federated linear model on `fleets` (each a fleet's labelled training rows, at
/// least two fleets) and each fleet's personal model. Sums go through secure aggregation when
/// `secure` is given (seeded by `seed`).
///
/// ```
/// use battery_fl_core::data::synthetic::FleetConfig;
/// use battery_fl_core::data::LabelConfig;
/// use battery_fl_core::federation::{federate_linear, LinearChoice};
/// use battery_fl_core::model::LinearConfig;
///
/// let config = LinearConfig::default();
/// let fleets = FleetConfig::default().with_fleets(3).with_cells_per_fleet(10).generate()?;
/// let rows = fleets
///     .iter()
///     .map(|f| config.rows(&f.cells, &LabelConfig::default()))
///     .collect::<Result<Vec<_>, _>>()?;
/// let fed = federate_linear(&rows, &config, None, 0)?;
/// assert_eq!(fed.fleets.len(), 3);
/// // each fleet keeps the global model unless one of its own fits validates clearly better
/// assert!(fed.fleets.iter().all(|f| match f.choices[0].choice {
///     LinearChoice::Local => f.local_error < f.global_error,
///     LinearChoice::Personalized => f.personalized_error < f.global_error,
///     LinearChoice::Global => true,
/// }));
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
pub fn federate_linear(
    fleets: &[Vec<LinearRow>],
    config: &LinearConfig,
    secure: Option<&SecureAggregation>,
    seed: u64,
) -> Result<LinearFederation> {
    config.validate()?;
    if fleets.len() < 2 {
        return Err(Error::NotEnoughData {
            what: "fleets in a linear federation".into(),
            needed: 2,
            got: fleets.len(),
        });
    }
    let m = fleets.len();
    let mut noise = match &config.privacy {
        Some(p) => {
            check_mode(p.mode, secure.is_some())?;
            Some(p.noise()?)
        }
        None => None,
    };
    let mut shares = Vec::with_capacity(m);
    for rows in fleets {
        let own = linear_statistics(rows, config)?;
        shares.push(linear_share(&own, config, m, noise.as_mut())?);
    }
    let shared = SharedLinear::new(
        linear_total(&secure_sum(&shares, secure, seed)?, config)?,
        config,
    )?;
    let mut errors = Vec::with_capacity(m);
    for rows in fleets {
        errors.push(shared.errors(rows, config, m, noise.as_mut())?);
    }
    let summed = secure_sum(&errors, secure, seed.wrapping_add(1))?;
    let (global, global_error) = shared.global(&summed, config)?;
    let fleets = fleets
        .iter()
        .map(|rows| shared.fleet(rows, &summed, config))
        .collect::<Result<Vec<_>>>()?;
    let privacy = config
        .privacy
        .as_ref()
        .map(|p| p.report(m, RELEASES))
        .transpose()?;
    Ok(LinearFederation {
        global,
        global_error,
        fleets,
        privacy,
    })
}
