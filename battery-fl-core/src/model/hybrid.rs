//! The hybrid lifetime model: BatLiNet trained on what the linear early-life model leaves.
//!
//! The [`LinearModel`] (features and `λ` by leave-one-out, [`select_linear`]) predicts
//! ln(life); the network learns the *residual* `ln life − ŷ_loo`, where `ŷ_loo` is the linear
//! model's closed-form leave-one-out prediction of each training cell ([`loo_predictions`]),
//! so it learns the linear model's out-of-sample errors rather than its (smaller) in-sample
//! ones. Residual labels are shifted by the training cells' mean ln(life), so the network sees
//! lives of the usual size, and branch B's references carry residual labels too. A prediction
//! is the linear one times the network's correction: `exp(ŷ_linear) · exp(r̂ − shift)`.
//!
//! Why: across MATR batches made months apart BatLiNet alone under-predicts the longer-lived
//! batch (worse than Severson's one-feature model) while the linear model extrapolates; the
//! hybrid keeps the linear model's reach and adds what the curves know. Leave one batch out,
//! it is the only model below the variance model in both directions (BENCHMARKS.md, "Leave
//! one MATR batch out").
//!
//! ```no_run
//! use battery_fl_core::data::{load_cell, LabelConfig};
//! use battery_fl_core::features::{Featurizer, FeaturizerConfig};
//! use battery_fl_core::model::{BatLiNetConfig, Dataset, HybridModel, LinearConfig};
//!
//! # fn cells() -> Vec<battery_fl_core::data::Cell> { unimplemented!() }
//! let (train, test) = (cells(), cells());
//! let featurizer = FeaturizerConfig::default();
//! let network = BatLiNetConfig::default();
//! let label = LabelConfig::default();
//! let f = Featurizer::new(featurizer.clone())?;
//! let ds = |c: &[_]| Dataset::for_config(c, &f, &network, &label);
//! let model = HybridModel::fit(&train, &ds(&train)?, network.clone(), featurizer, &LinearConfig::default(), &label)?;
//! let lives = model.predict(&test, &ds(&test)?)?;
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use std::borrow::Borrow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    check_format, loo_predictions, params_from_safetensors, params_to_safetensors, read_json,
    select_linear, write_atomic, write_json, BatLiNet, BatLiNetConfig, Dataset, InterFeatures,
    LinearConfig, LinearModel, ModelParams,
};
use crate::data::{Cell, LabelConfig};
use crate::error::{Error, Result};
use crate::features::FeaturizerConfig;
use crate::genome::GenomeFingerprint;

/// BatLiNet on the residuals of the linear early-life model (see the module docs).
#[derive(Debug)]
pub struct HybridModel {
    /// The linear model, fitted on all training cells.
    pub linear: LinearModel,
    /// Mean training ln(life), added to the residual labels.
    pub shift: f64,
    /// The network, trained on the residual labels.
    pub network: BatLiNet,
    /// The training cells with residual labels: branch B's references at inference.
    references: Dataset,
}

impl HybridModel {
    /// Fit on labelled `cells`, featurized as `dataset` (same cells, same order): the linear
    /// model by leave-one-out under `linear`, then the network (`network`, `featurizer`) on
    /// the cross-fitted residual labels.
    pub fn fit<C: Borrow<Cell>>(
        cells: &[C],
        dataset: &Dataset,
        network: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        linear: &LinearConfig,
        label: &LabelConfig,
    ) -> Result<Self> {
        let rows = linear.rows(cells, label)?;
        if dataset.cell_ids().len() != rows.len()
            || dataset
                .cell_ids()
                .iter()
                .zip(&rows)
                .any(|(id, r)| *id != r.cell_id)
        {
            return Err(Error::Shape {
                what: "hybrid training dataset (the cells, in order)".into(),
                expected: vec![rows.len()],
                got: vec![dataset.cell_ids().len()],
            });
        }
        let (model, _) = select_linear(&rows, linear)?;
        let cross = loo_predictions(
            &rows,
            &model.standardization,
            model.feature_set,
            model.lambda,
            None,
        )?;
        let logs = rows
            .iter()
            .map(|r| r.require_label())
            .collect::<Result<Vec<_>>>()?;
        let shift = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
        let references = dataset.clone().with_labels(
            logs.iter()
                .zip(&cross)
                .map(|(y, c)| Some((y - c + shift).exp()))
                .collect(),
        )?;
        let mut net = BatLiNet::new(network, featurizer)?;
        net.fit(&references)?;
        Ok(HybridModel {
            linear: model,
            shift,
            network: net,
            references,
        })
    }

    /// The training cells with their residual labels (branch B's references).
    pub fn references(&self) -> &Dataset {
        &self.references
    }

    /// Predicted cycle lives of `cells`, featurized as `dataset` (same cells, same order):
    /// the linear prediction times the network's correction, with the configured references.
    pub fn predict<C: Borrow<Cell>>(&self, cells: &[C], dataset: &Dataset) -> Result<Vec<f64>> {
        if dataset.cell_ids().len() != cells.len() {
            return Err(Error::Shape {
                what: "hybrid targets (cells and their dataset)".into(),
                expected: vec![cells.len()],
                got: vec![dataset.cell_ids().len()],
            });
        }
        let linear = self.linear.predict(cells)?;
        let correction = self.network.predict(dataset, &self.references)?;
        Ok(linear
            .iter()
            .zip(&correction)
            .map(|(l, r)| r * (l.ln() - self.shift).exp())
            .collect())
    }
}

/// Format tag of a saved hybrid model.
pub const HYBRID_FORMAT: &str = "battery-fl/hybrid/v1";
const HYBRID_FILE: &str = "hybrid.json";
const REFERENCES_FILE: &str = "references.safetensors";
const NETWORK_DIR: &str = "network";

/// What `hybrid.json` holds: the linear model, the shift and the references' metadata (their
/// curves are in `references.safetensors`, the network in `network/`).
#[derive(Debug, Serialize, Deserialize)]
struct HybridDescription {
    format: String,
    linear: LinearModel,
    shift: f64,
    reference_ids: Vec<String>,
    reference_labels: Vec<Option<f64>>,
    reference_fingerprints: Vec<GenomeFingerprint>,
    inter: InterFeatures,
    shape: [usize; 3],
}

impl HybridModel {
    /// Save to a directory: `hybrid.json` (the linear model, the shift, the references'
    /// ids, residual labels and fingerprints), `references.safetensors` (their curves) and
    /// `network/` (a [`BatLiNet`] directory). Each file is written atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.network.save(dir.join(NETWORK_DIR))?;
        let r = &self.references;
        let shape = r.shape();
        let dims = vec![r.len(), shape[0], shape[1], shape[2]];
        let mut curves = vec![("branch_a".to_string(), dims.clone(), r.branch_a().to_vec())];
        if r.inter() == InterFeatures::Raw {
            curves.push(("raw".to_string(), dims, r.raw().to_vec()));
        }
        write_atomic(
            &dir.join(REFERENCES_FILE),
            &params_to_safetensors(&ModelParams::new(curves)?)?,
        )?;
        let description = HybridDescription {
            format: HYBRID_FORMAT.into(),
            linear: self.linear.clone(),
            shift: self.shift,
            reference_ids: r.cell_ids().to_vec(),
            reference_labels: r.labels().to_vec(),
            reference_fingerprints: r.fingerprints().to_vec(),
            inter: r.inter(),
            shape,
        };
        write_json(&dir.join(HYBRID_FILE), &description)
    }

    /// Load a directory written by [`HybridModel::save`]; a model that does not fit its
    /// references or files of another format give typed errors.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(HYBRID_FILE);
        let d: HybridDescription = read_json(&path)?;
        check_format(&path, &d.format, HYBRID_FORMAT)?;
        let network = BatLiNet::load(dir.join(NETWORK_DIR))?;
        let curves_path = dir.join(REFERENCES_FILE);
        let bytes = std::fs::read(&curves_path).map_err(|e| Error::Io {
            path: curves_path.clone(),
            source: e,
        })?;
        let curves = params_from_safetensors(&bytes)?;
        let pick = |name: &str| {
            curves
                .params()
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.data.clone())
        };
        let branch_a = pick("branch_a").ok_or_else(|| Error::Parse {
            path: curves_path.clone(),
            reason: "no `branch_a` tensor".into(),
        })?;
        let raw = match d.inter {
            InterFeatures::Raw => pick("raw").ok_or_else(|| Error::Parse {
                path: curves_path.clone(),
                reason: "no `raw` tensor".into(),
            })?,
            InterFeatures::CycleDifference => branch_a.clone(),
        };
        let references = Dataset::new(
            d.reference_ids,
            branch_a,
            raw,
            d.reference_labels,
            d.reference_fingerprints,
            d.shape,
        )?
        .with_inter_features(d.inter)?;
        network.check_dataset(&references, "reference")?;
        Ok(HybridModel {
            linear: d.linear,
            shift: d.shift,
            network,
            references,
        })
    }
}
