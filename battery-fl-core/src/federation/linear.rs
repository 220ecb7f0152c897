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
//! 3. Personalization, per fleet, on its own cells only, with three models: its local model
//!    ([`select_linear`]); the *personalized* one, a ridge toward the other fleets' model
//!    (feature set and `λ` in the grid or `∞` by the least leave-one-out error on all of its
//!    cells); and the *shared* one, the other fleets' model with the shared settings.
//! 4. The fleet keeps the model with the least leave-one-out error on its cells (closed form;
//!    for the shared model a plain out-of-sample error), its local model on a tie: in
//!    expectation no fleet ends worse than alone. With
//!    [`LinearConfig::per_chemistry_choice`] (genome-aware) it chooses for each cathode
//!    chemistry on its cells of that chemistry, so a minority chemistry is not decided by the
//!    majority's cells. A chemistry the fleet has no cell of is predicted by the shared model.
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
use crate::dp::{check_mode, GaussianNoise, RecordPrivacyReport};
use crate::error::{Error, Result};
use crate::model::{
    available_sets, loo_squared_errors, select_linear, statistics_sensitivity, Calibration,
    FeatureSet, LinearConfig, LinearModel, LinearPrediction, LinearRow, LinearStatistics,
    Standardization, LABEL_GROUPS,
};

/// Which of its models a fleet uses for a chemistry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearChoice {
    /// Its own model.
    Local,
    /// Its ridge toward the other fleets' model.
    Personalized,
    /// The other fleets' model as it is.
    Shared,
}

impl LinearChoice {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            LinearChoice::Local => "local",
            LinearChoice::Personalized => "personalized",
            LinearChoice::Shared => "shared",
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
    /// Mean squared leave-one-out error of ln(life) of that model on those cells.
    pub error: f64,
}

/// What one fleet ends with (its personal state: it never leaves the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearFleet {
    /// Its model alone (settings by leave-one-out on its cells).
    pub local: LinearModel,
    /// Leave-one-out mean squared error of ln(life) of `local` on its cells.
    pub local_error: f64,
    /// Its ridge toward the other fleets' model.
    pub personalized: LinearModel,
    /// Leave-one-out error of `personalized`.
    pub personalized_error: f64,
    /// The other fleets' model (fitted at home from the total minus its own statistics).
    pub shared: LinearModel,
    /// Its (out-of-sample) error on the fleet's cells.
    pub shared_error: f64,
    /// Per cathode chemistry of its training cells, the model it uses.
    pub choices: Vec<ChemistryChoice>,
}

impl LinearFleet {
    /// The model the fleet uses for a cell of `cathode` (a [`LABEL_GROUPS`] index): its
    /// choice for that chemistry, the shared model for a chemistry it has no cell of.
    pub fn model_for(&self, cathode: Option<usize>) -> &LinearModel {
        let name = cathode.map(|g| LABEL_GROUPS[g].to_string());
        match self.choices.iter().find(|c| c.cathode == name) {
            Some(c) => self.model(c.choice),
            None => &self.shared,
        }
    }

    /// One of its three models.
    pub fn model(&self, choice: LinearChoice) -> &LinearModel {
        match choice {
            LinearChoice::Local => &self.local,
            LinearChoice::Personalized => &self.personalized,
            LinearChoice::Shared => &self.shared,
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
    /// models fitted on them, held-out errors for the shared model) and out-of-distribution
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
                    // the shared model, and a personalized one at lambda = inf, were fitted on
                    // the other fleets' cells: the fleet's own cells are held out for them
                    let fitted = model.lambda.is_finite() && !std::ptr::eq(model, &self.shared);
                    calibrations.push((model, model.calibrate(train, fitted)?));
                    calibrations.len() - 1
                }
            };
            out.extend(model.intervals(std::slice::from_ref(r), &calibrations[at].1, coverage)?);
        }
        Ok(out)
    }

    /// Leave-one-out mean squared error of ln(life) of its choices over all its cells.
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

/// A fleet's statistics as a linear federation sums them: of its rows as they are, or under
/// [`LinearConfig::privacy`] of its rows clamped to the public ranges with only the
/// features some candidate set reads ([`PublicRanges::statistics`](crate::model::PublicRanges::statistics)).
pub fn linear_statistics(rows: &[LinearRow], config: &LinearConfig) -> Result<LinearStatistics> {
    match config.privacy {
        Some(_) => config.ranges.statistics(rows, &config.features_in_use()),
        None => LinearStatistics::from_rows(rows),
    }
}

/// What a fleet sends to the first secure sum of a federation of `fleets` fleets: its
/// [`linear_statistics`] as they are, or under privacy in the mapped coordinates plus its
/// share of the Gaussian noise drawn from `noise` (required then).
pub fn linear_share(
    stats: &LinearStatistics,
    config: &LinearConfig,
    fleets: usize,
    noise: Option<&mut GaussianNoise>,
) -> Result<Vec<f64>> {
    let Some(p) = &config.privacy else {
        return Ok(stats.as_slice().to_vec());
    };
    let noise =
        noise.ok_or_else(|| Error::config("privacy", "a private share needs a noise source"))?;
    let z = p.noise_multiplier_for(fleets, RELEASES)?;
    let std = p.fleet_std(
        z,
        statistics_sensitivity(config.features_in_use().len()),
        fleets,
    );
    let mut v = config.ranges.mapped(stats)?;
    for x in &mut v {
        *x += noise.sample(std)?;
    }
    Ok(v)
}

/// The federation's statistics from the secure sum of the fleets' [`linear_share`]s.
pub fn linear_total(summed: &[f64], config: &LinearConfig) -> Result<LinearStatistics> {
    match config.privacy {
        Some(_) => config.ranges.unmap(summed),
        None => LinearStatistics::from_vec(summed.to_vec()),
    }
}

/// Gaussian releases of a private linear federation: the statistics, then the
/// leave-one-fleet-out errors.
const RELEASES: u64 = 2;

/// Under privacy, the largest squared ln-life error one cell adds to a validation sum (a
/// factor 1.65 off): small, since the noise of that sum grows with it.
pub const ERROR_CLIP: f64 = 0.25;

/// Fit the federated linear model on `fleets` (each a fleet's labelled training rows, at
/// least two fleets) and each fleet's personal model. Sums go through secure aggregation when
/// `secure` is given (seeded by `seed`).
///
/// ```
/// use battery_fl_core::data::synthetic::FleetConfig;
/// use battery_fl_core::data::LabelConfig;
/// use battery_fl_core::federation::federate_linear;
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
/// // each fleet keeps whichever model validates better on its own cells
/// assert!(fed.fleets.iter().all(|f| f.personal_error() <= f.local_error));
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
    let privacy = config.privacy.as_ref();
    let m = fleets.len();
    let mut private = match privacy {
        Some(p) => {
            check_mode(p.mode, secure.is_some())?;
            Some((p, p.noise_multiplier_for(m, RELEASES)?, p.noise()?))
        }
        None => None,
    };
    let own = fleets
        .iter()
        .map(|rows| linear_statistics(rows, config))
        .collect::<Result<Vec<_>>>()?;
    let mut vectors = Vec::with_capacity(m);
    for stats in &own {
        let noise = private.as_mut().map(|(_, _, noise)| noise);
        vectors.push(linear_share(stats, config, m, noise)?);
    }
    let total = linear_total(&secure_sum(&vectors, secure, seed)?, config)?;
    // the other fleets' statistics, as a fleet computes them at home (repaired into valid
    // statistics when noisy)
    let noisy = private.is_some();
    let others_of = |stats: &LinearStatistics| match noisy {
        true => config
            .ranges
            .unmap(&config.ranges.mapped(&total.subtract(stats))?),
        false => Ok(total.subtract(stats)),
    };
    let standardization = Standardization::from_statistics(&total)?;
    let sets = available_sets(&total, config);
    let candidates: Vec<(FeatureSet, f64)> = sets
        .iter()
        .flat_map(|&s| config.lambdas.iter().map(move |&l| (s, l)))
        .collect();
    if candidates.is_empty() {
        return Err(Error::NotEnoughData {
            what: "a feature set every cell of every fleet can give".into(),
            needed: 1,
            got: 0,
        });
    }

    // leave-one-fleet-out errors, computed by each fleet, summed securely
    // (under privacy each cell's squared errors are clipped to ERROR_CLIP, so its share of
    // the vector has norm at most ERROR_CLIP √candidates)
    let clip = private.as_ref().map(|_| ERROR_CLIP);
    let mut errors = Vec::with_capacity(m);
    for (rows, stats) in fleets.iter().zip(&own) {
        let others = others_of(stats)?;
        let mut v = Vec::with_capacity(candidates.len());
        let exact = LinearStatistics::from_rows(rows)?;
        for &(set, lambda) in &candidates {
            // (under privacy a set most cells have may be one this fleet's cells lack: the
            // model is of no use to it, worth the clipped error)
            v.push(match clip {
                Some(c) if !exact.has_features(set) => c * rows.len() as f64,
                _ => {
                    let model = fit(&others, &standardization, set, lambda, None, config)?;
                    squared_error(&model, rows, clip)?
                }
            });
        }
        if let Some((p, z, noise)) = &mut private {
            let sensitivity = ERROR_CLIP * (candidates.len() as f64).sqrt();
            let std = p.fleet_std(*z, sensitivity, m);
            for x in &mut v {
                *x += noise.sample(std)?;
            }
        }
        errors.push(v);
    }
    let summed = secure_sum(&errors, secure, seed.wrapping_add(1))?;
    let cells = total.count().max(1.0);
    let mean_error = |k: usize| summed[k] / cells;
    let best = (0..candidates.len())
        .min_by(|&a, &b| mean_error(a).total_cmp(&mean_error(b)))
        .unwrap_or(0);
    let (set, lambda) = candidates[best];
    let global = fit(&total, &standardization, set, lambda, None, config)?;
    // the best lambda of each feature set, for the priors
    let prior_lambda = |set: FeatureSet| {
        (0..candidates.len())
            .filter(|&k| candidates[k].0 == set)
            .min_by(|&a, &b| mean_error(a).total_cmp(&mean_error(b)))
            .map(|k| candidates[k].1)
    };

    let mut out = Vec::with_capacity(m);
    for (rows, own) in fleets.iter().zip(&own) {
        let others = others_of(own)?;
        let stats = &LinearStatistics::from_rows(rows)?;
        let (local, _) = select_linear(rows, config)?;
        let own_std = Standardization::from_statistics(stats)?;
        let local_errors =
            loo_squared_errors(rows, &own_std, local.feature_set, local.lambda, None)?;
        // the shared settings, or (under privacy, if this fleet's cells lack a feature of
        // them) the best validated settings its cells can use
        let (set, lambda) = match (0..candidates.len())
            .filter(|&k| stats.has_features(candidates[k].0))
            .min_by(|&a, &b| {
                let key = |k: usize| (k != best, mean_error(k));
                key(a)
                    .partial_cmp(&key(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            }) {
            Some(k) => candidates[k],
            None => (set, lambda),
        };
        let shared = fit(&others, &standardization, set, lambda, None, config)?;
        let shared_errors =
            loo_squared_errors(rows, &standardization, set, f64::INFINITY, Some(&shared))?;
        let mut best: Option<(f64, Vec<f64>, LinearModel)> = None;
        for &set in sets.iter().filter(|s| stats.has_features(**s)) {
            let Some(lp) = prior_lambda(set) else {
                continue;
            };
            let prior = fit(&others, &standardization, set, lp, None, config)?;
            for lambda in config.lambdas.iter().copied().chain([f64::INFINITY]) {
                let e = loo_squared_errors(rows, &standardization, set, lambda, Some(&prior))?;
                let m = mean(&e);
                if best.as_ref().is_none_or(|b| m < b.0) {
                    let model = fit(stats, &standardization, set, lambda, Some(&prior), config)?;
                    best = Some((m, e, model));
                }
            }
        }
        let (personalized_error, personalized_errors, personalized) =
            best.ok_or_else(|| Error::NotEnoughData {
                what: "a feature set the fleet's cells and the others' share".into(),
                needed: 1,
                got: 0,
            })?;
        let mut groups: Vec<Option<usize>> = rows.iter().map(|r| r.cathode).collect();
        groups.sort_unstable();
        groups.dedup();
        let candidates = [
            (LinearChoice::Local, &local_errors),
            (LinearChoice::Personalized, &personalized_errors),
            (LinearChoice::Shared, &shared_errors),
        ];
        // the least mean error over the cells `keep` selects; ties keep the earlier (local)
        let choose = |keep: &dyn Fn(&LinearRow) -> bool| {
            candidates
                .iter()
                .map(|(c, e)| {
                    let picked: Vec<f64> = rows
                        .iter()
                        .zip(e.iter())
                        .filter(|(r, _)| keep(r))
                        .map(|(_, e)| *e)
                        .collect();
                    (*c, mean(&picked))
                })
                .fold((LinearChoice::Local, f64::INFINITY), |b, c| {
                    if c.1 < b.1 {
                        c
                    } else {
                        b
                    }
                })
        };
        let fleet_choice = choose(&|_| true).0;
        let choices = groups
            .into_iter()
            .map(|g| {
                let in_group = |r: &LinearRow| r.cathode == g;
                let choice = if config.per_chemistry_choice {
                    choose(&in_group).0
                } else {
                    fleet_choice
                };
                let (_, errors) = candidates
                    .iter()
                    .find(|(c, _)| *c == choice)
                    .copied()
                    .unwrap_or(candidates[0]);
                let picked: Vec<f64> = rows
                    .iter()
                    .zip(errors.iter())
                    .filter(|(r, _)| in_group(r))
                    .map(|(_, e)| *e)
                    .collect();
                ChemistryChoice {
                    cathode: g.map(|g| LABEL_GROUPS[g].to_string()),
                    cells: picked.len(),
                    choice,
                    error: mean(&picked),
                }
            })
            .collect();
        out.push(LinearFleet {
            local_error: mean(&local_errors),
            local,
            personalized_error,
            personalized,
            shared_error: mean(&shared_errors),
            shared,
            choices,
        });
    }
    let privacy = match private {
        Some((p, z, _)) => Some(RecordPrivacyReport {
            epsilon: p.epsilon_for(z, m, RELEASES)?,
            delta: p.delta,
            noise_multiplier: z,
            mode: p.mode,
            releases: RELEASES,
        }),
        None => None,
    };
    Ok(LinearFederation {
        global,
        global_error: mean_error(best),
        fleets: out,
        privacy,
    })
}

fn fit(
    stats: &LinearStatistics,
    standardization: &Standardization,
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
    config: &LinearConfig,
) -> Result<LinearModel> {
    LinearModel::fit(
        stats,
        standardization,
        set,
        lambda,
        prior,
        &config.early_life,
    )
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Sum of squared ln-life errors of `model` on `rows`, each clipped to `clip` if given.
fn squared_error(model: &LinearModel, rows: &[LinearRow], clip: Option<f64>) -> Result<f64> {
    rows.iter()
        .map(|r| {
            let e = (r.require_label()? - model.predict_log(r)?).powi(2);
            Ok(clip.map_or(e, |c| e.min(c)))
        })
        .sum()
}
