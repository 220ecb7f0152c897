//! Record-level DP-SGD in the rounds: one fleet's mechanism, fixed for the whole run, and its
//! accountant.
//!
//! The unit is one cell of one fleet. Everything a fleet sends in a round is its update,
//! trained with per-cell DP-SGD ([`BatLiNet::train_private`]): Poisson sampling at rate
//! `q = batch / n`, each cell's gradient clipped to `C`, Gaussian noise `z·C` on the sum.
//! Branch B's training references and the label transform and input scales come from
//! *public* cells, the same for every fleet (so one cell of a fleet enters only its own
//! per-cell gradient: the pair design of the DP-SGD docs). The first global weights are
//! trained on those public cells, without noise ([`BatLiNet::start_private`], unless
//! `DpSgdConfig::public_pretraining` is off): it costs no privacy and the noisy rounds then
//! start from a model that already reads curves. The noise multiplier is found
//! once, for `rounds × local_epochs × round(1/q)` steps, so that the whole run spends at
//! most the target ε per cell; each fleet keeps its own RDP accountant in its state, stepped
//! with the mechanism each round really ran (so a mechanism that changes between rounds, a
//! restart with other settings say, is still priced right), and refuses a round that would
//! spend more ([`Error::BudgetExhausted`], before training).
//!
//! The number of cells a fleet trains on is treated as public: it is the fleet's FedAvg
//! weight (the coordinator learns it, or with secure aggregation the total), and the
//! accountant's neighbouring datasets differ by one cell's record, not by the count.
//!
//! With `head` (and `auto_head`) personalization a fleet's own head trains inside the same DP-SGD
//! steps (the guarantee covers it; it stays home). Outside the guarantee: the fleet's other
//! personal models (fine-tuned, Ditto and `auto`'s candidates, its local model), which train
//! without noise on its cells, and its inference references; they stay home in a deployment (the
//! in-process `Simulation` holds them for the fleets, and its checkpoint contains them). Also
//! outside it, and reported to the coordinator: evaluation numbers (each fleet's RMSE on its test
//! cells) and, with `auto` and `auto_head`, which model a fleet chose.

use crate::dp::RdpAccountant;
use crate::error::{Error, Result};
use crate::model::{BatLiNet, Dataset, DpSgdConfig, DpSgdReport, TrainOptions};

use super::{job_seed, FleetData};

/// The first global weights of a record-private run, on `worker` (fresh): the public cells'
/// statistics and, when `dp.public_pretraining` and `pretrain` (false when a checkpoint will
/// replace them), weights trained on the public cells ([`BatLiNet::start_private`]).
///
/// # Errors
/// [`Error::InvalidConfig`] when a fleet's own cell (training or test) is among the public
/// ones: the start would train on it without noise. Those of [`BatLiNet::start_private`].
pub(crate) fn start_global(
    worker: &mut BatLiNet,
    public: &Dataset,
    fleets: &[FleetData],
    dp: &DpSgdConfig,
    pretrain: bool,
) -> Result<()> {
    if worker.config().clean_pairs {
        return Err(Error::config(
            "clean_pairs",
            "DP-SGD trains branch B on raw differences; cleaned pairs are not supported",
        ));
    }
    for f in fleets {
        if let Some(id) = public
            .shared_cell(&f.train)
            .or_else(|| public.shared_cell(&f.test))
        {
            return Err(Error::config(
                "public",
                format!("cell {id} belongs to fleet {} and cannot be public", f.id),
            ));
        }
    }
    let dp = DpSgdConfig {
        public_pretraining: dp.public_pretraining && pretrain,
        ..dp.clone()
    };
    worker.start_private(public, &dp)
}

/// One fleet's record-level DP-SGD for a run: the public cells and the mechanism.
#[derive(Debug, Clone)]
pub(crate) struct PrivateTraining {
    public: Dataset,
    /// The settings each round trains with: the run's noise multiplier, no per-call budget.
    round: DpSgdConfig,
    /// The target ε per cell for the whole run (the budget).
    budget: Option<f64>,
    sample_rate: f64,
    steps_per_round: u64,
    batch_size: usize,
}

impl PrivateTraining {
    /// The mechanism for a fleet federating on `fit` cells over `rounds` rounds of
    /// `local_epochs` epochs at the model's `batch_size`.
    pub(crate) fn new(
        dp: &DpSgdConfig,
        public: Dataset,
        fit: &Dataset,
        batch_size: usize,
        rounds: usize,
        local_epochs: usize,
    ) -> Result<Self> {
        dp.validate()?;
        if fit.is_empty() {
            return Err(Error::NotEnoughData {
                what: "cells to train privately".into(),
                needed: 1,
                got: 0,
            });
        }
        // the sampling rate and steps train_private takes
        let q = (batch_size as f64 / fit.len() as f64).min(1.0);
        let per_epoch = (1.0 / q).round().max(1.0) as u64;
        let steps_per_round = local_epochs as u64 * per_epoch;
        let z = dp.noise_multiplier_for(q, rounds as u64 * steps_per_round)?;
        Ok(PrivateTraining {
            public,
            round: DpSgdConfig {
                noise_multiplier: Some(z),
                epsilon: None,
                ..dp.clone()
            },
            budget: dp.epsilon,
            sample_rate: q,
            steps_per_round,
            batch_size,
        })
    }

    /// The noise multiplier of every round.
    pub(crate) fn noise_multiplier(&self) -> f64 {
        self.round.noise_multiplier.unwrap_or(f64::NAN)
    }

    /// The sampling rate.
    pub(crate) fn sample_rate(&self) -> f64 {
        self.sample_rate
    }

    /// ε per cell spent by the steps `spent` records (`None`: nothing yet), at the
    /// configured δ.
    pub(crate) fn epsilon(&self, spent: Option<&RdpAccountant>) -> Result<f64> {
        match spent {
            Some(acc) if acc.steps() > 0 => acc.epsilon(self.round.delta),
            _ => Ok(0.0),
        }
    }

    /// Train `worker` privately for one round (fleet `fleet`, round `round`), refusing a
    /// round the budget does not cover before anything trains; `spent` is the fleet's
    /// accountant, stepped with what the round really ran (whatever mechanism earlier rounds
    /// had: the Rényi curves add).
    pub(crate) fn train(
        &self,
        worker: &mut BatLiNet,
        fit: &Dataset,
        opts: &TrainOptions,
        spent: &mut RdpAccountant,
        round: usize,
        fleet: usize,
    ) -> Result<DpSgdReport> {
        if worker.config().batch_size != self.batch_size {
            return Err(Error::config(
                "batch_size",
                format!(
                    "the model trains at batch {} but the mechanism was set for {}",
                    worker.config().batch_size,
                    self.batch_size
                ),
            ));
        }
        let mut after = spent.clone();
        after.step(
            self.noise_multiplier(),
            self.sample_rate,
            self.steps_per_round,
        )?;
        let epsilon = after.epsilon(self.round.delta)?;
        if let Some(max) = self.budget {
            if epsilon > max * (1.0 + 1e-9) {
                return Err(Error::BudgetExhausted {
                    epsilon,
                    max_epsilon: max,
                });
            }
        }
        let dp = DpSgdConfig {
            seed: self.round.seed.map(|s| job_seed(s, round, fleet)),
            ..self.round.clone()
        };
        let report = worker.train_private(fit, &self.public, &dp, opts)?;
        spent.step(report.noise_multiplier, report.sample_rate, report.steps)?;
        Ok(report)
    }
}
