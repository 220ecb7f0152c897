//! `LinearModel` and `federate_linear`: the linear early-life model and its exact federation.

use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::dp::RecordPrivacy;
use battery_fl_core::federation::{
    federate_linear, LinearFederation, LinearFleet, SecureAggregation,
};
use battery_fl_core::model::{
    select_linear, LinearConfig, LinearModel, LinearPrediction, LinearRow, DEFAULT_COVERAGE,
};
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::conversion::{from_json, to_json, to_python, vec_f64, BoolArray, F64Array};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;

pub(crate) fn rows(
    config: &LinearConfig,
    cells: &[&Cell],
) -> battery_fl_core::Result<Vec<LinearRow>> {
    config.rows(cells, &LabelConfig::default())
}

fn split(pairs: Vec<(f64, bool)>) -> (Vec<f64>, Vec<bool>) {
    pairs.into_iter().unzip()
}

/// Ridge regression of ln(cycle life) on ten early-life features (Severson's delta Q(V)
/// and fade features, the early fade split into its square-root and linear parts,
/// temperature, C-rates) with one offset per cathode; feature set and
/// ``lambda_`` chosen by closed-form leave-one-out error on the training cells. Predictions are
/// bounded around the training lives.
///
/// >>> from battery_fl import LinearModel, synthetic
/// >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=16, seed=1)[0].cells
/// >>> model = LinearModel.fit(cells[:12])
/// >>> lives, bounded = model.predict_bounded(cells[12:])
/// >>> bool((lives > 100).all()), bool(bounded.any())
/// (True, False)
#[pyclass(frozen, eq, name = "LinearModel", module = "battery_fl")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyLinearModel {
    pub(crate) inner: LinearModel,
}

#[pymethods]
impl PyLinearModel {
    /// Fit on labelled cells, choosing the feature set and ``lambda_`` by leave-one-out.
    #[classmethod]
    fn fit(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
    ) -> PyResult<Self> {
        let cells = cell_refs(&cells);
        let config = LinearConfig::default();
        let (inner, _) = py
            .detach(|| select_linear(&rows(&config, &cells)?, &config))
            .or_raise()?;
        Ok(PyLinearModel { inner })
    }

    /// Predicted cycle lives (float64, bounded).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(self.predict_bounded(py, cells)?.0)
    }

    /// ``(lives, bounded)``: predicted cycle lives and whether each hit the bound.
    fn predict_bounded<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<(F64Array<'py>, BoolArray<'py>)> {
        let cells = cell_refs(&cells);
        let config = LinearConfig {
            early_life: self.inner.early_life.clone(),
            ..Default::default()
        };
        let (lives, bounded) = split(
            py.detach(|| self.inner.predict_rows(&rows(&config, &cells)?))
                .or_raise()?,
        );
        Ok((vec_f64(py, lives), PyArray1::from_vec(py, bounded)))
    }

    /// :class:`LinearPredictions` ``(life, lower, upper, out_of_distribution)``: predictions
    /// with conformal intervals at ``coverage`` (default the core's ``DEFAULT_COVERAGE``), calibrated on labelled
    /// ``calibration`` cells: the cells the model was
    /// fitted on (``fitted=True``, closed-form leave-one-out) or cells it never saw
    /// (``fitted=False``); a cell is flagged out of distribution when its cathode is in
    /// neither the training nor the calibration cells, or it lies further from the training
    /// data (leverage) than every calibration cell.
    ///
    /// >>> from battery_fl import LinearModel, synthetic
    /// >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=40, seed=1)[0].cells
    /// >>> model = LinearModel.fit(cells[:30])
    /// >>> lives, lower, upper, ood = model.predict_intervals(cells[30:], cells[:30], coverage=0.8)
    /// >>> bool((lower <= lives).all() and (lives <= upper).all())
    /// True
    /// >>> p = model.predict_intervals(cells[30:], cells[:30], coverage=0.8)
    /// >>> # the fleet's last 8 cells are NMC, a chemistry its first 30 (all LFP) lack: flagged
    /// >>> [c.cathode for c in cells[30:]].count("NMC"), int(p.out_of_distribution.sum())
    /// (8, 8)
    #[pyo3(signature = (cells, calibration, *, coverage=None, fitted=true))]
    fn predict_intervals<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
        calibration: Vec<Bound<'py, PyBatteryCell>>,
        coverage: Option<f64>,
        fitted: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cells = cell_refs(&cells);
        let calibration = cell_refs(&calibration);
        let coverage = coverage.unwrap_or(DEFAULT_COVERAGE);
        let config = LinearConfig {
            early_life: self.inner.early_life.clone(),
            ..Default::default()
        };
        let preds = py
            .detach(|| {
                let cal = self
                    .inner
                    .calibrate(&rows(&config, &calibration)?, fitted)?;
                self.inner
                    .intervals(&rows(&config, &cells)?, &cal, coverage)
            })
            .or_raise()?;
        interval_arrays(py, &preds)
    }

    /// The feature set read (``variance``, ``fade``, ``discharge``, ``conditions``, ``aging``
    /// or ``full``).
    #[getter]
    fn feature_set(&self) -> &'static str {
        self.inner.feature_set.name()
    }

    /// The ridge strength (``inf``: the model is another fleets' model used as it is).
    #[getter]
    fn lambda_(&self) -> f64 {
        self.inner.lambda
    }

    /// The fitted model as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    /// A fitted model from JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Ok(PyLinearModel {
            inner: from_json(text)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "LinearModel(feature_set={:?}, lambda_={})",
            self.inner.feature_set.name(),
            self.inner.lambda
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

/// What one fleet ends with in a linear federation: its local, personalized and global models
/// (and the other fleets' model, ``shared``) and, per cathode chemistry of its cells, which
/// one it uses. It stays with the fleet.
#[pyclass(frozen, name = "LinearFleet", module = "battery_fl")]
#[derive(Debug)]
pub struct PyLinearFleet {
    pub(crate) inner: LinearFleet,
}

#[pymethods]
impl PyLinearFleet {
    /// Predicted cycle lives with the fleet's model for each cell's chemistry.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells = cell_refs(&cells);
        let config = LinearConfig {
            early_life: self.inner.local.early_life.clone(),
            ..Default::default()
        };
        let (lives, _) = split(
            py.detach(|| self.inner.predict_rows(&rows(&config, &cells)?))
                .or_raise()?,
        );
        Ok(vec_f64(py, lives))
    }

    /// :class:`LinearPredictions` ``(life, lower, upper, out_of_distribution)``: predictions
    /// with the fleet's model for
    /// each cell's chemistry and conformal intervals at ``coverage`` (default
    /// ``DEFAULT_COVERAGE``), each model calibrated on the fleet's own training cells
    /// ``train`` (leave-one-out for the models fitted on them).
    #[pyo3(signature = (cells, train, *, coverage=None))]
    fn predict_intervals<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
        train: Vec<Bound<'py, PyBatteryCell>>,
        coverage: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (cells, train) = (cell_refs(&cells), cell_refs(&train));
        let config = LinearConfig {
            early_life: self.inner.local.early_life.clone(),
            ..Default::default()
        };
        let coverage = coverage.unwrap_or(DEFAULT_COVERAGE);
        let preds = py
            .detach(|| {
                self.inner
                    .intervals(&rows(&config, &train)?, &rows(&config, &cells)?, coverage)
            })
            .or_raise()?;
        interval_arrays(py, &preds)
    }

    /// Its model alone.
    #[getter]
    fn local(&self) -> PyLinearModel {
        PyLinearModel {
            inner: self.inner.local.clone(),
        }
    }

    /// Its ridge toward the other fleets' model.
    #[getter]
    fn personalized(&self) -> PyLinearModel {
        PyLinearModel {
            inner: self.inner.personalized.clone(),
        }
    }

    /// The other fleets' model with the shared settings.
    #[getter]
    fn shared(&self) -> PyLinearModel {
        PyLinearModel {
            inner: self.inner.shared.clone(),
        }
    }

    /// The federation's model (fitted on every fleet's cells), the fleet's default choice.
    #[getter]
    fn global_model(&self) -> PyLinearModel {
        PyLinearModel {
            inner: self.inner.global.clone(),
        }
    }

    /// Per cathode chemistry: ``{"cathode", "cells", "choice", "error"}`` dicts.
    #[getter]
    fn choices(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner.choices)
    }

    /// Held-out mean squared error of ln(life) of the local selection (nested leave-one-out),
    /// and of the choices.
    #[getter]
    fn errors(&self) -> (f64, f64) {
        (self.inner.local_error, self.inner.personal_error())
    }
}

/// The outcome of :func:`federate_linear`.
#[pyclass(frozen, name = "LinearFederation", module = "battery_fl")]
#[derive(Debug)]
pub struct PyLinearFederation {
    inner: LinearFederation,
}

#[pymethods]
impl PyLinearFederation {
    /// The model fitted on every fleet's cells (exactly the pooled fit).
    #[getter]
    fn global_model(&self) -> PyLinearModel {
        PyLinearModel {
            inner: self.inner.global.clone(),
        }
    }

    /// Each fleet's models, in input order.
    #[getter]
    fn fleets(&self) -> Vec<PyLinearFleet> {
        self.inner
            .fleets
            .iter()
            .map(|f| PyLinearFleet { inner: f.clone() })
            .collect()
    }

    /// What the releases spent under ``epsilon``: ``{"epsilon", "delta", "noise_multiplier",
    /// "mode", "releases"}``, or ``None`` for exact sums.
    #[getter]
    fn privacy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.inner.privacy)
    }
}

/// The linear settings the Python keywords give: per-chemistry choice, the choice margin
/// (`None`: the core's default), and record-level DP at `epsilon` per cell (noise seeded by
/// `noise_seed`, mode by the aggregation).
pub(crate) fn linear_config(
    per_chemistry_choice: bool,
    choice_margin: Option<f64>,
    epsilon: Option<f64>,
    noise_seed: Option<u64>,
    secure_aggregation: bool,
) -> LinearConfig {
    let privacy = epsilon.map(|e| {
        RecordPrivacy {
            seed: noise_seed,
            ..RecordPrivacy::with_epsilon(e)
        }
        .for_aggregation(secure_aggregation)
    });
    let defaults = LinearConfig::default();
    LinearConfig {
        per_chemistry_choice,
        choice_margin: choice_margin.unwrap_or(defaults.choice_margin),
        privacy,
        ..defaults
    }
}

/// Fit the linear early-life model over fleets (each a list of labelled training cells, at
/// least two fleets) from securely summed statistics, and each fleet's personal model (see
/// ``battery_fl_core::federation::federate_linear``): the global model unless its local or
/// personalized fit validates below it on its cells by a paired t-test at ``choice_margin``
/// (about that many standard errors on many cells, more on few; ``None``: the core's
/// ``DEFAULT_CHOICE_MARGIN``; ``0``: the least error; under ``epsilon``
/// the default is its local model).
///
/// >>> from battery_fl import federate_linear, synthetic
/// >>> fleets = [f.cells for f in synthetic.generate_fleets(fleets=3, cells_per_fleet=10, seed=2)]
/// >>> fed = federate_linear(fleets)
/// >>> len(fed.fleets), fed.fleets[0].predict(fleets[0][:2]).shape
/// (3, (2,))
///
/// With ``epsilon``, what each fleet sends is record-level differentially private, ``epsilon``
/// per cell at delta 1e-5 (distributed noise under secure aggregation, local noise without;
/// ``noise_seed`` makes the noise reproducible, ``None`` draws it from the OS):
///
/// >>> fed = federate_linear(fleets, epsilon=8.0, noise_seed=1)
/// >>> round(fed.privacy["epsilon"], 3), fed.privacy["mode"]
/// (8.0, 'distributed')
#[pyfunction]
#[pyo3(name = "federate_linear", signature = (fleets, *, secure_aggregation=true, per_chemistry_choice=false, choice_margin=None, seed=0, epsilon=None, noise_seed=None))]
#[allow(clippy::too_many_arguments)]
fn federate_linear_py(
    py: Python<'_>,
    fleets: Vec<Vec<Bound<'_, PyBatteryCell>>>,
    secure_aggregation: bool,
    per_chemistry_choice: bool,
    choice_margin: Option<f64>,
    seed: u64,
    epsilon: Option<f64>,
    noise_seed: Option<u64>,
) -> PyResult<PyLinearFederation> {
    let config = linear_config(
        per_chemistry_choice,
        choice_margin,
        epsilon,
        noise_seed,
        secure_aggregation,
    );
    let cells: Vec<Vec<&Cell>> = fleets.iter().map(|f| cell_refs(f)).collect();
    let secure = secure_aggregation.then(SecureAggregation::default);
    let inner = py
        .detach(|| {
            let rows = cells
                .iter()
                .map(|f| rows(&config, f))
                .collect::<battery_fl_core::Result<Vec<_>>>()?;
            federate_linear(&rows, &config, secure.as_ref(), seed)
        })
        .or_raise()?;
    Ok(PyLinearFederation { inner })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLinearModel>()?;
    m.add_class::<PyLinearFleet>()?;
    m.add_class::<PyLinearFederation>()?;
    m.add_function(wrap_pyfunction!(federate_linear_py, m)?)?;
    m.add("LinearPredictions", linear_predictions_type(m.py())?)?;
    Ok(())
}

/// The fields of ``LinearPredictions``: the names :class:`Predictions` (BatLiNet's) gives
/// the same arrays, so code reading ``p.lower`` or ``p.out_of_distribution`` serves both.
const LINEAR_PREDICTION_FIELDS: [&str; 4] = ["life", "lower", "upper", "out_of_distribution"];

/// ``battery_fl.LinearPredictions``: a named tuple (it still unpacks as the 4-tuple it was).
static LINEAR_PREDICTIONS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn linear_predictions_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    let ty = LINEAR_PREDICTIONS.get_or_try_init(py, || {
        let ty = py
            .import("collections")?
            .getattr("namedtuple")?
            .call1(("LinearPredictions", LINEAR_PREDICTION_FIELDS))?;
        ty.setattr("__module__", "battery_fl")?;
        ty.setattr(
            "__doc__",
            "Linear predictions with intervals, one array per field: ``life``, ``lower``, \
             ``upper`` (cycles) and ``out_of_distribution``, named as BatLiNet's \
             :class:`Predictions` names them; unpacks as a 4-tuple.",
        )?;
        Ok::<_, PyErr>(ty.unbind())
    })?;
    Ok(ty.bind(py))
}

/// `LinearPredictions(life, lower, upper, out_of_distribution)` of linear predictions.
fn interval_arrays<'py>(
    py: Python<'py>,
    preds: &[LinearPrediction],
) -> PyResult<Bound<'py, PyAny>> {
    let pick = |f: fn(&LinearPrediction) -> f64| preds.iter().map(f).collect::<Vec<_>>();
    linear_predictions_type(py)?.call1((
        vec_f64(py, pick(|p| p.life)),
        vec_f64(py, pick(|p| p.lower)),
        vec_f64(py, pick(|p| p.upper)),
        PyArray1::from_vec(py, preds.iter().map(|p| p.out_of_distribution).collect()),
    ))
}
