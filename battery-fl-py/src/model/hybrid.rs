//! `HybridModel`: BatLiNet on the linear early-life model's leave-one-out residuals.

use std::sync::Mutex;

use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::Featurizer;
use battery_fl_core::features::FeaturizerConfig;
use battery_fl_core::model::{BatLiNet, BatLiNetConfig, Dataset, HybridModel, LinearConfig};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::linear::PyLinearModel;
use super::PyBatLiNet;
use crate::conversion::vec_f64;
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::{lock, CoreResult};

/// BatLiNet trained on what the linear early-life model leaves: ln(life) minus the linear
/// model's leave-one-out prediction of each training cell. A prediction is the linear one
/// times the network's correction, so it keeps the linear model's reach on cells unlike the
/// training ones (leave one MATR batch out, the only model below Severson's variance model
/// in both directions; BENCHMARKS.md).
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=14, seed=2)[0].cells
/// >>> template = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
/// ...                                conv_channels=4, epochs=2, progress=False)
/// >>> hybrid = battery_fl.HybridModel.fit(cells[:10], template)
/// >>> bool((hybrid.predict(cells[10:]) > 0).all())
/// True
#[pyclass(frozen, name = "HybridModel", module = "battery_fl")]
#[derive(Debug)]
pub struct PyHybridModel {
    inner: Mutex<HybridModel>,
}

/// `cells` featurized as `net` reads them.
pub(super) fn network_dataset(net: &BatLiNet, cells: &[&Cell]) -> battery_fl_core::Result<Dataset> {
    let featurizer = Featurizer::new(net.featurizer_config().clone())?;
    Dataset::for_config(cells, &featurizer, net.config(), &LabelConfig::default())
}

/// Fit with `fit` on labelled `cells` with the settings and featurizer of `template` (its
/// weights are not used), the GIL released: a model trained with a template BatLiNet's
/// settings (the hybrid, the gated model) gets the cells, their dataset, the settings and the
/// default linear and label configs.
pub(super) fn fit_from_template<M: Send>(
    py: Python<'_>,
    cells: &[&Cell],
    template: &PyBatLiNet,
    fit: impl FnOnce(
            &[&Cell],
            &Dataset,
            BatLiNetConfig,
            FeaturizerConfig,
            &LinearConfig,
            &LabelConfig,
        ) -> battery_fl_core::Result<M>
        + Send,
) -> PyResult<M> {
    let (config, featurizer) = template.with(py, |m| {
        Ok((m.config().clone(), m.featurizer_config().clone()))
    })?;
    py.detach(|| {
        let f = Featurizer::new(featurizer.clone())?;
        let label = LabelConfig::default();
        let ds = Dataset::for_config(cells, &f, &config, &label)?;
        fit(
            cells,
            &ds,
            config,
            featurizer,
            &LinearConfig::default(),
            &label,
        )
    })
    .or_raise()
}

#[pymethods]
impl PyHybridModel {
    /// Fit on labelled cells with the settings and featurizer of ``model`` (a
    /// :class:`BatLiNet` used as a template; its weights are not used): the linear model by
    /// leave-one-out, then the network on the residuals.
    #[classmethod]
    fn fit(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        model: &PyBatLiNet,
    ) -> PyResult<Self> {
        let inner = fit_from_template(py, &cell_refs(&cells), model, |c, d, n, f, l, b| {
            HybridModel::fit(c, d, n, f, l, b)
        })?;
        Ok(PyHybridModel {
            inner: Mutex::new(inner),
        })
    }

    /// Predicted cycle lives (float64): the linear life times the network's correction.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let lives = py
            .detach(|| {
                let model = lock(&self.inner)?;
                model.predict(&cells, &network_dataset(&model.network, &cells)?)
            })
            .or_raise()?;
        Ok(vec_f64(py, lives))
    }

    /// Save to a directory: ``hybrid.json`` (the linear model, the shift, the references'
    /// metadata), ``references.safetensors`` (their curves) and ``network/`` (a BatLiNet
    /// directory).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| lock(&self.inner)?.save(&path)).or_raise()
    }

    /// Load a directory written by ``save``.
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| HybridModel::load(&path)).or_raise()?;
        Ok(PyHybridModel {
            inner: Mutex::new(inner),
        })
    }

    /// The linear early-life model it corrects.
    #[getter]
    fn linear(&self) -> PyResult<PyLinearModel> {
        Ok(PyLinearModel {
            inner: lock(&self.inner).or_raise()?.linear.clone(),
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHybridModel>()
}
