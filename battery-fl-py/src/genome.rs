//! Genome fingerprints (`battery_fl_core::genome`): `GenomeFingerprint`.

use std::collections::BTreeMap;

use battery_fl_core::genome::GenomeFingerprint;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::conversion::{from_json, to_json, vec_f64};
use crate::data::PyBatteryCell;
use crate::errors::CoreResult;

/// What a cell is: chemistry, build and its own early electrochemical signature (the
/// discharge V(Q) curve and dQ/dV of cycle 10), comparable across sources.
///
/// ``distance`` is a weighted sum of per-part distances (0 for identical fingerprints,
/// symmetric); BatLiNet's ``selection="genome"`` picks the nearest references by it.
///
/// >>> from battery_fl import GenomeFingerprint, synthetic
/// >>> a = GenomeFingerprint.from_cell(synthetic.generate_cell("LFP", cycles=12, seed=1))
/// >>> b = GenomeFingerprint.from_cell(synthetic.generate_cell("NMC", cycles=12, seed=1))
/// >>> a.distance(a), a.distance(b) == b.distance(a), a.distance(b) > 1.0
/// (0.0, True, True)
#[pyclass(frozen, eq, name = "GenomeFingerprint", module = "battery_fl")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyGenomeFingerprint {
    inner: GenomeFingerprint,
}

#[pymethods]
impl PyGenomeFingerprint {
    /// Fingerprint a cell (full-signal or discharge-only).
    #[classmethod]
    fn from_cell(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        cell: &Bound<'_, PyBatteryCell>,
    ) -> PyResult<Self> {
        let cell = &cell.get().inner;
        let inner = py
            .detach(|| GenomeFingerprint::from_cell(cell))
            .or_raise()?;
        Ok(PyGenomeFingerprint { inner })
    }

    /// The weighted distance to another fingerprint (default weights).
    fn distance(&self, other: &Self) -> f64 {
        self.inner.distance(&other.inner)
    }

    /// The cell the fingerprint was taken from.
    #[getter]
    fn cell_id(&self) -> &str {
        &self.inner.cell_id
    }

    /// Cathode chemistry, upper-cased.
    #[getter]
    fn cathode(&self) -> Option<&str> {
        self.inner.cathode.as_deref()
    }

    /// Anode material, lower-cased.
    #[getter]
    fn anode(&self) -> Option<&str> {
        self.inner.anode.as_deref()
    }

    /// Form-factor class (``cylindrical``, ``prismatic``, ``pouch``).
    #[getter]
    fn form_factor(&self) -> Option<&str> {
        self.inner.form_factor.as_deref()
    }

    /// Nominal capacity, Ah.
    #[getter]
    fn nominal_capacity_ah(&self) -> f64 {
        self.inner.nominal_capacity_ah
    }

    /// Voltage window (min, max), V.
    #[getter]
    fn voltage_window(&self) -> Option<(f64, f64)> {
        self.inner.voltage_window
    }

    /// Elemental composition (element -> fraction).
    #[getter]
    fn composition(&self) -> BTreeMap<String, f64> {
        self.inner.composition.clone()
    }

    /// Impurities (impurity -> ppm).
    #[getter]
    fn purity_ppm(&self) -> BTreeMap<String, f64> {
        self.inner.purity_ppm.clone()
    }

    /// Discharge capacity of the signature cycle over nominal capacity.
    #[getter]
    fn capacity_ratio(&self) -> f64 {
        self.inner.signature.capacity_ratio
    }

    /// Discharge voltage (V) at evenly spaced normalized capacities 0..1.
    #[getter]
    fn v_of_q<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_f64(py, self.inner.signature.v_of_q.clone())
    }

    /// Normalized dQ/dV (1/V) on evenly spaced bins of 2.0-4.4 V.
    #[getter]
    fn dqdv<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_f64(py, self.inner.signature.dqdv.clone())
    }

    /// dQ/dV peaks as (voltage, height), highest first.
    #[getter]
    fn peaks(&self) -> Vec<(f64, f64)> {
        let peaks = self.inner.signature.peaks.iter();
        peaks.map(|p| (p.voltage_v, p.height)).collect()
    }

    /// The fingerprint as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    /// A fingerprint from JSON.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Ok(PyGenomeFingerprint {
            inner: from_json(text)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "GenomeFingerprint({:?}, cathode={:?}, nominal_capacity_ah={})",
            self.inner.cell_id,
            self.inner.cathode.as_deref().unwrap_or("?"),
            self.inner.nominal_capacity_ah
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGenomeFingerprint>()
}
