//! Record-level DP-SGD in the rounds: one fleet's mechanism, fixed for the whole run, and its
//! accountant.
//!
//! The unit is one cell of one fleet. Everything a fleet sends in a round is its update,
//! trained with per-cell DP-SGD ([`BatLiNet::train_private`]): Poisson sampling at rate
//! `q = batch / n`, each cell's gradient clipped to `C`, Gaussian noise `z·C` on the sum.
//! Branch B's training references and the label transform and input scales come from
//! *public* cells, the same for every fleet (so one cell of a fleet enters only its own
//! per-cell gradient: the pair design of the DP-SGD docs). The noise multiplier is found
//! once, for `rounds × local_epochs × round(1/q)` steps, so that the whole run spends at
//! most the target ε per cell; each fleet's accountant counts the steps it has taken and
//! refuses a round that would spend more ([`Error::BudgetExhausted`], before training).
//!
//! What stays home is outside the guarantee and never released: the fleet's personal
//! models (fine-tuned, Ditto, its own head, its local model), which train without noise on
//! its cells, and its inference references. Evaluation numbers a deployment reports to its
//! coordinator (per-fleet RMSE on the fleet's test cells) are not covered either.

use crate::dp::RdpAccountant;
use crate::error::{Error, Result};
use crate::model::{BatLiNet, Dataset, DpSgdConfig, DpSgdReport, TrainOptions};

use super::job_seed;

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

    /// ε per cell after `steps` steps, at the configured δ.
    pub(crate) fn epsilon_after(&self, steps: u64) -> Result<f64> {
        if steps == 0 {
            return Ok(0.0);
        }
        RdpAccountant::new().epsilon_after(
            self.noise_multiplier(),
            self.sample_rate,
            steps,
            self.round.delta,
        )
    }

    /// Train `worker` privately for one round (fleet `fleet`, round `round`) after `spent`
    /// steps of this run, refusing a round the budget does not cover before anything trains.
    pub(crate) fn train(
        &self,
        worker: &mut BatLiNet,
        fit: &Dataset,
        opts: &TrainOptions,
        spent: u64,
        round: usize,
        fleet: usize,
    ) -> Result<DpSgdReport> {
        let after = self.epsilon_after(spent + self.steps_per_round)?;
        if let Some(max) = self.budget {
            if after > max * (1.0 + 1e-9) {
                return Err(Error::BudgetExhausted {
                    epsilon: after,
                    max_epsilon: max,
                });
            }
        }
        let dp = DpSgdConfig {
            seed: self.round.seed.map(|s| job_seed(s, round, fleet)),
            ..self.round.clone()
        };
        worker.train_private(fit, &self.public, &dp, opts)
    }
}
