//! `GatedModel`: BatLiNet, and the hybrid where the linear model extrapolates.

use std::sync::Mutex;

use battery_fl_core::model::{GatedModel, DEFAULT_GATED_MEMBERS};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::hybrid::{fit_from_template, network_dataset};
use super::PyBatLiNet;
use crate::conversion::vec_f64;
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::{config_error, lock, CoreResult};

/// BatLiNet for cells like the training cells, the :class:`HybridModel` (the linear
/// early-life model times a BatLiNet correction) for cells the linear model extrapolates:
/// its prediction outside the training lives, or the cell out of its distribution (leverage
/// above every training cell's, or a cathode never trained on). The network reads the curves
/// best where it has seen their like, the linear model extrapolates (BENCHMARKS.md, "the
/// gate"). Each half is the geometric mean of ``members`` networks trained with seeds
/// ``seed``, ``seed + 1``, … of ``model`` (default 3: steadier under a shift than any one
/// seed), so a fit trains ``2 * members`` networks with its settings.
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=14, seed=2)[0].cells
/// >>> template = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
/// ...                                conv_channels=4, epochs=2, progress=False)
/// >>> gated = battery_fl.GatedModel.fit(cells[:10], template, members=1)
/// >>> lives = gated.predict(cells[10:])
/// >>> bool((lives > 0).all()), gated.extrapolates(cells[10:]).dtype.name
/// (True, 'bool')
#[pyclass(frozen, name = "GatedModel", module = "battery_fl")]
#[derive(Debug)]
pub struct PyGatedModel {
    inner: Mutex<GatedModel>,
}

#[pymethods]
impl PyGatedModel {
    /// Fit on labelled cells with the settings and featurizer of ``model`` (a
    /// :class:`BatLiNet` used as a template; its weights are not used), ``members`` networks
    /// per half.
    #[classmethod]
    #[pyo3(signature = (cells, model, members = DEFAULT_GATED_MEMBERS as i64))]
    fn fit(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        model: &PyBatLiNet,
        members: i64,
    ) -> PyResult<Self> {
        // a negative count is a bad setting, not an integer overflow
        let members = usize::try_from(members)
            .map_err(|_| config_error("members", format!("must be at least 1, got {members}")))?;
        let inner = fit_from_template(py, &cell_refs(&cells), model, |c, d, n, f, l, b| {
            GatedModel::fit(c, d, n, f, l, b, members)
        })?;
        Ok(PyGatedModel {
            inner: Mutex::new(inner),
        })
    }

    /// Predicted cycle lives (float64).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let lives = py
            .detach(|| {
                let model = lock(&self.inner)?;
                let p = model.predict(&cells, &network_dataset(&model.networks()[0], &cells)?)?;
                Ok::<_, battery_fl_core::Error>(p.iter().map(|g| g.life).collect())
            })
            .or_raise()?;
        Ok(vec_f64(py, lives))
    }

    /// Per cell: the linear model extrapolates (prediction outside the training lives, or
    /// the cell out of its distribution), so ``predict`` gives the hybrid's (bool array).
    fn extrapolates<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let cells = cell_refs(&cells);
        let flags = py
            .detach(|| lock(&self.inner)?.extrapolates(&cells))
            .or_raise()?;
        Ok(PyArray1::from_vec(py, flags))
    }

    /// Smallest and largest training life (cycles).
    #[getter]
    fn label_range(&self) -> PyResult<(f64, f64)> {
        Ok(lock(&self.inner).or_raise()?.label_range)
    }

    /// Networks per half (the ensemble size).
    #[getter]
    fn members(&self) -> PyResult<usize> {
        Ok(lock(&self.inner).or_raise()?.members())
    }

    /// Save to a directory: ``hybrid/``, ``network/`` (``hybrid.1/``, ``network.1/``, … for
    /// further members) and ``gated.json``.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| lock(&self.inner)?.save(&path)).or_raise()
    }

    /// Load a directory written by ``save``.
    #[classmethod]
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| GatedModel::load(&path)).or_raise()?;
        Ok(PyGatedModel {
            inner: Mutex::new(inner),
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGatedModel>()
}
