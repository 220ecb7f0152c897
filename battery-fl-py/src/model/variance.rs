//! `VarianceModel`: the Severson "variance" baseline.

use battery_fl_core::data::LabelConfig;
use battery_fl_core::model::{VarianceConfig, VarianceModel};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::conversion::{from_json, to_json, vec_f64};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;

/// The Severson "variance" baseline: ``log10(cycle life) = intercept + slope *
/// log10 var(Qd(V, late_cycle) - Qd(V, early_cycle))``, fitted by least squares.
///
/// >>> from battery_fl import VarianceModel, synthetic
/// >>> cells = [synthetic.generate_cell("LFP", charge_c_rate=1.0 + 0.4 * i, cell_id=f"c{i}", seed=i)
/// ...          for i in range(8)]
/// >>> model = VarianceModel.fit(cells)
/// >>> model.slope < 0, bool((model.predict(cells) > 0).all())
/// (True, True)
#[pyclass(frozen, eq, name = "VarianceModel", module = "battery_fl")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyVarianceModel {
    inner: VarianceModel,
}

#[pymethods]
impl PyVarianceModel {
    /// Fit on labelled cells (at least two, with distinct features).
    #[classmethod]
    #[pyo3(signature = (cells, *, early_cycle=10, late_cycle=100, current_threshold_a=0.1))]
    fn fit(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        early_cycle: u32,
        late_cycle: u32,
        current_threshold_a: f64,
    ) -> PyResult<Self> {
        let config = VarianceConfig {
            early_cycle,
            late_cycle,
            current_threshold_a,
        };
        let cells = cell_refs(&cells);
        let inner = py
            .detach(|| VarianceModel::fit(&cells, &config, &LabelConfig::default()))
            .or_raise()?;
        Ok(PyVarianceModel { inner })
    }

    /// Predicted cycle lives (float64).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let lives = py.detach(|| self.inner.predict(&cells)).or_raise()?;
        Ok(vec_f64(py, lives))
    }

    /// The model's feature for one cell: ``log10 var(delta Q(V))``.
    fn feature(&self, cell: &Bound<'_, PyBatteryCell>) -> PyResult<f64> {
        VarianceModel::feature(&cell.get().inner, &self.inner.config).or_raise()
    }

    /// Intercept of the fit.
    #[getter]
    fn intercept(&self) -> f64 {
        self.inner.intercept
    }

    /// Slope of the fit.
    #[getter]
    fn slope(&self) -> f64 {
        self.inner.slope
    }

    /// Early cycle of delta Q(V).
    #[getter]
    fn early_cycle(&self) -> u32 {
        self.inner.config.early_cycle
    }

    /// Late cycle of delta Q(V).
    #[getter]
    fn late_cycle(&self) -> u32 {
        self.inner.config.late_cycle
    }

    /// The fitted model as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    /// A fitted model from JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Ok(PyVarianceModel {
            inner: from_json(text)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "VarianceModel(intercept={:.4}, slope={:.4})",
            self.inner.intercept, self.inner.slope
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}
