//! `BatLiNet`: the model object (construction, parameters, inference over reference sets).

use tch::{Device, Tensor};

use super::config::{BatLiNetConfig, DeviceChoice, Geometry, ReferenceSelection};
use super::conformal::median_in_place;
use super::dataset::{Dataset, InputScales};
use super::labels::LabelTransform;
use super::net::{Net, TchResultExt};
use super::params::ModelParams;
use super::persist::{load_model_dir, save_model_dir, ModelDescription, FORMAT};
use super::reference::select_references;
use crate::error::{Error, Result};
use crate::features::FeaturizerConfig;

/// Each branch's prediction in cycles (see [`BatLiNet::predict_branches`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BranchPredictions {
    /// Branch A (intra-cell differences) alone.
    pub a: Vec<f64>,
    /// Median over references of branch B plus the reference label; `None` when the model
    /// has one branch.
    pub b: Option<Vec<f64>>,
}

/// The BatLiNet lifetime model (method.md section 3).
///
/// Branch A sees a cell's intra-cell difference features; branch B sees target-minus-reference
/// differences; both feed one shared linear head. Prediction for a target with K references
/// is `(1 − α)·A + α·median_k(B_k + y_ref,k)` in normalized log-life space, transformed back
/// to cycles.
#[derive(Debug)]
pub struct BatLiNet {
    pub(crate) config: BatLiNetConfig,
    pub(crate) featurizer: FeaturizerConfig,
    pub(crate) labels: Option<LabelTransform>,
    pub(crate) scales: Option<InputScales>,
    pub(crate) shape: [usize; 3],
    pub(crate) net: Net,
    pub(crate) device: Device,
}

pub(crate) fn resolve_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(Error::config("device", "CUDA requested but not available")),
    }
}

/// `n` blocks of `shape` as a `[n, C, H, W]` tensor, each channel divided by its scale.
pub(crate) fn to_tensor(
    data: &[f32],
    shape: [usize; 3],
    n: usize,
    device: Device,
    scale: &[f32],
) -> Result<Tensor> {
    let dims = [n as i64, shape[0] as i64, shape[1] as i64, shape[2] as i64];
    let inv: Vec<f32> = scale.iter().map(|s| 1.0 / s).collect();
    let inv = Tensor::f_from_slice(&inv)
        .m()?
        .f_view([1, shape[0] as i64, 1, 1])
        .m()?
        .f_to_device(device)
        .m()?;
    Tensor::f_from_slice(data)
        .m()?
        .f_reshape(dims)
        .m()?
        .f_to_device(device)
        .m()?
        .f_mul(&inv)
        .m()
}

pub(crate) fn index_tensor(idx: &[usize], device: Device) -> Result<Tensor> {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::f_from_slice(&v).m()?.f_to_device(device).m()
}

impl BatLiNet {
    /// A freshly initialized model. Its input block shape (channels, cycles, grid points) is
    /// `config.input_channels.len()` by the featurizer's `cycles` and `interp_dim`
    /// ([`BatLiNet::input_shape`]).
    pub fn new(config: BatLiNetConfig, featurizer: FeaturizerConfig) -> Result<Self> {
        config.validate()?;
        featurizer.validate()?;
        let shape = [
            config.input_channels.len(),
            featurizer.cycles,
            featurizer.interp_dim,
        ];
        let geometry = Geometry::new(shape[1], shape[2], config.kernel, config.pool)?;
        let device = resolve_device(config.device)?;
        let net = Net::init(
            config.seed,
            geometry,
            shape[0],
            config.conv_channels,
            !config.single_branch,
            device,
        )?;
        Ok(BatLiNet {
            config,
            featurizer,
            labels: None,
            scales: None,
            shape,
            net,
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatLiNetConfig {
        &self.config
    }

    /// The featurizer configuration the model expects its inputs from.
    pub fn featurizer_config(&self) -> &FeaturizerConfig {
        &self.featurizer
    }

    /// The label transform (set by `fit`, or given for federated training).
    pub fn label_transform(&self) -> Option<LabelTransform> {
        self.labels
    }

    /// Set the label transform (federated runs share one across fleets).
    pub fn set_label_transform(&mut self, labels: LabelTransform) {
        self.labels = Some(labels);
    }

    /// Per-channel input scales (set by `fit`, or given for federated training).
    pub fn input_scales(&self) -> Option<&InputScales> {
        self.scales.as_ref()
    }

    /// Set the input scales (federated runs share one set across fleets).
    pub fn set_input_scales(&mut self, scales: InputScales) -> Result<()> {
        let c = self.shape[0];
        if scales.branch_a.len() != c || scales.branch_b.len() != c {
            return Err(Error::Shape {
                what: "input scales".into(),
                expected: vec![c],
                got: vec![scales.branch_a.len(), scales.branch_b.len()],
            });
        }
        if scales
            .branch_a
            .iter()
            .chain(&scales.branch_b)
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::config(
                "input_scales",
                "scales must be positive and finite",
            ));
        }
        self.scales = Some(scales);
        Ok(())
    }

    pub(crate) fn scales_or_unit(&self) -> InputScales {
        self.scales
            .clone()
            .unwrap_or_else(|| InputScales::unit(self.shape[0]))
    }

    /// Input block shape (channels, cycles, grid points).
    pub fn input_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Export the weights.
    pub fn params(&self) -> Result<ModelParams> {
        self.net.to_params()
    }

    /// Import weights; names and shapes must match exactly.
    pub fn set_params(&mut self, params: &ModelParams) -> Result<()> {
        self.net.load_params(params)
    }

    pub(crate) fn check_dataset(&self, ds: &Dataset, what: &str) -> Result<()> {
        if ds.shape() != self.shape {
            return Err(Error::Shape {
                what: format!("{what} inputs"),
                expected: self.shape.to_vec(),
                got: ds.shape().to_vec(),
            });
        }
        if self.config.effective_alpha() > 0.0 && ds.inter() != self.config.inter_features {
            return Err(Error::config(
                "inter_features",
                format!(
                    "the model forms inter-cell differences from {:?} features but the {what} \
                     dataset holds {:?} ones (Dataset::with_inter_features)",
                    self.config.inter_features,
                    ds.inter()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn require_labels(&self) -> Result<LabelTransform> {
        self.labels.ok_or_else(|| Error::Model {
            reason: "the model has no label transform: fit it first".into(),
        })
    }

    /// Predict cycle lives of `targets` with the configured number of references and
    /// selection rule, references drawn from `references` (labelled cells).
    pub fn predict(&self, targets: &Dataset, references: &Dataset) -> Result<Vec<f64>> {
        self.predict_with(
            targets,
            references,
            self.config.inference_references,
            self.config.selection,
            self.config.seed,
        )
    }

    /// Predict with `k` references per target chosen by `selection` (`seed` drives random
    /// selection). Memory stays bounded however many targets and references are given:
    /// targets go in batches of `inference_batch`, pairs in chunks of bounded activation size.
    pub fn predict_with(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<Vec<f64>> {
        Ok(self
            .predict_bounded(targets, references, k, selection, seed)?
            .0)
    }

    /// As [`predict_with`](Self::predict_with), also saying which predictions hit the bound
    /// around the training labels ([`PREDICTION_BOUND_SIGMAS`](super::PREDICTION_BOUND_SIGMAS)):
    /// every prediction is bounded, and a bounded one is an extrapolation not to be trusted.
    pub fn predict_bounded(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<(Vec<f64>, Vec<bool>)> {
        let labels = self.require_labels()?;
        self.check_dataset(targets, "target")?;
        if targets.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let normalized = self.predict_normalized(targets, references, k, selection, seed)?;
        Ok(normalized
            .into_iter()
            .zip(targets.cathodes())
            .map(|(y, c)| labels.inverse_bounded_for(y, c))
            .unzip())
    }

    /// Each branch's own prediction, in cycles, for diagnosis: which branch is off on which
    /// cells. `a[i]` is branch A alone for target `i`; `b[i]` is the median over its `k`
    /// references of branch B plus the reference's label (`None` for a single-branch model).
    /// `predict_with` combines them as `(1 − α)·A + α·B` in normalized log space.
    pub fn predict_branches(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<BranchPredictions> {
        let labels = self.require_labels()?;
        self.check_dataset(targets, "target")?;
        let (a, b) = self.predict_branches_normalized(targets, references, k, selection, seed)?;
        let cathodes = targets.cathodes();
        let back = |ys: Vec<f64>| -> Vec<f64> {
            ys.into_iter()
                .zip(&cathodes)
                .map(|(y, c)| labels.inverse_for(y, *c))
                .collect()
        };
        Ok(BranchPredictions {
            a: back(a),
            b: b.map(back),
        })
    }

    /// Predictions in normalized label space (before the inverse label transform).
    pub(crate) fn predict_normalized(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<Vec<f64>> {
        let alpha = self.config.effective_alpha();
        let (a, b) = self.predict_branches_normalized(targets, references, k, selection, seed)?;
        Ok(match b {
            None => a,
            Some(b) => a
                .iter()
                .zip(&b)
                .map(|(ya, yb)| (1.0 - alpha) * ya + alpha * yb)
                .collect(),
        })
    }

    /// Branch A and (when α > 0) the median branch-B prediction per target, normalized.
    fn predict_branches_normalized(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let out = self.branch_outputs(targets, references, k, selection, seed)?;
        let b = out.b.map(|b| {
            b.into_iter()
                .map(|mut ys| median_in_place(&mut ys))
                .collect()
        });
        Ok((out.a, b))
    }

    /// Branch A per target and (when α > 0) each target's branch-B predictions, one per
    /// reference (`B_k + y_ref,k`), normalized, with the references drawn.
    pub(crate) fn branch_outputs(
        &self,
        targets: &Dataset,
        references: &Dataset,
        k: usize,
        selection: ReferenceSelection,
        seed: u64,
    ) -> Result<BranchOutputs> {
        let labels = self.require_labels()?;
        let alpha = self.config.effective_alpha();
        if targets.is_empty() {
            return Ok(BranchOutputs {
                a: Vec::new(),
                b: (alpha > 0.0).then(Vec::new),
                references: Vec::new(),
            });
        }
        let _memory = crate::runtime::MemoryScope::enter();
        let block = targets.block();
        let mut out_a = Vec::with_capacity(targets.len());
        let mut out_b = Vec::with_capacity(targets.len());
        let (refs, ref_y) = if alpha > 0.0 {
            self.check_dataset(references, "reference")?;
            if k == 0 {
                return Err(Error::config("k", "need at least one reference"));
            }
            let mut rng = crate::rng::substream(seed, 7);
            let sel = select_references(targets, references, k, selection, &mut rng)?;
            let y: Vec<f64> = references
                .require_labels()?
                .iter()
                .zip(references.cathodes())
                .map(|(&l, c)| labels.forward_for(l, c))
                .collect();
            (sel, y)
        } else {
            (Vec::new(), Vec::new())
        };
        let scales = self.scales_or_unit();
        tch::no_grad(|| -> Result<()> {
            for chunk in (0..targets.len())
                .collect::<Vec<_>>()
                .chunks(self.config.inference_batch)
            {
                let (lo, n) = (chunk[0], chunk.len());
                let xa = to_tensor(
                    &targets.branch_a()[lo * block..(lo + n) * block],
                    self.shape,
                    n,
                    self.device,
                    &scales.branch_a,
                )?;
                let ya =
                    Vec::<f32>::try_from(&self.net.branch_a(&xa)?.f_to_device(Device::Cpu).m()?)
                        .m()?;
                out_a.extend(ya.iter().map(|&v| f64::from(v)));
                if alpha == 0.0 {
                    continue;
                }
                let pairs: Vec<(usize, usize)> = chunk
                    .iter()
                    .flat_map(|&t| refs[t].iter().map(move |&r| (t, r)))
                    .collect();
                let yb_pairs = self.pair_outputs(targets, references, &pairs, &scales.branch_b)?;
                let mut at = 0;
                for &t in chunk {
                    out_b.push(
                        (0..refs[t].len())
                            .map(|j| yb_pairs[at + j] + ref_y[refs[t][j]])
                            .collect::<Vec<f64>>(),
                    );
                    at += refs[t].len();
                }
            }
            Ok(())
        })?;
        Ok(BranchOutputs {
            a: out_a,
            b: (alpha > 0.0).then_some(out_b),
            references: refs,
        })
    }
}

/// Normalized branch outputs per target (see [`BatLiNet::branch_outputs`]).
pub(crate) struct BranchOutputs {
    /// Branch A.
    pub a: Vec<f64>,
    /// Branch B plus the reference label, one per reference (`None` when α = 0).
    pub b: Option<Vec<Vec<f64>>>,
    /// The reference positions drawn for each target (empty when α = 0).
    pub references: Vec<Vec<usize>>,
}

impl BatLiNet {
    /// Save to a directory: `model.safetensors` (weights) and `model.json` (architecture,
    /// label transform, featurizer settings).
    pub fn save(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        save_model_dir(dir.as_ref(), &self.description(), &self.params()?)
    }

    /// Load a directory written by [`BatLiNet::save`]. Weights that do not fit the described
    /// architecture give a typed error naming the first mismatching tensor.
    pub fn load(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let (description, params) = load_model_dir(dir.as_ref())?;
        Self::from_description(description, &params)
    }

    /// Everything but the weights, as a saved model describes it (`model.json`, and the
    /// description inside [`BatLiNet::to_bytes`]).
    pub(crate) fn description(&self) -> ModelDescription {
        ModelDescription {
            format: FORMAT.into(),
            config: self.config.clone(),
            featurizer: self.featurizer.clone(),
            input_shape: self.shape,
            geometry: self.net.geometry,
            label_transform: self.labels,
            input_scales: self.scales.clone(),
        }
    }

    /// The model a [`ModelDescription`] (already [validated](ModelDescription::validate))
    /// and its weights describe: the inverse of [`description`](Self::description) and
    /// [`params`](Self::params).
    pub(crate) fn from_description(
        description: ModelDescription,
        params: &ModelParams,
    ) -> Result<Self> {
        let mut model = BatLiNet::new(description.config, description.featurizer)?;
        model.set_params(params)?;
        model.labels = description.label_transform;
        if let Some(scales) = description.input_scales {
            model.set_input_scales(scales)?;
        }
        Ok(model)
    }
}
