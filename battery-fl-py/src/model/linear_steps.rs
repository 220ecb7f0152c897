//! `LinearSteps`: the linear federation's steps for one party, so that fleets on different
//! machines (Flower) run the code `federate_linear` runs in one process.

use battery_fl_core::data::Cell;
use battery_fl_core::dp::GaussianNoise;
use battery_fl_core::federation::{
    linear_share, linear_statistics, linear_total, SharedLinear, RELEASES,
};
use battery_fl_core::model::{LinearConfig, LINEAR_STATISTICS_LEN};
use numpy::PyArray1;
use pyo3::prelude::*;

use super::linear::{linear_config, rows, PyLinearFleet, PyLinearModel};
use crate::conversion::{to_python, vec_f64};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;

/// One party's steps of :func:`federate_linear` among ``fleets`` fleets, for fleets that sit
/// on different machines (the Flower apps run them):
///
/// 1. each fleet sends :meth:`share` (its summed statistics; with ``epsilon``, clamped,
///    mapped and noised) to a secure sum;
/// 2. each fleet sends :meth:`errors` (its cells' errors of the models fitted on the others)
///    for that ``total`` to a second secure sum;
/// 3. each fleet computes :meth:`fleet` (its models and its choice, at home); anyone can
///    compute :meth:`global_model`.
///
/// >>> import numpy as np
/// >>> from battery_fl import LinearSteps, federate_linear, synthetic
/// >>> fleets = [f.cells for f in synthetic.generate_fleets(fleets=3, cells_per_fleet=10, seed=2)]
/// >>> steps = LinearSteps(3)
/// >>> total = sum(steps.share(cells) for cells in fleets)
/// >>> errors = sum(steps.errors(cells, total) for cells in fleets)
/// >>> model, error = steps.global_model(total, errors)
/// >>> ref = federate_linear(fleets, secure_aggregation=False)
/// >>> bool(np.allclose(model.predict(fleets[0]), ref.global_model.predict(fleets[0])))
/// True
#[pyclass(name = "LinearSteps", module = "battery_fl")]
#[derive(Debug)]
pub struct PyLinearSteps {
    config: LinearConfig,
    fleets: usize,
    noise: Option<GaussianNoise>,
}

impl PyLinearSteps {
    fn shared(&self, total: &[f64]) -> battery_fl_core::Result<SharedLinear> {
        SharedLinear::new(linear_total(total, &self.config)?, &self.config)
    }
}

#[pymethods]
impl PyLinearSteps {
    /// Steps among ``fleets`` fleets with :func:`federate_linear`'s settings (``choice_margin``:
    /// how clearly a fleet's own fit must validate below its default to replace it;
    /// ``epsilon``: record-level DP per cell; ``noise_seed`` makes this party's noise
    /// reproducible, ``None`` draws it from the OS).
    #[new]
    #[pyo3(signature = (fleets, *, secure_aggregation=true, per_chemistry_choice=false, choice_margin=None, epsilon=None, noise_seed=None))]
    fn new(
        fleets: usize,
        secure_aggregation: bool,
        per_chemistry_choice: bool,
        choice_margin: Option<f64>,
        epsilon: Option<f64>,
        noise_seed: Option<u64>,
    ) -> PyResult<Self> {
        let config = linear_config(
            per_chemistry_choice,
            choice_margin,
            epsilon,
            noise_seed,
            secure_aggregation,
        );
        config.validate().or_raise()?;
        let noise = match &config.privacy {
            Some(p) => {
                p.report(fleets, RELEASES).or_raise()?;
                Some(p.noise().or_raise()?)
            }
            None => None,
        };
        Ok(PyLinearSteps {
            config,
            fleets,
            noise,
        })
    }

    /// Length of a :meth:`share` (public).
    #[getter]
    fn share_len(&self) -> usize {
        LINEAR_STATISTICS_LEN
    }

    /// Length of an :meth:`errors` vector for the first sum ``total`` (one per candidate
    /// setting; anyone can compute it from the total).
    fn errors_len(&self, total: Vec<f64>) -> PyResult<usize> {
        Ok(self.shared(&total).or_raise()?.candidates().len())
    }

    /// Step 1: what this fleet sends to the first secure sum (float64).
    fn share<'py>(
        &mut self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells: Vec<&Cell> = cell_refs(&cells);
        let (config, fleets, noise) = (&self.config, self.fleets, self.noise.as_mut());
        let v = py
            .detach(|| {
                let own = linear_statistics(&rows(config, &cells)?, config)?;
                linear_share(&own, config, fleets, noise)
            })
            .or_raise()?;
        Ok(vec_f64(py, v))
    }

    /// Step 2: what this fleet sends to the second secure sum, given the first sum ``total``.
    fn errors<'py>(
        &mut self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
        total: Vec<f64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let cells: Vec<&Cell> = cell_refs(&cells);
        let shared = self.shared(&total).or_raise()?;
        let (config, fleets, noise) = (&self.config, self.fleets, self.noise.as_mut());
        let v = py
            .detach(|| shared.errors(&rows(config, &cells)?, config, fleets, noise))
            .or_raise()?;
        Ok(vec_f64(py, v))
    }

    /// Step 3, at a fleet: its models and its choice among them, from its cells and both sums.
    fn fleet(
        &self,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        total: Vec<f64>,
        errors: Vec<f64>,
    ) -> PyResult<PyLinearFleet> {
        let cells: Vec<&Cell> = cell_refs(&cells);
        let config = &self.config;
        let inner = py
            .detach(|| {
                self.shared(&total)?
                    .fleet(&rows(config, &cells)?, &errors, config)
            })
            .or_raise()?;
        Ok(PyLinearFleet { inner })
    }

    /// Step 3, anywhere: the global model and its mean leave-one-fleet-out error of ln(life).
    fn global_model(&self, total: Vec<f64>, errors: Vec<f64>) -> PyResult<(PyLinearModel, f64)> {
        let (inner, error) = self
            .shared(&total)
            .and_then(|s| s.global(&errors, &self.config))
            .or_raise()?;
        Ok((PyLinearModel { inner }, error))
    }

    /// What the two releases spend per cell (``None`` without ``epsilon``), as
    /// :attr:`LinearFederation.privacy`.
    #[getter]
    fn privacy(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let report = self
            .config
            .privacy
            .as_ref()
            .map(|p| p.report(self.fleets, RELEASES))
            .transpose()
            .or_raise()?;
        to_python(py, &report)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLinearSteps>()
}
