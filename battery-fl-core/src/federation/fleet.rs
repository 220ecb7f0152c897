//! A fleet's side of a round: its local training and the model it ends with. The in-process
//! [`Simulation`](super::Simulation) runs one [`FleetClient`] per fleet; a Flower node runs
//! the same code through the Python binding, with the [`FleetState`] kept in the node's own
//! state (it never leaves the fleet).

use super::config::{FederationConfig, LabelScope, Personalization};
use super::job_seed;
use super::personalize::{
    personal_params, rmse_of, train_from, validation_split, with_head, zero_head, FleetModel,
    FleetState,
};
use super::private::PrivateTraining;
use crate::error::{Error, Result};
use crate::model::{BatLiNet, Dataset, LabelTransform, ModelParams, TrainOptions};

/// What a fleet sends after local training: its update and the weight it claims.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalUpdate {
    /// Trained minus received weights (with `head` personalization the head entries are
    /// zero: the head stays home).
    pub delta: ModelParams,
    /// Cells the fleet trained on (its FedAvg weight).
    pub num_examples: u64,
}

/// A fleet's evaluation of a round on its test cells (what a Flower node reports).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetEvaluation {
    /// RMSE (cycles) of the received weights as the fleet reads them.
    pub rmse: f64,
    /// RMSE (cycles) of the model the fleet uses; `rmse` when it keeps no model of its own.
    pub personalized_rmse: f64,
}

/// One fleet's training cells, split for `auto` and `auto_head` personalization (or
/// `calibration_holdout`), and the federation settings it trains with.
///
/// With [`Personalization::Auto`] and [`Personalization::AutoHead`], a `validation_fraction` of the
/// training cells (a seeded, deterministic choice) is held out to choose the fleet's model; the
/// rest are the cells the fleet federates on. Every other mode federates on all training cells,
/// unless `calibration_holdout` holds the same share out to calibrate its intervals.
#[derive(Debug, Clone)]
pub struct FleetClient {
    config: FederationConfig,
    index: usize,
    train: Dataset,
    fit: Dataset,
    val: Option<Dataset>,
    private: Option<PrivateTraining>,
}

impl FleetClient {
    /// The fleet at position `index` (its seeds depend on it) with its labelled training
    /// cells, which also serve as its inference references.
    ///
    /// # Errors
    /// Those of [`FederationConfig::validate_fleet`], and [`Error::NotEnoughData`] /
    /// [`Error::InvalidData`] for no or unlabelled training cells.
    pub fn new(config: &FederationConfig, index: usize, train: Dataset) -> Result<Self> {
        config.validate_fleet()?;
        if train.is_empty() {
            return Err(Error::NotEnoughData {
                what: format!("training cells of fleet {index}"),
                needed: 1,
                got: 0,
            });
        }
        train.require_labels()?;
        let (fit, val) = if config.holds_out_validation_cells() && train.len() >= 2 {
            let seed = job_seed(config.seed, 0, usize::MAX - 3 - index);
            let (a, b) = validation_split(train.len(), config.validation_fraction, seed);
            (train.subset(&a)?, Some(train.subset(&b)?))
        } else {
            (train.clone(), None)
        };
        Ok(FleetClient {
            config: config.clone(),
            index,
            train,
            fit,
            val,
            private: None,
        })
    }

    /// Train with record-level DP-SGD (the config's `record_privacy`), branch B's references
    /// and the statistics from the `public` cells, at the model's `batch_size`: fixes the
    /// noise multiplier for the whole run (see [`crate::federation`]'s private training).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] without `record_privacy` or when the target ε is out of
    /// reach; [`Error::BudgetExhausted`] when a given noise multiplier would spend more.
    pub fn with_public_cells(mut self, public: Dataset, batch_size: usize) -> Result<Self> {
        let Some(dp) = &self.config.record_privacy else {
            return Err(Error::config(
                "record_privacy",
                "public cells are for record-level DP-SGD: set record_privacy",
            ));
        };
        self.private = Some(PrivateTraining::new(
            dp,
            public,
            &self.fit,
            batch_size,
            self.config.rounds,
            self.config.local_epochs,
        )?);
        Ok(self)
    }

    /// ε per cell this fleet has spent (with record-level DP-SGD), given its `state`.
    pub fn record_epsilon(&self, state: &FleetState) -> Result<Option<f64>> {
        self.private
            .as_ref()
            .map(|p| p.epsilon(state.private_spent.as_ref()))
            .transpose()
    }

    /// The mechanism of the fleet's private training: (noise multiplier, sampling rate),
    /// when on.
    pub fn record_mechanism(&self) -> Option<(f64, f64)> {
        self.private
            .as_ref()
            .map(|p| (p.noise_multiplier(), p.sample_rate()))
    }

    /// The fleet's initial personal state: with `auto` and `auto_head`, its own model trained alone
    /// exactly as it would train outside the federation (a fresh `worker`-shaped model, its own
    /// label transform and input scales, the model's epochs and seed), on its fitting cells, to
    /// validate, and on all its training cells, to use; empty otherwise.
    pub fn initial_state(&self, worker: &BatLiNet) -> Result<FleetState> {
        let mut state = FleetState::default();
        if self.config.personalization.chooses() && self.val.is_some() {
            let alone = |cells: &Dataset| -> Result<FleetModel> {
                let mut m =
                    BatLiNet::new(worker.config().clone(), worker.featurizer_config().clone())?;
                m.fit(cells)?;
                FleetModel::of(&m)
            };
            state.local = Some((alone(&self.fit)?, alone(&self.train)?));
        }
        Ok(state)
    }

    /// Run `f` with the label transform the shared weights are read with in this fleet set
    /// in `worker` (its own with [`LabelScope::Fleet`]); the worker's is restored after.
    fn with_labels<R>(
        &self,
        worker: &mut BatLiNet,
        f: impl FnOnce(&mut BatLiNet) -> Result<R>,
    ) -> Result<R> {
        if self.config.label_scope == LabelScope::Shared {
            return f(worker);
        }
        // the fleet's own transform, from its fitting cells, grouped as the model groups
        let own = LabelTransform::fit_grouped(
            &self.fit.require_labels()?,
            &self.fit.cathodes(),
            worker.config().label_grouping,
        )?;
        let saved = worker.label_transform();
        worker.set_label_transform(own);
        let out = f(worker);
        if let Some(labels) = saved {
            worker.set_label_transform(labels);
        }
        out
    }

    /// Shared weights `params` as this fleet reads them: with the federation's label
    /// transform, or its own with [`LabelScope::Fleet`].
    pub fn shared_model(&self, worker: &mut BatLiNet, params: ModelParams) -> Result<FleetModel> {
        self.with_labels(worker, |w| FleetModel::shared(w, params))
    }

    /// True when the fleet keeps a state between rounds: the model it uses
    /// ([`FederationConfig::keeps_fleet_models`]) or the private steps of record-level DP-SGD.
    pub fn keeps_state(&self) -> bool {
        self.config.keeps_fleet_models() || self.private.is_some()
    }

    /// True when the fleet keeps the model it uses in its state
    /// ([`FederationConfig::keeps_fleet_models`]).
    pub fn keeps_fleet_model(&self) -> bool {
        self.config.keeps_fleet_models()
    }

    /// The cells the fleet federates on.
    pub fn fit_cells(&self) -> &Dataset {
        &self.fit
    }

    /// The cells `auto` and `auto_head` hold out to choose the fleet's model, or
    /// `calibration_holdout` to calibrate it (none otherwise).
    pub fn validation_cells(&self) -> Option<&Dataset> {
        self.val.as_ref()
    }

    /// All its training cells (its inference references).
    pub fn train_cells(&self) -> &Dataset {
        &self.train
    }

    /// Local training in round `round` from the `received` weights (the global or the
    /// fleet's group model): `local_epochs` epochs on the fitting cells with FedProx's
    /// proximal term when the strategy asks for it. The personal part is updated in `state`:
    /// with `head` and `auto_head` the trained head stays home (its delta is zeroed); with
    /// `ditto` and `auto`
    /// the fleet's Ditto model trains with a pull of strength `ditto_lambda` toward
    /// `received`. On error `state` is unchanged.
    pub fn train(
        &self,
        worker: &mut BatLiNet,
        received: &ModelParams,
        state: &mut FleetState,
        round: usize,
    ) -> Result<LocalUpdate> {
        self.with_labels(worker, |worker| {
            self.train_with(worker, received, state, round)
        })
    }

    fn train_with(
        &self,
        worker: &mut BatLiNet,
        received: &ModelParams,
        state: &mut FleetState,
        round: usize,
    ) -> Result<LocalUpdate> {
        let cfg = &self.config;
        let start = match &state.personal {
            Some(own) if cfg.personalization.keeps_head_home() => with_head(received, own)?,
            _ => received.clone(),
        };
        worker.set_params(&start)?;
        let mu = cfg.local_proximal_mu();
        let opts = TrainOptions {
            epochs: Some(cfg.local_epochs),
            seed: Some(job_seed(cfg.seed, round, self.index)),
            mu,
            global: (mu > 0.0).then(|| start.clone()),
            ..Default::default()
        };
        let private_spent = match &self.private {
            Some(p) => {
                let mut spent = state.private_spent.clone().unwrap_or_default();
                p.train(worker, &self.fit, &opts, &mut spent, round, self.index)?;
                Some(spent)
            }
            None if cfg.record_privacy.is_some() => {
                return Err(Error::config(
                    "record_privacy",
                    "needs public cells: FleetClient::with_public_cells (training would be \
                     noise-free)",
                ))
            }
            None => {
                worker.train(&self.fit, &opts)?;
                None
            }
        };
        let trained = worker.params()?;
        let mut delta = trained.sub(&start)?;
        let personal = match cfg.personalization {
            Personalization::Head | Personalization::AutoHead => {
                zero_head(&mut delta);
                Some(trained)
            }
            Personalization::Ditto | Personalization::Auto => {
                let own = state.personal.as_ref().unwrap_or(received);
                let seed = job_seed(cfg.seed ^ 0xD1770, round, self.index);
                let pull = Some((cfg.ditto_lambda, received));
                Some(train_from(
                    worker,
                    own,
                    &self.fit,
                    cfg.local_epochs,
                    seed,
                    pull,
                )?)
            }
            Personalization::None | Personalization::FineTune => None,
        };
        if personal.is_some() {
            state.personal = personal;
        }
        state.private_spent = private_spent;
        Ok(LocalUpdate {
            delta,
            num_examples: self.fit.len() as u64,
        })
    }

    /// `model`'s RMSE (cycles) on the labelled `test` cells and its predictions, with the
    /// fleet's training cells as references (`inference_references` of them at most, drawn
    /// with round `round`'s seed for this fleet): how the Simulation scores every fleet.
    ///
    /// # Errors
    /// [`Error::InvalidData`] for a test cell without a known life; prediction errors.
    pub fn score(
        &self,
        worker: &mut BatLiNet,
        model: &FleetModel,
        test: &Dataset,
        round: usize,
    ) -> Result<(f64, Vec<f64>)> {
        let seed = job_seed(self.config.seed, round, self.index);
        let k = self.config.inference_references;
        rmse_of(worker, model, test, &self.train, k, seed)
    }

    /// Round `round`'s evaluation on the fleet's `test` cells: the `received` weights as the
    /// fleet reads them ([`shared_model`](Self::shared_model)) and, when it keeps a model of
    /// its own, that model ([`personal_model`](Self::personal_model), which `state` records),
    /// each scored as [`score`](Self::score) does. On error `state` is unchanged.
    ///
    /// # Errors
    /// As [`score`](Self::score) and [`personal_model`](Self::personal_model).
    pub fn evaluate(
        &self,
        worker: &mut BatLiNet,
        received: &ModelParams,
        state: &mut FleetState,
        test: &Dataset,
        round: usize,
    ) -> Result<FleetEvaluation> {
        let shared = self.shared_model(worker, received.clone())?;
        let (rmse, _) = self.score(worker, &shared, test, round)?;
        if !self.keeps_fleet_model() {
            return Ok(FleetEvaluation {
                rmse,
                personalized_rmse: rmse,
            });
        }
        let mut next = state.clone();
        let own = self.personal_model(worker, received, &mut next, round)?;
        let (personalized_rmse, _) = self.score(worker, &own, test, round)?;
        *state = next;
        Ok(FleetEvaluation {
            rmse,
            personalized_rmse,
        })
    }

    /// The model the fleet uses after round `round`, given the `received` weights (see
    /// [`Personalization`]); also kept as `state.current`. With `none` it is `received` with
    /// the shared statistics.
    pub fn personal_model(
        &self,
        worker: &mut BatLiNet,
        received: &ModelParams,
        state: &mut FleetState,
        round: usize,
    ) -> Result<FleetModel> {
        let model = self.with_labels(worker, |worker| {
            personal_params(
                &self.config,
                worker,
                received,
                state,
                &self.fit,
                self.val.as_ref(),
                &self.train,
                round,
                self.index,
            )
        })?;
        state.current = Some(model.clone());
        Ok(model)
    }
}
