//! `IntervalCalibration` and `Predictions`: BatLiNet's conformal intervals and flags
//! (`battery_fl_core::model::intervals`).

use battery_fl_core::model::{
    IntervalCalibration, IntervalSummary, Prediction, DEFAULT_CALIBRATION_FOLDS,
};
use numpy::{AllowTypeChange, PyArray1, PyArrayLike1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use super::batlinet::{dataset, PyBatLiNet};
use crate::conversion::{config_from_dict, from_json, to_json, to_python, vec_f64};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;

/// What a BatLiNet calibration learned from labelled cells the model was not trained on
/// (``BatLiNet.calibrate``, ``BatLiNet.cross_calibrate``): normalized conformal scores, the
/// out-of-distribution distance threshold and the training cells' fingerprints. It belongs to one trained model (a model trained or changed since
/// refuses it) and, like the cells, stays with its owner. Pickles and round-trips through
/// JSON.
#[pyclass(frozen, name = "IntervalCalibration", module = "battery_fl")]
#[derive(Debug, Clone)]
pub struct PyIntervalCalibration {
    pub(crate) inner: IntervalCalibration,
}

#[pymethods]
impl PyIntervalCalibration {
    /// Number of calibration cells.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The added spread ``beta`` of the score's divisor (0: every cell gets one width).
    #[getter]
    fn scale(&self) -> f64 {
        self.inner.scale
    }

    /// Largest genome distance from a calibration cell to its nearest training cell, or from a
    /// training cell to its nearest other training cell of the same cathode: cells further
    /// than this from every training cell are flagged out of distribution.
    #[getter]
    fn max_distance(&self) -> f64 {
        self.inner.max_distance
    }

    /// Whether a chemistry with at least ``MONDRIAN_MIN_CELLS`` (19) calibration cells gets
    /// its own quantile (the default), the others the pooled one; ``False``: one pooled
    /// quantile for every cell.
    #[getter]
    fn by_chemistry(&self) -> bool {
        self.inner.by_chemistry
    }

    /// Whether the scores were pooled over a federation's fleets (a fleet with too few
    /// held-out cells of its own, ``Simulation.calibrate_fleets``).
    #[getter]
    fn pooled(&self) -> bool {
        self.inner.pooled
    }

    /// A copy with ``by_chemistry`` set to ``on``.
    fn with_by_chemistry(&self, on: bool) -> Self {
        PyIntervalCalibration {
            inner: IntervalCalibration {
                by_chemistry: on,
                ..self.inner.clone()
            },
        }
    }

    /// The calibration as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    /// A calibration from JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Ok(PyIntervalCalibration {
            inner: from_json(text)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "IntervalCalibration(cells={}, scale={:.4}, max_distance={:.4}, by_chemistry={})",
            self.inner.len(),
            self.inner.scale,
            self.inner.max_distance,
            if self.inner.by_chemistry {
                "True"
            } else {
                "False"
            }
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

/// BatLiNet predictions with intervals and flags, one entry per cell in each array:
/// ``life``, ``lower``, ``upper`` (cycles), ``spread`` (robust spread of the per-reference
/// predictions in ln(life)), ``reference_low``/``reference_high`` (min and max per-reference
/// prediction: the naive interval), ``training_distance`` and ``reference_distance`` (genome
/// distance to the nearest training cell and reference used; NaN for a single-branch
/// model), and the flags ``bounded``, ``outside_label_range`` and ``out_of_distribution``.
#[pyclass(frozen, name = "Predictions", module = "battery_fl")]
#[derive(Debug)]
pub struct PyPredictions {
    inner: Vec<Prediction>,
}

impl PyPredictions {
    pub(crate) fn new(inner: Vec<Prediction>) -> Self {
        PyPredictions { inner }
    }

    fn f64s<'py>(&self, py: Python<'py>, f: fn(&Prediction) -> f64) -> Bound<'py, PyArray1<f64>> {
        vec_f64(py, self.inner.iter().map(f).collect())
    }

    fn flags<'py>(
        &self,
        py: Python<'py>,
        f: fn(&Prediction) -> bool,
    ) -> Bound<'py, PyArray1<bool>> {
        PyArray1::from_vec(py, self.inner.iter().map(f).collect())
    }
}

#[pymethods]
impl PyPredictions {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Predicted cycle lives (float64), as ``predict`` without ``coverage`` gives them.
    #[getter]
    fn life<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.life)
    }

    /// Lower ends of the intervals (cycles).
    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.lower)
    }

    /// Upper ends of the intervals (cycles).
    #[getter]
    fn upper<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.upper)
    }

    /// Robust spread of the per-reference predictions in ln(life).
    #[getter]
    fn spread<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.spread)
    }

    /// Smallest per-reference prediction (cycles).
    #[getter]
    fn reference_low<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.reference_low)
    }

    /// Largest per-reference prediction (cycles).
    #[getter]
    fn reference_high<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.reference_high)
    }

    /// Genome distance to the nearest training cell.
    #[getter]
    fn training_distance<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.training_distance)
    }

    /// Genome distance to the nearest reference used (NaN for a single-branch model).
    #[getter]
    fn reference_distance<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.f64s(py, |p| p.reference_distance.unwrap_or(f64::NAN))
    }

    /// Whether each point prediction hit the bound around the training lives.
    #[getter]
    fn bounded<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        self.flags(py, |p| p.bounded)
    }

    /// Whether each point prediction lies outside the training lives.
    #[getter]
    fn outside_label_range<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        self.flags(py, |p| p.outside_label_range)
    }

    /// Whether each cell is out of distribution (cathode unseen, or further from the training
    /// cells than the calibration's ``max_distance``).
    #[getter]
    fn out_of_distribution<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        self.flags(py, |p| p.out_of_distribution)
    }

    fn __repr__(&self) -> String {
        let flagged = self.inner.iter().filter(|p| p.out_of_distribution).count();
        format!(
            "Predictions(cells={}, out_of_distribution={flagged})",
            self.inner.len()
        )
    }
}

#[pymethods]
impl PyBatLiNet {
    /// Calibrate intervals and flags on labelled ``calibration`` cells held out from
    /// ``training`` (the cells this model was trained on), predicted with ``references``
    /// (default the training cells). A calibration cell that is also a training cell raises
    /// ``ConfigError``.
    ///
    /// >>> import battery_fl
    /// >>> from battery_fl import synthetic
    /// >>> cells = [c for f in synthetic.generate_fleets(fleets=2, cells_per_fleet=12, cycles=12, seed=3) for c in f.cells]
    /// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
    /// ...                             conv_channels=4, epochs=2, batch_size=4, progress=False, inference_references=4)
    /// >>> _ = model.fit(cells[:12])
    /// >>> calibration = model.calibrate(cells[:12], cells[12:20])
    /// >>> p = model.predict(cells[20:], cells[:12], coverage=0.8, calibration=calibration)
    /// >>> bool(((p.lower <= p.life) & (p.life <= p.upper)).all()), len(p)
    /// (True, 4)
    #[pyo3(signature = (training, calibration, references=None))]
    fn calibrate(
        &self,
        py: Python<'_>,
        training: Vec<Bound<'_, PyBatteryCell>>,
        calibration: Vec<Bound<'_, PyBatteryCell>>,
        references: Option<Vec<Bound<'_, PyBatteryCell>>>,
    ) -> PyResult<PyIntervalCalibration> {
        let (training, calibration) = (cell_refs(&training), cell_refs(&calibration));
        let references = references.as_deref().map(cell_refs);
        let inner = self.with(py, |m| {
            let train = dataset(m, &training)?;
            let refs = match &references {
                Some(r) => dataset(m, r)?,
                None => train.clone(),
            };
            m.calibrate(&train, &dataset(m, &calibration)?, &refs)
        })?;
        Ok(PyIntervalCalibration { inner })
    }

    /// Calibrate without setting cells aside: ``folds`` fresh models of this configuration,
    /// each trained on all but one fold of ``training`` (the cells this model was trained
    /// on) and scored on the fold it did not see. Costs ``folds`` trainings (default
    /// ``battery_fl._core.DEFAULT_CALIBRATION_FOLDS``, the core's).
    #[pyo3(signature = (training, *, folds=None))]
    fn cross_calibrate(
        &self,
        py: Python<'_>,
        training: Vec<Bound<'_, PyBatteryCell>>,
        folds: Option<usize>,
    ) -> PyResult<PyIntervalCalibration> {
        let training = cell_refs(&training);
        let folds = folds.unwrap_or(DEFAULT_CALIBRATION_FOLDS);
        let inner = self.with(py, |m| m.cross_calibrate(&dataset(m, &training)?, folds))?;
        Ok(PyIntervalCalibration { inner })
    }
}

/// How intervals did on cells (the core's ``IntervalSummary``): ``{"covered", "labelled",
/// "mean_width", "flagged", "cells"}``, the share of the cells of known life (``lives``;
/// NaN: unknown) inside ``[lower, upper]``, how many have one, the mean width over every
/// cell and how many are flagged out of distribution.
///
/// >>> import math, battery_fl
/// >>> s = battery_fl.interval_summary([90.0, 10.0, 0.0], [110.0, 20.0, 5.0],
/// ...                                 [False, True, False], [100.0, 30.0, math.nan])
/// >>> s["covered"], s["labelled"], s["flagged"], s["cells"]
/// (0.5, 2, 1, 3)
#[pyfunction]
fn interval_summary<'py>(
    py: Python<'py>,
    lower: PyArrayLike1<'py, f64, AllowTypeChange>,
    upper: PyArrayLike1<'py, f64, AllowTypeChange>,
    flagged: PyArrayLike1<'py, bool, AllowTypeChange>,
    lives: PyArrayLike1<'py, f64, AllowTypeChange>,
) -> PyResult<Py<PyAny>> {
    let lives: Vec<Option<f64>> = lives.as_array().iter().map(|y| Some(*y)).collect();
    let summary = IntervalSummary::of(
        &lower.as_array().to_vec(),
        &upper.as_array().to_vec(),
        &flagged.as_array().to_vec(),
        &lives,
    )
    .or_raise()?;
    to_python(py, &summary)
}

/// Several :func:`interval_summary` dicts (fleets, nodes) as one over all their cells (the
/// core's ``IntervalSummary::pooled``): coverage weighted by labelled cells, width by cells,
/// counts summed. A dict with another key raises :class:`ConfigError` naming it.
///
/// >>> import battery_fl
/// >>> a = battery_fl.interval_summary([0.0, 0.0], [10.0, 10.0], [False, True], [5.0, 50.0])
/// >>> b = battery_fl.interval_summary([0.0], [40.0], [False], [5.0])
/// >>> s = battery_fl.pooled_interval_summary([a, b])
/// >>> round(s["covered"], 4), s["mean_width"], s["labelled"], s["flagged"], s["cells"]
/// (0.6667, 20.0, 3, 1, 3)
#[pyfunction]
fn pooled_interval_summary(
    py: Python<'_>,
    summaries: Vec<Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let parts = summaries
        .iter()
        .map(|d| config_from_dict::<IntervalSummary>(d, "summary"))
        .collect::<PyResult<Vec<_>>>()?;
    to_python(py, &IntervalSummary::pooled(&parts))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(interval_summary, m)?)?;
    m.add_function(wrap_pyfunction!(pooled_interval_summary, m)?)?;
    m.add_class::<PyIntervalCalibration>()?;
    m.add_class::<PyPredictions>()
}
