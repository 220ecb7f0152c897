//! `BatLiNet`: construction from keyword settings, training, prediction, weights and files.

use std::path::PathBuf;
use std::sync::Mutex;

use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{fleet_statistics, shared_statistics, LABEL_STATISTICS_LEN};
use battery_fl_core::model::{
    BatLiNet, BatLiNetConfig, Dataset, InputScales, InputStats, LabelTransform, ReferenceSelection,
    TrainOptions, Trainable,
};
use battery_fl_core::Error;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyType};

use super::intervals::{PyIntervalCalibration, PyPredictions};
use crate::conversion::{
    arrays_from_params, bytes, enum_from_str, named, tensors, to_python, vec_f32, vec_f64, ArrayIn,
    BoolArray, F64Array,
};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::{config_error, lock, CoreResult};
use crate::features::PyFeaturizer;

/// The BatLiNet lifetime model: branch A reads a cell's intra-cell differences, branch B
/// target-minus-reference differences, and one shared head predicts log cycle life;
/// a target's prediction mixes branch A with the median of branch B over ``k`` labelled
/// references.
///
/// Keyword settings mirror the core ``BatLiNetConfig`` (defaults are the published ones,
/// except ``epochs``); ``featurizer`` (default ``Featurizer()``) fixes the input resolution and
/// ``input_channels`` (default all six; discharge-only data such as MATR use ``[1]``) the
/// channels fed to the network. Training and prediction release the GIL; models pickle
/// (``to_bytes``) and save to a directory whose ``model.safetensors`` PyTorch users can open
/// with the ``safetensors`` package.
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> cells = [c for f in synthetic.generate_fleets(fleets=1, cells_per_fleet=6, cycles=12, seed=3) for c in f.cells]
/// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
/// ...                             conv_channels=4, epochs=2, batch_size=4, progress=False)
/// >>> losses = model.fit(cells[:4])
/// >>> lives = model.predict(cells[4:], references=cells[:4], k=2)
/// >>> lives.shape, bool((lives > 0).all())
/// ((2,), True)
#[pyclass(frozen, name = "BatLiNet", module = "battery_fl")]
#[derive(Debug)]
pub struct PyBatLiNet {
    inner: Mutex<BatLiNet>,
}

impl PyBatLiNet {
    /// Point predictions and bound flags with the configured reference draw unless given.
    fn bounded(
        &self,
        py: Python<'_>,
        targets: &[&Cell],
        refs: &[&Cell],
        k: Option<usize>,
        selection: Option<&str>,
        seed: Option<u64>,
    ) -> PyResult<(Vec<f64>, Vec<bool>)> {
        let selection: Option<ReferenceSelection> = selection
            .map(|s| enum_from_str("selection", s))
            .transpose()?;
        self.with(py, |m| {
            let c = m.config();
            let (k, selection, seed) = (
                k.unwrap_or(c.inference_references),
                selection.unwrap_or(c.selection),
                seed.unwrap_or(c.seed),
            );
            let (t, r) = (dataset(m, targets)?, dataset(m, refs)?);
            m.predict_bounded(&t, &r, k, selection, seed)
        })
    }

    pub(crate) fn wrap(model: BatLiNet) -> Self {
        PyBatLiNet {
            inner: Mutex::new(model),
        }
    }

    /// Run `f` on the model with the GIL released (the lock is taken and dropped while
    /// detached, so it is never held while waiting for the GIL).
    pub(crate) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut BatLiNet) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        py.detach(|| f(&mut *lock(&self.inner)?)).or_raise()
    }
}

/// Featurize cells as the model's inputs (labels from the recorded or computed cycle life).
pub(crate) fn dataset(model: &BatLiNet, cells: &[&Cell]) -> Result<Dataset, Error> {
    let featurizer = Featurizer::new(model.featurizer_config().clone())?;
    Dataset::for_config(cells, &featurizer, model.config(), &LabelConfig::default())
}

#[pymethods]
impl PyBatLiNet {
    #[new]
    #[pyo3(signature = (*, featurizer=None, input_channels=None, conv_channels=32, kernel=3, pool=3, alpha=0.5, train_references=2, inference_references=32, selection="random", learning_rate=0.001, weight_decay=0.01, batch_size=128, epochs=200, seed=0, device="cpu", single_branch=false, progress=true, inference_batch=16, clean_pairs=false, inter_features="raw", lr_schedule="constant", weight_averaging=0.0, label_grouping="pooled"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        featurizer: Option<PyRef<'_, PyFeaturizer>>,
        input_channels: Option<Vec<usize>>,
        conv_channels: usize,
        kernel: usize,
        pool: usize,
        alpha: f64,
        train_references: usize,
        inference_references: usize,
        selection: &str,
        learning_rate: f64,
        weight_decay: f64,
        batch_size: usize,
        epochs: usize,
        seed: u64,
        device: &str,
        single_branch: bool,
        progress: bool,
        inference_batch: usize,
        clean_pairs: bool,
        inter_features: &str,
        lr_schedule: &str,
        weight_averaging: f64,
        label_grouping: &str,
    ) -> PyResult<Self> {
        let config = BatLiNetConfig {
            input_channels: input_channels.unwrap_or_else(|| (0..6).collect()),
            conv_channels,
            kernel,
            pool,
            alpha,
            train_references,
            inference_references,
            selection: enum_from_str("selection", selection)?,
            learning_rate,
            weight_decay,
            batch_size,
            epochs,
            seed,
            device: enum_from_str("device", device)?,
            single_branch,
            progress,
            inference_batch,
            clean_pairs,
            inter_features: enum_from_str("inter_features", inter_features)?,
            lr_schedule: enum_from_str("lr_schedule", lr_schedule)?,
            weight_averaging,
            label_grouping: enum_from_str("label_grouping", label_grouping)?,
        };
        let featurizer = match featurizer {
            Some(f) => f.config().clone(),
            None => Default::default(),
        };
        let model = py.detach(|| BatLiNet::new(config, featurizer)).or_raise()?;
        Ok(Self::wrap(model))
    }

    /// The core defaults of every keyword setting, as a dict.
    #[classmethod]
    fn default_config(_cls: &Bound<'_, PyType>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &BatLiNetConfig::default())
    }

    /// The model's settings, as a dict.
    #[getter]
    fn config(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let config = self.with(py, |m| Ok(m.config().clone()))?;
        to_python(py, &config)
    }

    /// The featurizer the model expects its inputs from.
    #[getter]
    fn featurizer(&self, py: Python<'_>) -> PyResult<PyFeaturizer> {
        let config = self.with(py, |m| Ok(m.featurizer_config().clone()))?;
        PyFeaturizer::from_config(config)
    }

    /// Input block shape (channels, cycles, grid points).
    #[getter]
    fn input_shape(&self, py: Python<'_>) -> PyResult<(usize, usize, usize)> {
        let [c, h, w] = self.with(py, |m| Ok(m.input_shape()))?;
        Ok((c, h, w))
    }

    /// Fit the label transform and input scales on ``cells`` (labelled), then train for the
    /// configured epochs. Returns the mean loss of each epoch.
    fn fit(&self, py: Python<'_>, cells: Vec<Bound<'_, PyBatteryCell>>) -> PyResult<Vec<f64>> {
        let cells = cell_refs(&cells);
        self.with(py, |m| {
            let ds = dataset(m, &cells)?;
            Ok(m.fit(&ds)?.epoch_losses)
        })
    }

    /// Train on ``cells`` keeping the current label transform and input scales (a federated
    /// client's local training: set them first, or ``fit`` once). ``mu > 0`` adds the FedProx
    /// term ``(mu / 2) ||w - global_parameters||^2``; ``trainable`` is ``"all"``,
    /// ``"head_only"`` or ``"head_and_projections"``. Returns the mean loss of each epoch.
    #[pyo3(signature = (cells, *, epochs=None, seed=None, mu=0.0, global_parameters=None, learning_rate=None, trainable="all"))]
    #[allow(clippy::too_many_arguments)]
    fn train(
        &self,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        epochs: Option<usize>,
        seed: Option<u64>,
        mu: f64,
        global_parameters: Option<Vec<ArrayIn<'_>>>,
        learning_rate: Option<f64>,
        trainable: &str,
    ) -> PyResult<Vec<f64>> {
        let cells = cell_refs(&cells);
        let trainable: Trainable = enum_from_str("trainable", trainable)?;
        let global = global_parameters.as_deref().map(tensors);
        self.with(py, |m| {
            let names = m.params()?.names().map(String::from).collect();
            let opts = TrainOptions {
                epochs,
                seed,
                mu,
                global: global.map(|g| named(names, g)).transpose()?,
                trainable,
                learning_rate,
            };
            let ds = dataset(m, &cells)?;
            Ok(m.train(&ds, &opts)?.epoch_losses)
        })
    }

    /// Transfer: train only the head (``"head_only"``) or the head and both projections
    /// (``"head_and_projections"``) on a few target cells for ``epochs`` epochs, keeping the
    /// label transform. Returns the mean loss of each epoch.
    #[pyo3(signature = (cells, *, epochs, trainable="head_only"))]
    fn fine_tune(
        &self,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        epochs: usize,
        trainable: &str,
    ) -> PyResult<Vec<f64>> {
        let cells = cell_refs(&cells);
        let trainable: Trainable = enum_from_str("trainable", trainable)?;
        self.with(py, |m| {
            let ds = dataset(m, &cells)?;
            Ok(m.fine_tune(&ds, trainable, epochs)?.epoch_losses)
        })
    }

    /// Predicted cycle lives of ``cells`` (float64). Branch B compares each target with
    /// ``k`` labelled ``references`` (default the configured ``inference_references``; never
    /// the target itself), chosen ``"random"``-ly (seeded) or as the ``"genome"``-nearest.
    /// A single-branch model needs no references.
    ///
    /// With ``coverage`` (and a ``calibration`` of this model, from ``calibrate`` or
    /// ``cross_calibrate``) it returns ``Predictions``: the lives with conformal intervals at
    /// that coverage, the spread over references and out-of-distribution flags; references
    /// are then drawn as the calibration drew them (``k``, ``selection`` and ``seed`` must be
    /// left out).
    #[pyo3(signature = (cells, references=None, *, k=None, selection=None, seed=None, coverage=None, calibration=None))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
        references: Option<Vec<Bound<'py, PyBatteryCell>>>,
        k: Option<usize>,
        selection: Option<&str>,
        seed: Option<u64>,
        coverage: Option<f64>,
        calibration: Option<PyRef<'py, PyIntervalCalibration>>,
    ) -> PyResult<Py<PyAny>> {
        let targets = cell_refs(&cells);
        let refs = references.as_deref().map(cell_refs).unwrap_or_default();
        match (coverage, calibration) {
            (None, None) => {}
            (Some(coverage), Some(calibration)) => {
                if k.is_some() || selection.is_some() || seed.is_some() {
                    return Err(config_error(
                        "coverage",
                        "intervals draw references as their calibration did: leave out k, selection and seed",
                    ));
                }
                let cal = &calibration.inner;
                let predictions = self.with(py, |m| {
                    let (t, r) = (dataset(m, &targets)?, dataset(m, &refs)?);
                    m.predict_intervals(&t, &r, cal, coverage)
                })?;
                return Ok(PyPredictions::new(predictions)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind());
            }
            (Some(_), None) => return Err(config_error(
                "calibration",
                "intervals need a calibration: model.calibrate(...) or model.cross_calibrate(...)",
            )),
            (None, Some(_)) => {
                return Err(config_error(
                    "coverage",
                    "a calibration needs a coverage such as 0.9",
                ))
            }
        }
        let (lives, _) = self.bounded(py, &targets, &refs, k, selection, seed)?;
        Ok(vec_f64(py, lives).into_any().unbind())
    }

    /// ``(lives, bounded)``: the point predictions of :meth:`predict` (same arguments but
    /// the intervals') and, per cell, whether it hit the bound around the training lives (a
    /// bounded prediction is an extrapolation not to be trusted); no calibration needed.
    ///
    /// >>> import battery_fl
    /// >>> from battery_fl import synthetic
    /// >>> cells = [c for f in synthetic.generate_fleets(fleets=2, cells_per_fleet=5, cycles=12,
    /// ...          points_per_cycle=40, seed=1) for c in f.cells]
    /// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=8),
    /// ...                             conv_channels=4, epochs=1, progress=False)
    /// >>> _ = model.fit(cells[:8])
    /// >>> lives, bounded = model.predict_bounded(cells[8:], cells[:8], k=2)
    /// >>> lives.shape, bounded.dtype
    /// ((2,), dtype('bool'))
    #[pyo3(signature = (cells, references=None, *, k=None, selection=None, seed=None))]
    fn predict_bounded<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
        references: Option<Vec<Bound<'py, PyBatteryCell>>>,
        k: Option<usize>,
        selection: Option<&str>,
        seed: Option<u64>,
    ) -> PyResult<(F64Array<'py>, BoolArray<'py>)> {
        let targets = cell_refs(&cells);
        let refs = references.as_deref().map(cell_refs).unwrap_or_default();
        let (lives, bounded) = self.bounded(py, &targets, &refs, k, selection, seed)?;
        Ok((vec_f64(py, lives), PyArray1::from_vec(py, bounded)))
    }

    /// The weights, as float32 arrays in ``parameter_names`` order (copies).
    fn get_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let params = self.with(py, |m| m.params())?;
        arrays_from_params(py, &params)
    }

    /// Replace the weights (arrays in ``parameter_names`` order, exact shapes).
    fn set_parameters(&self, py: Python<'_>, parameters: Vec<ArrayIn<'_>>) -> PyResult<()> {
        let tensors = tensors(&parameters);
        self.with(py, |m| {
            let names = m.params()?.names().map(String::from).collect();
            m.set_params(&named(names, tensors)?)
        })
    }

    /// Tensor names, as in a PyTorch ``state_dict`` (sorted).
    #[getter]
    fn parameter_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |m| Ok(m.params()?.names().map(String::from).collect()))
    }

    /// Number of weights.
    #[getter]
    fn num_parameters(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |m| Ok(m.params()?.num_scalars()))
    }

    /// ``(mean, std)`` of log cycle life, once fitted (or set); ``None`` before.
    #[getter]
    fn label_transform(&self, py: Python<'_>) -> PyResult<Option<(f64, f64)>> {
        let t = self.with(py, |m| Ok(m.label_transform()))?;
        Ok(t.map(|t| (t.mean, t.std)))
    }

    /// Use a label transform agreed elsewhere (federated runs share one).
    fn set_label_transform(&self, py: Python<'_>, mean: f64, std: f64) -> PyResult<()> {
        self.with(py, |m| {
            m.set_label_transform(LabelTransform::new(mean, std));
            Ok(())
        })
    }

    /// A fleet's statistics for the shared label transform and input scales, as one float64
    /// vector: label count, sum ln(life), sum ln(life)^2 of the cells' cycle lives, the same
    /// three per cathode group (18 numbers in all), then ``input_statistics(cells)``. Summed over fleets (securely, in a federation) they give
    /// what ``set_shared_statistics`` needs: exactly what ``fit`` computes on the pooled cells.
    fn fleet_statistics<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let v = self.with(py, |m| fleet_statistics(&dataset(m, &cells)?))?;
        Ok(vec_f64(py, v))
    }

    /// How many leading numbers of ``fleet_statistics`` are label sums (the rest are input
    /// statistics).
    #[classattr]
    const LABEL_STATISTICS_LEN: usize = LABEL_STATISTICS_LEN;

    /// Set the label transform alone from the label part of ``fleet_statistics`` (its first
    /// ``LABEL_STATISTICS_LEN`` numbers) summed over fleets, grouped as the model's
    /// ``label_grouping`` says.
    fn set_label_statistics(&self, py: Python<'_>, total: Vec<f64>) -> PyResult<()> {
        self.with(py, |m| {
            let labels = LabelTransform::from_grouped_sums(&total, m.config().label_grouping)?;
            m.set_label_transform(labels);
            Ok(())
        })
    }

    /// Set the label transform and input scales from ``fleet_statistics`` summed over fleets.
    fn set_shared_statistics(&self, py: Python<'_>, total: Vec<f64>) -> PyResult<()> {
        self.with(py, |m| {
            let (labels, scales) =
                shared_statistics(&total, m.input_shape(), m.config().label_grouping)?;
            m.set_input_scales(scales)?;
            m.set_label_transform(labels);
            Ok(())
        })
    }

    /// ``fleet_statistics`` in two parts: ``(labels, inputs)``, where ``labels`` is the 18
    /// label sums (pooled, then per cathode group) and ``inputs`` is ``input_statistics(cells)``.
    #[allow(clippy::type_complexity)]
    fn local_statistics<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
        let cells = cell_refs(&cells);
        let mut labels = self.with(py, |m| fleet_statistics(&dataset(m, &cells)?))?;
        let inputs = labels.split_off(LABEL_STATISTICS_LEN.min(labels.len()));
        Ok((vec_f64(py, labels), vec_f64(py, inputs)))
    }

    /// Set the label transform and input scales from ``local_statistics`` summed over fleets.
    fn set_statistics(&self, py: Python<'_>, labels: Vec<f64>, inputs: Vec<f64>) -> PyResult<()> {
        if labels.len() != LABEL_STATISTICS_LEN {
            return Err(Error::Shape {
                what: "label statistics (count, sum, sum_sq; pooled and per cathode group)".into(),
                expected: vec![LABEL_STATISTICS_LEN],
                got: vec![labels.len()],
            })
            .or_raise();
        }
        let total: Vec<f64> = labels.into_iter().chain(inputs).collect();
        self.set_shared_statistics(py, total)
    }

    /// Per-channel input scales ``(branch_a, branch_b)``, once fitted (or set).
    #[getter]
    #[allow(clippy::type_complexity)]
    fn input_scales<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>)>> {
        let s = self.with(py, |m| Ok(m.input_scales().cloned()))?;
        Ok(s.map(|s| (vec_f32(py, s.branch_a), vec_f32(py, s.branch_b))))
    }

    /// Use per-channel input scales agreed elsewhere (positive, one per input channel).
    fn set_input_scales(
        &self,
        py: Python<'_>,
        branch_a: Vec<f32>,
        branch_b: Vec<f32>,
    ) -> PyResult<()> {
        self.with(py, |m| {
            m.set_input_scales(InputScales { branch_a, branch_b })
        })
    }

    /// Sufficient statistics of the model's inputs on ``cells``, float64
    /// ``[cells, sum_sq_a.., sum_sq_raw.., sum_raw..]``: fleets sum theirs (securely, if they
    /// like) and each passes the total to ``set_input_statistics``, so every fleet scales its
    /// inputs as one model fitted on the pooled cells would.
    fn input_statistics<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let stats = self.with(py, |m| Ok(dataset(m, &cells)?.input_stats().to_vec()))?;
        Ok(vec_f64(py, stats))
    }

    /// Set the input scales from ``input_statistics`` summed over fleets.
    fn set_input_statistics(&self, py: Python<'_>, statistics: Vec<f64>) -> PyResult<()> {
        self.with(py, |m| {
            let shape = m.input_shape();
            let stats = InputStats::from_vec(&statistics, shape)?;
            m.set_input_scales(InputScales::from_stats(&stats, shape)?)
        })
    }

    /// Save to a directory: ``model.safetensors`` (weights, PyTorch ``state_dict`` names) and
    /// ``model.json`` (settings, label transform, input scales).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, |m| m.save(&path))
    }

    /// Load a directory written by ``save``.
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let model = py.detach(|| BatLiNet::load(&path)).or_raise()?;
        Ok(Self::wrap(model))
    }

    /// The whole model as bytes (what ``save`` writes, in one string).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with(py, |m| m.to_bytes())?;
        Ok(bytes(py, &data))
    }

    /// A model from ``to_bytes`` output.
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let model = py.detach(|| BatLiNet::from_bytes(data)).or_raise()?;
        Ok(Self::wrap(model))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |m| {
            let [c, h, w] = m.input_shape();
            let fitted = if m.label_transform().is_some() { "True" } else { "False" };
            Ok(format!(
                "BatLiNet(input_shape=({c}, {h}, {w}), conv_channels={}, parameters={}, fitted={fitted})",
                m.config().conv_channels,
                m.params()?.num_scalars(),
            ))
        })
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let from = slf.get_type().getattr("from_bytes")?;
        Ok((from, (slf.get().to_bytes(slf.py())?,)))
    }
}
