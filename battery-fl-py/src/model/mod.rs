//! Lifetime models (`battery_fl_core::model`): `BatLiNet`, the `LinearModel` (and its
//! federation) and the `VarianceModel` baseline.

mod batlinet;
mod dpsgd;
mod gated;
mod hybrid;
mod intervals;
mod linear;
mod linear_steps;
mod variance;

use battery_fl_core::model::BatLiNetPreset;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::conversion::{enum_from_str, to_python};

pub(crate) use batlinet::PyBatLiNet;
pub(crate) use intervals::PyIntervalCalibration;

/// The featurizer and model settings of a named BatLiNet recipe (one of
/// ``BATLINET_PRESETS``: ``default``, the published settings; ``synthetic``, the main job's
/// synthetic fleets; ``matr``, the recipe chosen by cross-validation on MATR's training
/// cells), as ``{"featurizer": ..., "model": ...}`` (``Featurizer.from_json`` and
/// ``BatLiNet(**model)`` take them).
///
/// >>> import json, battery_fl
/// >>> p = battery_fl.batlinet_preset("matr")
/// >>> p["model"]["inter_features"], p["model"]["input_channels"], p["featurizer"]["first_cycle"]
/// ('cycle_difference', [1], 2)
/// >>> battery_fl.Featurizer.from_json(json.dumps(p["featurizer"])).interp_dim
/// 200
#[pyfunction]
fn batlinet_preset<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let preset: BatLiNetPreset = enum_from_str("preset", name)?;
    let (featurizer, model) = preset.configs();
    let out = PyDict::new(py);
    out.set_item("featurizer", to_python(py, &featurizer)?)?;
    out.set_item("model", to_python(py, &model)?)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let names: Vec<&str> = BatLiNetPreset::ALL.map(BatLiNetPreset::name).to_vec();
    m.add("BATLINET_PRESETS", PyTuple::new(m.py(), names)?)?;
    m.add_function(wrap_pyfunction!(batlinet_preset, m)?)?;
    m.add_class::<batlinet::PyBatLiNet>()?;
    m.add_function(wrap_pyfunction!(dpsgd::membership_auc, m)?)?;
    m.add_function(wrap_pyfunction!(dpsgd::dp_default_record_config, m)?)?;
    m.add_class::<variance::PyVarianceModel>()?;
    linear::register(m)?;
    linear_steps::register(m)?;
    hybrid::register(m)?;
    gated::register(m)?;
    intervals::register(m)?;
    Ok(())
}
