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

use pyo3::prelude::*;

pub(crate) use batlinet::PyBatLiNet;
pub(crate) use intervals::PyIntervalCalibration;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
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
