//! Transfer across chemistries (method.md section 5): parameter transfer (frozen encoders,
//! fine-tuned head) and inter-cell transfer (target cells predicted through branch B with
//! references of the data-rich source chemistry), compared with training on the few target
//! cells alone.

use serde::{Deserialize, Serialize};

use super::batlinet::BatLiNet;
use super::config::{BatLiNetConfig, ReferenceSelection};
use super::dataset::Dataset;
use super::metrics::Metrics;
use super::train::Trainable;
use crate::error::{Error, Result};
use crate::features::FeaturizerConfig;

/// RMSE (cycles) of each route for one number of target training cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRow {
    /// Target-chemistry cells available for training.
    pub target_cells: usize,
    /// BatLiNet trained on those cells alone (references: the same cells).
    pub scratch_rmse: f64,
    /// Source model with frozen encoders and a head fine-tuned on the target cells
    /// (references: the target cells).
    pub fine_tune_rmse: f64,
    /// Source model unchanged, target cells predicted with source-chemistry references.
    pub inter_cell_rmse: f64,
}

/// Settings of a transfer study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferStudy {
    /// Model settings for the source model and the scratch baselines.
    pub config: BatLiNetConfig,
    /// Featurizer settings the datasets were built with.
    pub featurizer: FeaturizerConfig,
    /// Numbers of target cells to try (default 1, 2, 4, 8).
    pub sizes: Vec<usize>,
    /// Fine-tuning epochs of the head. `None` (the default) gives the head the source
    /// training's optimizer-step budget: `epochs x ceil(source cells / batch)` steps, spread
    /// over `ceil(target cells / batch)` steps per epoch. With the encoders frozen the head's
    /// loss is a convex quadratic that starts far from its optimum (source label transform,
    /// target features), so a fixed small budget leaves it short when few cells give one
    /// step per epoch.
    pub fine_tune_epochs: Option<usize>,
    /// Repetitions with different draws of target cells, averaged (default 3).
    pub repeats: usize,
}

impl TransferStudy {
    /// A study with default sizes, epochs and repeats.
    pub fn new(config: BatLiNetConfig, featurizer: FeaturizerConfig) -> Self {
        TransferStudy {
            config,
            featurizer,
            sizes: vec![1, 2, 4, 8],
            fine_tune_epochs: None,
            repeats: 3,
        }
    }

    /// Fine-tuning epochs for `few` target cells after training on `source`.
    pub fn fine_tune_epochs_for(&self, source: &Dataset, few: &Dataset) -> usize {
        self.fine_tune_epochs.unwrap_or_else(|| {
            let batch = self.config.batch_size.max(1);
            let steps = self.config.epochs * source.len().div_ceil(batch);
            steps.div_ceil(few.len().div_ceil(batch).max(1)).max(1)
        })
    }

    /// Train a source model on `source`, then for every size draw that many cells from
    /// `target_pool` (different draws per repeat) and evaluate the three routes on
    /// `target_test`.
    pub fn run(
        &self,
        source: &Dataset,
        target_pool: &Dataset,
        target_test: &Dataset,
    ) -> Result<Vec<TransferRow>> {
        let max = self.sizes.iter().copied().max().unwrap_or(0);
        if target_pool.len() < max || self.repeats == 0 {
            return Err(Error::NotEnoughData {
                what: "target training cells".into(),
                needed: max,
                got: target_pool.len(),
            });
        }
        let truth = target_test.require_labels()?;
        let mut src = BatLiNet::new(self.config.clone(), self.featurizer.clone())?;
        src.fit(source)?;
        let source_params = src.params()?;
        let k = self.config.inference_references;
        let inter = Metrics::compute(
            &src.predict_with(
                target_test,
                source,
                k,
                ReferenceSelection::Random,
                self.config.seed,
            )?,
            &truth,
        )?
        .rmse;

        let mut rows = Vec::new();
        for &n in &self.sizes {
            let (mut scratch, mut tuned) = (0.0, 0.0);
            for rep in 0..self.repeats {
                // a deterministic, different draw of n target cells per repeat
                let start = (rep * n) % target_pool.len();
                let picks: Vec<usize> = (0..n).map(|i| (start + i) % target_pool.len()).collect();
                let few = target_pool.subset(&picks)?;

                let cfg = self.config.clone().with_seed(self.config.seed + rep as u64);
                let mut alone = BatLiNet::new(cfg, self.featurizer.clone())?;
                alone.fit(&few)?;
                scratch += Metrics::compute(
                    &alone.predict_with(target_test, &few, k, ReferenceSelection::Random, 0)?,
                    &truth,
                )?
                .rmse;

                src.set_params(&source_params)?;
                src.fine_tune(
                    &few,
                    Trainable::HeadOnly,
                    self.fine_tune_epochs_for(source, &few),
                )?;
                tuned += Metrics::compute(
                    &src.predict_with(target_test, &few, k, ReferenceSelection::Random, 0)?,
                    &truth,
                )?
                .rmse;
            }
            let r = self.repeats as f64;
            rows.push(TransferRow {
                target_cells: n,
                scratch_rmse: scratch / r,
                fine_tune_rmse: tuned / r,
                inter_cell_rmse: inter,
            });
        }
        src.set_params(&source_params)?;
        Ok(rows)
    }
}
