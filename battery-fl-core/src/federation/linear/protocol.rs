//! The steps of the linear federation as each party runs them: what a fleet sends to the
//! first secure sum ([`linear_share`]), what every party reads off it ([`SharedLinear`]), what
//! a fleet sends to the second ([`SharedLinear::errors`]), and what the global model and each
//! fleet's own models are after it ([`SharedLinear::global`], [`SharedLinear::fleet`]).
//! [`federate_linear`](super::federate_linear) runs them in one process; the Flower apps run
//! the same steps on many machines.

use super::choice::{choose, mean, pick};
use super::{ChemistryChoice, LinearChoice, LinearFleet};
use crate::dp::GaussianNoise;
use crate::error::{Error, Result};
use crate::model::{
    available_sets, loo_squared_errors, select_linear, statistics_sensitivity, FeatureSet,
    LinearConfig, LinearModel, LinearRow, LinearStatistics, Standardization, LABEL_GROUPS,
};

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
        Some(_) => config.ranges.unmap(summed, &config.features_in_use()),
        None => LinearStatistics::from_vec(summed.to_vec()),
    }
}

/// Gaussian releases of a private linear federation: the statistics, then the
/// leave-one-fleet-out errors.
pub const RELEASES: u64 = 2;

/// Under privacy, the largest squared ln-life error one cell adds to a validation sum (a
/// factor 1.65 off): small, since the noise of that sum grows with it.
pub const ERROR_CLIP: f64 = 0.25;

/// What every party reads off the first sum: the total, the shared standardization and the
/// candidate settings (feature set, `λ`) of the shared model.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedLinear {
    /// The federation's statistics.
    pub total: LinearStatistics,
    /// Standardization of the features over all cells.
    pub standardization: Standardization,
    sets: Vec<FeatureSet>,
    candidates: Vec<(FeatureSet, f64)>,
}

impl SharedLinear {
    /// Read the total (of [`linear_total`]).
    pub fn new(total: LinearStatistics, config: &LinearConfig) -> Result<Self> {
        config.validate()?;
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
        Ok(SharedLinear {
            total,
            standardization,
            sets,
            candidates,
        })
    }

    /// The candidate settings, in the order of the error vectors.
    pub fn candidates(&self) -> &[(FeatureSet, f64)] {
        &self.candidates
    }

    /// The other fleets' statistics, as a fleet computes them at home from its own (repaired
    /// into valid statistics when noisy).
    fn others(&self, own: &LinearStatistics, config: &LinearConfig) -> Result<LinearStatistics> {
        match config.privacy {
            Some(_) => config.ranges.unmap(
                &config.ranges.mapped(&self.total.subtract(own))?,
                &config.features_in_use(),
            ),
            None => Ok(self.total.subtract(own)),
        }
    }

    /// What a fleet sends to the second secure sum: for each candidate, the summed squared
    /// ln-life error on its cells `rows` of the model fitted on the other fleets' cells. Under
    /// privacy each cell's error is clipped to [`ERROR_CLIP`] (so its share has norm at most
    /// `ERROR_CLIP √candidates`) and the fleet's share of the noise is added from `noise`.
    pub fn errors(
        &self,
        rows: &[LinearRow],
        config: &LinearConfig,
        fleets: usize,
        noise: Option<&mut GaussianNoise>,
    ) -> Result<Vec<f64>> {
        let others = self.others(&linear_statistics(rows, config)?, config)?;
        let exact = LinearStatistics::from_rows(rows)?;
        let clip = config.privacy.as_ref().map(|_| ERROR_CLIP);
        let mut v = Vec::with_capacity(self.candidates.len());
        for &(set, lambda) in &self.candidates {
            // (under privacy a set most cells have may be one this fleet's cells lack: the
            // model is of no use to it, worth the clipped error)
            v.push(match clip {
                Some(c) if !exact.has_features(set) => c * rows.len() as f64,
                _ => {
                    let model = fit(&others, &self.standardization, set, lambda, None, config)?;
                    squared_error(&model, rows, clip)?
                }
            });
        }
        if let Some(p) = &config.privacy {
            let noise = noise
                .ok_or_else(|| Error::config("privacy", "a private share needs a noise source"))?;
            let z = p.noise_multiplier_for(fleets, RELEASES)?;
            let sensitivity = ERROR_CLIP * (self.candidates.len() as f64).sqrt();
            let std = p.fleet_std(z, sensitivity, fleets);
            for x in &mut v {
                *x += noise.sample(std)?;
            }
        }
        Ok(v)
    }

    /// The ridge toward the other fleets' model: over the feature sets of `priors` (each with
    /// its prior, fitted on the other fleets) and `λ` in the grid or `∞`, the settings with the
    /// least leave-one-out error on `rows`, fitted on them.
    fn personalize(
        &self,
        rows: &[LinearRow],
        priors: &[(FeatureSet, LinearModel)],
        config: &LinearConfig,
    ) -> Result<LinearModel> {
        let stats = LinearStatistics::from_rows(rows)?;
        let mut best: Option<(f64, FeatureSet, f64, &LinearModel)> = None;
        for (set, prior) in priors {
            for lambda in config.lambdas.iter().copied().chain([f64::INFINITY]) {
                let e = loo_squared_errors(rows, &self.standardization, *set, lambda, Some(prior))?;
                let m = mean(&e);
                if best.as_ref().is_none_or(|b| m < b.0) {
                    best = Some((m, *set, lambda, prior));
                }
            }
        }
        let (_, set, lambda, prior) = best.ok_or_else(|| Error::NotEnoughData {
            what: "a feature set the fleet's cells and the others' share".into(),
            needed: 1,
            got: 0,
        })?;
        fit(
            &stats,
            &self.standardization,
            set,
            lambda,
            Some(prior),
            config,
        )
    }

    /// Squared ln-life errors on each of a fleet's `rows` of the model fitted with `set` and
    /// `lambda` on every fleet's cells but that one (the total minus its statistics, computed
    /// at home): the global model's leave-one-out error on the fleet's cells.
    fn held_out_errors(
        &self,
        rows: &[LinearRow],
        set: FeatureSet,
        lambda: f64,
        config: &LinearConfig,
    ) -> Result<Vec<f64>> {
        rows.iter()
            .map(|r| {
                let one = std::slice::from_ref(r);
                let rest = self.others(&linear_statistics(one, config)?, config)?;
                let model = fit(&rest, &self.standardization, set, lambda, None, config)?;
                held_out_error(&model, r)
            })
            .collect()
    }

    fn check_errors(&self, errors: &[f64]) -> Result<()> {
        if errors.len() != self.candidates.len() || errors.iter().any(|e| !e.is_finite()) {
            return Err(Error::Shape {
                what: "summed validation errors (finite)".into(),
                expected: vec![self.candidates.len()],
                got: vec![errors.len()],
            });
        }
        Ok(())
    }

    fn mean_error(&self, errors: &[f64], k: usize) -> f64 {
        errors[k] / self.total.count().max(1.0)
    }

    /// Index of the candidate with the least summed error.
    fn best(&self, errors: &[f64]) -> usize {
        (0..self.candidates.len())
            .min_by(|&a, &b| {
                self.mean_error(errors, a)
                    .total_cmp(&self.mean_error(errors, b))
            })
            .unwrap_or(0)
    }

    /// The best `λ` of a feature set, for the priors.
    fn prior_lambda(&self, set: FeatureSet, errors: &[f64]) -> Option<f64> {
        (0..self.candidates.len())
            .filter(|&k| self.candidates[k].0 == set)
            .min_by(|&a, &b| {
                self.mean_error(errors, a)
                    .total_cmp(&self.mean_error(errors, b))
            })
            .map(|k| self.candidates[k].1)
    }

    /// The global model from the summed errors (of [`errors`](Self::errors)): the best
    /// settings fitted on the total, and their mean leave-one-fleet-out error.
    pub fn global(&self, errors: &[f64], config: &LinearConfig) -> Result<(LinearModel, f64)> {
        self.check_errors(errors)?;
        let best = self.best(errors);
        let (set, lambda) = self.candidates[best];
        Ok((
            self.fit_total(set, lambda, config)?,
            self.mean_error(errors, best),
        ))
    }

    /// The model with `set` and `lambda` fitted on every fleet's cells.
    fn fit_total(
        &self,
        set: FeatureSet,
        lambda: f64,
        config: &LinearConfig,
    ) -> Result<LinearModel> {
        fit(
            &self.total,
            &self.standardization,
            set,
            lambda,
            None,
            config,
        )
    }

    /// A fleet's own models from its cells `rows` and the summed errors, computed at home:
    /// its local model, its ridge toward the other fleets' model, the other fleets' model,
    /// the global model, and which it keeps (see [`federate_linear`](super::federate_linear)).
    pub fn fleet(
        &self,
        rows: &[LinearRow],
        errors: &[f64],
        config: &LinearConfig,
    ) -> Result<LinearFleet> {
        self.check_errors(errors)?;
        let best = self.best(errors);
        let own = linear_statistics(rows, config)?;
        let others = self.others(&own, config)?;
        let stats = &LinearStatistics::from_rows(rows)?;
        // the local selection and its nested runs choose among the sets every one of the
        // fleet's cells gives, so the model fitted without a cell can always predict it
        let own_sets = LinearConfig {
            feature_sets: available_sets(stats, config),
            ..config.clone()
        };
        let (local, _) = select_linear(rows, &own_sets)?;
        let local_errors = nested_errors(rows, |rest| Ok(select_linear(rest, &own_sets)?.0))?;
        // the shared settings, or (under privacy, if this fleet's cells lack a feature of
        // them) the best validated settings its cells can use
        let (set, lambda) = match (0..self.candidates.len())
            .filter(|&k| stats.has_features(self.candidates[k].0))
            .min_by(|&a, &b| {
                let key = |k: usize| (k != best, self.mean_error(errors, k));
                key(a)
                    .partial_cmp(&key(b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            }) {
            Some(k) => self.candidates[k],
            None => self.candidates[best],
        };
        let shared = fit(&others, &self.standardization, set, lambda, None, config)?;
        let shared_errors = loo_squared_errors(
            rows,
            &self.standardization,
            set,
            f64::INFINITY,
            Some(&shared),
        )?;
        let global = self.fit_total(set, lambda, config)?;
        let global_errors = self.held_out_errors(rows, set, lambda, config)?;
        let mut priors = Vec::new();
        for &set in self.sets.iter().filter(|s| stats.has_features(**s)) {
            if let Some(lp) = self.prior_lambda(set, errors) {
                priors.push((
                    set,
                    fit(&others, &self.standardization, set, lp, None, config)?,
                ));
            }
        }
        let personalized = self.personalize(rows, &priors, config)?;
        let personalized_errors =
            nested_errors(rows, |rest| self.personalize(rest, &priors, config))?;
        let personalized_error = mean(&personalized_errors);
        let mut groups: Vec<Option<usize>> = rows.iter().map(|r| r.cathode).collect();
        groups.sort_unstable();
        groups.dedup();
        // the default is the model fitted exactly on the most cells (see `choice`)
        let scored = [
            (LinearChoice::Local, local_errors.as_slice()),
            (LinearChoice::Personalized, personalized_errors.as_slice()),
            (LinearChoice::Global, global_errors.as_slice()),
        ];
        let (default, challengers) = match config.privacy {
            None => (scored[2], [scored[0], scored[1]]),
            Some(_) => (scored[0], [scored[1], scored[2]]),
        };
        let margin = config.choice_margin;
        let fleet_choice = choose(rows, &|_| true, default, &challengers, margin).0;
        let choices = groups
            .into_iter()
            .map(|g| {
                let in_group = |r: &LinearRow| r.cathode == g;
                let (choice, error) = if config.per_chemistry_choice {
                    choose(rows, &in_group, default, &challengers, margin)
                } else {
                    let errors = scored
                        .into_iter()
                        .find(|(c, _)| *c == fleet_choice)
                        .map_or(default.1, |(_, e)| e);
                    (fleet_choice, mean(&pick(rows, &in_group, errors)))
                };
                ChemistryChoice {
                    cathode: g.map(|g| LABEL_GROUPS[g].to_string()),
                    cells: rows.iter().filter(|r| in_group(r)).count(),
                    choice,
                    error,
                }
            })
            .collect();
        Ok(LinearFleet {
            local_error: mean(&local_errors),
            local,
            personalized_error,
            personalized,
            shared_error: mean(&shared_errors),
            shared,
            global_error: mean(&global_errors),
            global,
            choices,
        })
    }
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

/// Folds of [`nested_errors`]: leave-one-out up to this many cells, this many folds above.
const NESTED_FOLDS: usize = 20;

/// Squared ln-life errors of a whole selection procedure, nested: each row is predicted by
/// `select` run without it (leave-one-out up to [`NESTED_FOLDS`] rows, then that many folds,
/// row `i` in fold `i mod folds`, so the cost stays `folds` selections for large fleets).
/// The plain leave-one-out error of the model a selection picked is the least of many
/// candidates' errors, biased low, and the more so the more candidates (Cawley and Talbot,
/// JMLR 2010); comparing it with the global model's leave-one-out error would favour the
/// fleet's own fits for nothing. A fleet with a single cell cannot hold one out: its own fits
/// score infinite (its local fit's plain leave-one-out error was infinite too), and the choice
/// needs two cells, so it keeps its default.
fn nested_errors(
    rows: &[LinearRow],
    select: impl Fn(&[LinearRow]) -> Result<LinearModel>,
) -> Result<Vec<f64>> {
    if rows.len() < 2 {
        return Ok(vec![f64::INFINITY; rows.len()]);
    }
    let folds = rows.len().min(NESTED_FOLDS);
    let mut errors = vec![f64::INFINITY; rows.len()];
    for k in 0..folds {
        let rest: Vec<LinearRow> = rows
            .iter()
            .enumerate()
            .filter(|&(j, _)| j % folds != k)
            .map(|(_, r)| r.clone())
            .collect();
        let model = select(&rest)?;
        for (i, r) in rows.iter().enumerate().filter(|&(j, _)| j % folds == k) {
            errors[i] = held_out_error(&model, r)?;
        }
    }
    Ok(errors)
}

/// Squared ln-life error of `model` on a row it was not fitted on (a failed prediction,
/// NaN, counts as infinite).
fn held_out_error(model: &LinearModel, row: &LinearRow) -> Result<f64> {
    let e = (row.require_label()? - model.predict_log(row)?).powi(2);
    Ok(if e.is_nan() { f64::INFINITY } else { e })
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
