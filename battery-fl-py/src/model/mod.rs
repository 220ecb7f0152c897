//! Lifetime models (`battery_fl_core::model`): `BatLiNet`, the `LinearModel` (and its
//! federation) and the `VarianceModel` baseline.

mod batlinet;
mod hybrid;
mod linear;
mod linear_steps;
mod variance;

use pyo3::prelude::*;

pub(crate) use batlinet::PyBatLiNet;

/// Keep freed memory in the process instead of returning it to the OS after every tensor:
/// glibc's allocator settings that make a CPU training step about 3x faster, at the cost of
/// a larger resident set. Process-wide, so opt-in: call it once at program start. Returns
/// whether the settings were applied (only on glibc Linux).
#[pyfunction]
fn retain_freed_memory() -> bool {
    battery_fl_core::model::retain_freed_memory()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<batlinet::PyBatLiNet>()?;
    m.add_class::<variance::PyVarianceModel>()?;
    linear::register(m)?;
    linear_steps::register(m)?;
    hybrid::register(m)?;
    m.add_function(wrap_pyfunction!(retain_freed_memory, m)?)?;
    Ok(())
}
