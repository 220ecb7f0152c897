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
use crate::error::Result;
use crate::model::ModelParams;
#[cfg(feature = "tch")]
use crate::model::{BatLiNet, Dataset, Metrics, TrainOptions};

/// The models a fleet chooses among with [`Personalization::Auto`].
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
}

impl Candidate {
    /// The snake-case name (`local`, `global`, `fine_tune`, `ditto`).
    pub fn name(self) -> &'static str {
        match self {
            Candidate::Local => "local",
            Candidate::Global => "global",
            Candidate::FineTune => "fine_tune",
            Candidate::Ditto => "ditto",
        }
    }
}

/// One fleet's personal state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// Personal weights: with `head`, the fleet's own head (in a full set of weights); with
    /// `ditto` and `auto`, the fleet's Ditto model. `None` until the fleet first trains.
    pub personal: Option<ModelParams>,
    /// With `auto`: the fleet's own model trained on its fitting cells (to validate) and on
    /// all its training cells (to use).
    pub local: Option<(ModelParams, ModelParams)>,
    /// With `auto`: the candidate the fleet chose on its validation cells, and each
    /// candidate's validation RMSE.
    pub choice: Option<(Candidate, BTreeMap<Candidate, f64>)>,
    /// The weights the fleet uses now (after the last round).
    pub current: Option<ModelParams>,
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
/// Deterministic split of a fleet's training cells into fitting and validation positions
/// (`auto`): every `1/fraction`-th cell of a seeded order validates, at least one cell each.
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
/// RMSE of `params` on `targets` with references from `references`.
pub(crate) fn rmse_of(
    worker: &mut BatLiNet,
    params: &ModelParams,
    targets: &Dataset,
    references: &Dataset,
    k: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>)> {
    worker.set_params(params)?;
    let k = k.min(references.len()).max(1);
    let selection = worker.config().selection;
    let p = worker.predict_with(targets, references, k, selection, seed)?;
    Ok((Metrics::compute(&p, &targets.require_labels()?)?.rmse, p))
}

#[cfg(feature = "tch")]
/// The weights fleet `f` uses this round under `cfg.personalization`, given the new global
/// weights: its own for `head` and `ditto`, the global fine-tuned on its cells for
/// `fine_tune`, the validated choice for `auto`.
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
) -> Result<ModelParams> {
    let epochs = cfg.personal_epochs.unwrap_or(cfg.local_epochs);
    let seed = job_seed(cfg.seed ^ 0x5EED_9E45, round, fleet);
    match cfg.personalization {
        Personalization::None => Ok(global.clone()),
        Personalization::FineTune => train_from(worker, global, all_train, epochs, seed, None),
        Personalization::Head => match &state.personal {
            Some(p) => with_head(global, p),
            None => Ok(global.clone()),
        },
        Personalization::Ditto => Ok(state.personal.clone().unwrap_or_else(|| global.clone())),
        Personalization::Auto => {
            let Some(val) = val else {
                return Ok(global.clone());
            };
            let k = cfg.inference_references;
            let tuned = train_from(worker, global, fit, epochs, seed, None)?;
            let ditto = state.personal.clone().unwrap_or_else(|| global.clone());
            let mut scores = BTreeMap::new();
            let mut candidates = vec![
                (Candidate::Global, global.clone()),
                (Candidate::FineTune, tuned),
                (Candidate::Ditto, ditto),
            ];
            if let Some((local_fit, _)) = &state.local {
                candidates.push((Candidate::Local, local_fit.clone()));
            }
            for (c, params) in &candidates {
                scores.insert(*c, rmse_of(worker, params, val, fit, k, seed)?.0);
            }
            let best = scores
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                .map_or(Candidate::Global, |(c, _)| *c);
            state.choice = Some((best, scores));
            // the chosen kind, refit on all training cells where that is the fleet's to do
            match best {
                Candidate::Local => Ok(state
                    .local
                    .as_ref()
                    .map_or_else(|| global.clone(), |l| l.1.clone())),
                Candidate::FineTune => train_from(worker, global, all_train, epochs, seed, None),
                Candidate::Global => Ok(global.clone()),
                Candidate::Ditto => Ok(state.personal.clone().unwrap_or_else(|| global.clone())),
            }
        }
    }
}

/// What [`personal_setup`] gives each fleet.
#[cfg(feature = "tch")]
pub(crate) struct Setup {
    fit: Vec<Dataset>,
    val: Vec<Option<Dataset>>,
    states: Vec<FleetState>,
}

#[cfg(feature = "tch")]
impl Setup {
    /// Per fleet: the cells it federates on, its validation cells, its initial state.
    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(self) -> (Vec<Dataset>, Vec<Option<Dataset>>, Vec<FleetState>) {
        (self.fit, self.val, self.states)
    }
}

#[cfg(feature = "tch")]
/// Per fleet: the cells it federates on, its validation cells, and its initial personal
/// state (with `auto`, its own model trained on its fitting cells and on all of them, from
/// the global initial weights and the shared statistics).
pub(crate) fn personal_setup(
    config: &FederationConfig,
    worker: &mut BatLiNet,
    initial: &ModelParams,
    fleets: &[super::FleetData],
) -> Result<Setup> {
    let (mut fit, mut val, mut states) = (Vec::new(), Vec::new(), Vec::new());
    for (i, f) in fleets.iter().enumerate() {
        let mut state = FleetState::default();
        if config.personalization == Personalization::Auto && f.train.len() >= 2 {
            let seed = job_seed(config.seed, 0, usize::MAX - 3 - i);
            let (a, b) = validation_split(f.train.len(), config.validation_fraction, seed);
            let (fit_cells, val_cells) = (f.train.subset(&a)?, f.train.subset(&b)?);
            let epochs = worker.config().epochs;
            let seed = job_seed(config.seed, 0, i);
            let on_fit = train_from(worker, initial, &fit_cells, epochs, seed, None)?;
            let on_all = train_from(worker, initial, &f.train, epochs, seed, None)?;
            state.local = Some((on_fit, on_all));
            fit.push(fit_cells);
            val.push(Some(val_cells));
        } else {
            fit.push(f.train.clone());
            val.push(None);
        }
        states.push(state);
    }
    Ok(Setup { fit, val, states })
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
