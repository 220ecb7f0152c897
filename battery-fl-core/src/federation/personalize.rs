//! Personalization: the model each fleet ends with, beside the global one (see
//! [`Personalization`]). A fleet's personal state never leaves the fleet: the in-process
//! [`Simulation`](super::Simulation) holds it per fleet, as a Flower node would in its own
//! state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "tch")]
use super::config::{FederationConfig, Personalization};
#[cfg(feature = "tch")]
use super::job_seed;
use crate::dp::RdpAccountant;
#[cfg(feature = "tch")]
use crate::error::Error;
use crate::error::Result;
#[cfg(feature = "tch")]
use crate::model::{BatLiNet, Dataset, Metrics, TrainOptions};
use crate::model::{InputScales, LabelTransform, ModelParams};

/// The models a fleet chooses among with `Personalization::Auto` (local, global, fine-tuned,
/// Ditto) and `Personalization::AutoHead` (local, own head).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    /// The fleet's own model, trained on its cells alone.
    Local,
    /// The global federated model.
    Global,
    /// The global model fine-tuned on the fleet's cells.
    FineTune,
    /// The fleet's Ditto model (trained with a pull toward the global one).
    Ditto,
    /// The federated encoders with the fleet's own head (`auto_head`).
    Head,
}

impl Candidate {
    /// The snake-case name (`local`, `global`, `fine_tune`, `ditto`, `head`).
    pub fn name(self) -> &'static str {
        match self {
            Candidate::Local => "local",
            Candidate::Global => "global",
            Candidate::FineTune => "fine_tune",
            Candidate::Ditto => "ditto",
            Candidate::Head => "head",
        }
    }
}

/// A model a fleet uses: weights and the label transform and input scales they read labels
/// and inputs with (the federation's shared ones, or with a local model the fleet's own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetModel {
    /// The weights.
    pub params: ModelParams,
    /// The label transform.
    pub labels: LabelTransform,
    /// The input scales.
    pub scales: InputScales,
}

#[cfg(feature = "tch")]
impl FleetModel {
    /// `params` with the statistics `worker` holds (the federation's shared ones).
    pub(crate) fn shared(worker: &BatLiNet, params: ModelParams) -> Result<Self> {
        let missing = || {
            Error::config(
                "statistics",
                "the worker has no label transform or input scales",
            )
        };
        Ok(FleetModel {
            params,
            labels: worker.label_transform().ok_or_else(missing)?,
            scales: worker.input_scales().cloned().ok_or_else(missing)?,
        })
    }

    /// The weights and statistics of a trained `model`.
    pub(crate) fn of(model: &BatLiNet) -> Result<Self> {
        Self::shared(model, model.params()?)
    }

    /// Run `f` with this model loaded in `worker`; the worker's statistics are restored after.
    pub(crate) fn with_loaded<R>(
        &self,
        worker: &mut BatLiNet,
        f: impl FnOnce(&mut BatLiNet) -> Result<R>,
    ) -> Result<R> {
        let saved = (worker.label_transform(), worker.input_scales().cloned());
        worker.set_input_scales(self.scales.clone())?;
        worker.set_label_transform(self.labels);
        let out = worker.set_params(&self.params).and_then(|()| f(worker));
        if let (Some(labels), Some(scales)) = saved {
            worker.set_label_transform(labels);
            worker.set_input_scales(scales)?;
        }
        out
    }

    /// A stand-alone [`BatLiNet`] holding this model (built through `worker`).
    pub fn to_batlinet(&self, worker: &mut BatLiNet) -> Result<BatLiNet> {
        self.with_loaded(worker, |w| BatLiNet::from_bytes(&w.to_bytes()?))
    }
}

/// One fleet's personal state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// Personal weights: with `head` and `auto_head`, the fleet's own head (in a full set of
    /// weights); with
    /// `ditto` and `auto`, the fleet's Ditto model. `None` until the fleet first trains.
    pub personal: Option<ModelParams>,
    /// With `auto` and `auto_head`: the fleet's own model, trained alone exactly as a fleet outside
    /// the federation would (its own label transform and input scales), on its fitting cells (to
    /// validate) and on all its training cells (to use).
    pub local: Option<(FleetModel, FleetModel)>,
    /// With `auto` and `auto_head`: the candidate the fleet chose on its validation cells, and each
    /// candidate's validation RMSE.
    pub choice: Option<(Candidate, BTreeMap<Candidate, f64>)>,
    /// The model the fleet uses now (after the last round).
    pub current: Option<FleetModel>,
    /// With `auto` and `auto_head`: the chosen candidate as it was scored, trained without the
    /// fleet's validation cells (the local model on its fitting cells, the global model fine-tuned
    /// on them; the global, Ditto and own-head models are the same as `current`). With
    /// `calibration_holdout` in the other modes: `current` itself, which trained without them.
    /// Its errors on the validation cells calibrate the fleet's intervals.
    #[serde(default)]
    pub validated: Option<FleetModel>,
    /// With record-level DP-SGD: the fleet's accountant (every private step its updates took).
    #[serde(default)]
    pub private_spent: Option<RdpAccountant>,
}

#[cfg(feature = "tch")]
impl FleetState {
    /// The model the fleet uses now (`current`), as a stand-alone [`BatLiNet`] built
    /// through `worker`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] before the fleet has chosen a model (no round evaluated).
    pub fn current_model(&self, worker: &mut BatLiNet) -> Result<BatLiNet> {
        match &self.current {
            Some(m) => m.to_batlinet(worker),
            None => Err(Error::config(
                "state",
                "the fleet has no model yet: evaluate a round first",
            )),
        }
    }
}

/// True for the weights of the shared linear head (personal in `head` mode).
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn is_head(name: &str) -> bool {
    name.starts_with("head.")
}

/// `global` with the head weights taken from `personal`.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn with_head(global: &ModelParams, personal: &ModelParams) -> Result<ModelParams> {
    global.check_compatible(personal)?;
    let names: Vec<String> = global.names().map(String::from).collect();
    let mut out = global.clone();
    for ((name, dst), src) in names.iter().zip(out.values_mut()).zip(personal.params()) {
        if is_head(name) {
            dst.copy_from_slice(&src.data);
        }
    }
    Ok(out)
}

/// `delta` with its head entries zeroed: only the encoders are federated.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn zero_head(delta: &mut ModelParams) {
    let names: Vec<String> = delta.names().map(String::from).collect();
    for (name, values) in names.iter().zip(delta.values_mut()) {
        if is_head(name) {
            values.fill(0.0);
        }
    }
}

#[cfg(feature = "tch")]
/// Deterministic split of a fleet's training cells into fitting and validation positions (`auto`,
/// `auto_head`, `calibration_holdout`): every `1/fraction`-th cell of a seeded order validates, at least one cell each.
pub(crate) fn validation_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut crate::rng::seeded(seed));
    let n_val = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let (val, fit) = order.split_at(n_val.min(n));
    let (mut fit, mut val) = (fit.to_vec(), val.to_vec());
    fit.sort_unstable();
    val.sort_unstable();
    (fit, val)
}

#[cfg(feature = "tch")]
/// Train `worker` from `start` on `cells` for `epochs` (with a proximal pull `mu` toward
/// `center` when given) and return its weights.
pub(crate) fn train_from(
    worker: &mut BatLiNet,
    start: &ModelParams,
    cells: &Dataset,
    epochs: usize,
    seed: u64,
    pull: Option<(f64, &ModelParams)>,
) -> Result<ModelParams> {
    worker.set_params(start)?;
    let opts = TrainOptions {
        epochs: Some(epochs),
        seed: Some(seed),
        mu: pull.map_or(0.0, |p| p.0),
        global: pull.filter(|p| p.0 > 0.0).map(|p| p.1.clone()),
        ..Default::default()
    };
    worker.train(cells, &opts)?;
    worker.params()
}

#[cfg(feature = "tch")]
/// RMSE of `model` on `targets` with references from `references`, and its predictions.
pub(crate) fn rmse_of(
    worker: &mut BatLiNet,
    model: &FleetModel,
    targets: &Dataset,
    references: &Dataset,
    k: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>)> {
    let k = k.min(references.len()).max(1);
    let p = model.with_loaded(worker, |w| {
        let selection = w.config().selection;
        w.predict_with(targets, references, k, selection, seed)
    })?;
    Ok((Metrics::compute(&p, &targets.require_labels()?)?.rmse, p))
}

/// Per cell, `(ln y − ln ŷ)²` of `predictions` (cycles) against `lives`; a prediction that
/// is not a number counts as an infinitely bad one.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn squared_ln_errors(lives: &[f64], predictions: &[f64]) -> Vec<f64> {
    lives
        .iter()
        .zip(predictions)
        .map(|(y, p)| {
            let e = (y.ln() - p.ln()).powi(2);
            if e.is_nan() {
                f64::INFINITY
            } else {
                e
            }
        })
        .collect()
}

/// The candidate `auto` and `auto_head` keep, from each candidate's squared ln errors on the
/// validation cells: the fleet's own model unless a shared candidate beats it by `margin`
/// standard errors of the mean paired difference (the rule of
/// [`federation::choice`](super::choice)), the least-error one among those that do. Without
/// a local candidate (none in a simulation: a fleet that validates has its own model) the
/// first candidate (the global model with `auto`) is the default; without any, the global
/// model. A fleet needs two validation cells to leave its own model for a mere gain; one
/// cell suffices only where its own model fails (no prediction) and a shared one does not.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn choose(errors: &[(Candidate, Vec<f64>)], margin: f64) -> Candidate {
    let Some(at) = errors
        .iter()
        .position(|(c, _)| *c == Candidate::Local)
        .or((!errors.is_empty()).then_some(0))
    else {
        return Candidate::Global;
    };
    let (default, default_errors) = &errors[at];
    let challengers: Vec<(Candidate, Vec<f64>)> = errors
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, c)| c.clone())
        .collect();
    super::choice::choose((*default, default_errors), &challengers, margin).0
}

#[cfg(feature = "tch")]
/// The model fleet `f` uses this round under `cfg.personalization`, given the new global
/// weights: its own for `head` and `ditto`, the global fine-tuned on its cells for
/// `fine_tune`, the validated choice for `auto` and `auto_head`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn personal_params(
    cfg: &FederationConfig,
    worker: &mut BatLiNet,
    global: &ModelParams,
    state: &mut FleetState,
    fit: &Dataset,
    val: Option<&Dataset>,
    all_train: &Dataset,
    round: usize,
    fleet: usize,
) -> Result<FleetModel> {
    let epochs = cfg.personal_epochs.unwrap_or(cfg.local_epochs);
    let seed = job_seed(cfg.seed ^ 0x5EED_9E45, round, fleet);
    let params = match cfg.personalization {
        Personalization::None => global.clone(),
        // on the fitting cells: all training cells unless `calibration_holdout` keeps some out
        Personalization::FineTune => train_from(worker, global, fit, epochs, seed, None)?,
        Personalization::Head => match &state.personal {
            Some(p) => with_head(global, p)?,
            None => global.clone(),
        },
        Personalization::Ditto => state.personal.clone().unwrap_or_else(|| global.clone()),
        Personalization::Auto | Personalization::AutoHead => {
            let heads = cfg.personalization == Personalization::AutoHead;
            // the federated encoders with the fleet's own head, once it has trained one (the
            // global head never trains when heads stay home: it is no candidate)
            let own_head = match &state.personal {
                Some(p) if heads => Some(with_head(global, p)?),
                _ => None,
            };
            let Some(val) = val else {
                // a one-cell fleet has nothing to validate on: the shared model
                return FleetModel::shared(worker, own_head.unwrap_or_else(|| global.clone()));
            };
            let k = cfg.inference_references;
            let mut candidates = if heads {
                match &own_head {
                    Some(p) => vec![(Candidate::Head, FleetModel::shared(worker, p.clone())?)],
                    None => Vec::new(),
                }
            } else {
                let tuned = train_from(worker, global, fit, epochs, seed, None)?;
                let ditto = state.personal.clone().unwrap_or_else(|| global.clone());
                vec![
                    (
                        Candidate::Global,
                        FleetModel::shared(worker, global.clone())?,
                    ),
                    (Candidate::FineTune, FleetModel::shared(worker, tuned)?),
                    (Candidate::Ditto, FleetModel::shared(worker, ditto)?),
                ]
            };
            if let Some((local_fit, _)) = &state.local {
                candidates.push((Candidate::Local, local_fit.clone()));
            }
            let lives = val.require_labels()?;
            let mut scores = BTreeMap::new();
            let mut errors = Vec::with_capacity(candidates.len());
            for (c, model) in &candidates {
                let (rmse, p) = rmse_of(worker, model, val, fit, k, seed)?;
                scores.insert(*c, rmse);
                errors.push((*c, squared_ln_errors(&lives, &p)));
            }
            let best = choose(&errors, cfg.choice_margin);
            state.choice = Some((best, scores));
            state.validated = candidates
                .iter()
                .find(|(c, _)| *c == best)
                .map(|(_, m)| m.clone());
            // the chosen kind, refit on all training cells where that is the fleet's to do
            match best {
                Candidate::Local => match &state.local {
                    Some((_, on_all)) => return Ok(on_all.clone()),
                    None => global.clone(),
                },
                Candidate::FineTune => train_from(worker, global, all_train, epochs, seed, None)?,
                Candidate::Global => global.clone(),
                Candidate::Ditto => state.personal.clone().unwrap_or_else(|| global.clone()),
                Candidate::Head => own_head.unwrap_or_else(|| global.clone()),
            }
        }
    };
    let model = FleetModel::shared(worker, params)?;
    if val.is_some() && !cfg.personalization.chooses() {
        // `calibration_holdout`: the model the fleet uses never saw its validation cells
        state.validated = Some(model.clone());
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_weights_are_swapped_and_zeroed_alone() -> Result<()> {
        let p = |h: f32, e: f32| {
            ModelParams::new(vec![
                ("a.conv1.weight".into(), vec![2], vec![e, e]),
                ("head.weight".into(), vec![1, 2], vec![h, h]),
            ])
        };
        let mixed = with_head(&p(0.0, 1.0)?, &p(5.0, 9.0)?)?;
        assert_eq!(mixed.flatten(), vec![1.0, 1.0, 5.0, 5.0]);
        let mut d = p(3.0, 2.0)?;
        zero_head(&mut d);
        assert_eq!(d.flatten(), vec![2.0, 2.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn auto_leaves_local_only_for_a_clear_gain() {
        let local = vec![0.04, 0.09, 0.01, 0.16];
        // better on every cell by about the same: a clear gain
        let steady = vec![0.02, 0.06, 0.0, 0.13];
        // better on the mean but not on every cell: noise at a margin of 2
        let noisy = vec![0.0, 0.0, 0.09, 0.0];
        let of = |c: Candidate, e: &Vec<f64>| (c, e.clone());
        let pick = |global: &Vec<f64>, margin| {
            choose(
                &[of(Candidate::Global, global), of(Candidate::Local, &local)],
                margin,
            )
        };
        assert_eq!(pick(&steady, 2.0), Candidate::Global);
        assert_eq!(pick(&noisy, 2.0), Candidate::Local);
        assert_eq!(pick(&noisy, 0.0), Candidate::Global);
        // a tie is no gain; a shared model that failed on a cell (no prediction) never wins
        assert_eq!(pick(&local, 0.0), Candidate::Local);
        let squared = squared_ln_errors(&[100.0; 4], &[100.0, 100.0, 100.0, f64::NAN]);
        assert_eq!(squared, vec![0.0, 0.0, 0.0, f64::INFINITY]);
        assert_eq!(pick(&squared, 0.0), Candidate::Local);
        // without a local candidate the first (the global model) is the default: fine-tuning
        // with the least mean error but a noisy gain does not replace it at margin 2
        let no_local = [
            of(Candidate::Global, &local),
            of(Candidate::FineTune, &noisy),
        ];
        assert_eq!(choose(&no_local, 2.0), Candidate::Global);
        assert_eq!(choose(&no_local, 0.0), Candidate::FineTune);
        assert_eq!(choose(&[], 2.0), Candidate::Global);
    }

    #[cfg(feature = "tch")]
    #[test]
    fn validation_split_is_deterministic_and_disjoint() {
        let (fit, val) = validation_split(16, 0.25, 3);
        assert_eq!((fit.len(), val.len()), (12, 4));
        assert!(val.iter().all(|v| !fit.contains(v)));
        assert_eq!(validation_split(16, 0.25, 3), (fit, val));
        assert_eq!(validation_split(2, 0.25, 1).1.len(), 1);
    }
}
