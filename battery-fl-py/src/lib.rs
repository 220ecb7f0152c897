//! The `battery_fl._core` native module. Translation only: all logic lives in
//! `battery-fl-core`.

use pyo3::prelude::*;

/// The native core of the `battery_fl` package.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
