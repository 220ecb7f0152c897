//! The allocator policy while models run (`battery_fl_core::runtime`).

use battery_fl_core::runtime::{self, MemoryPolicy};
use pyo3::prelude::*;

use crate::conversion::enum_from_str;

/// While a model trains or predicts, keep freed memory mapped (``"retain"``, the default:
/// about 3x faster CPU training; glibc's defaults come back when the call returns) or leave
/// the C allocator alone (``"system"``). Process-wide; an unknown name is a ``ConfigError``.
#[pyfunction]
fn set_memory_policy(policy: &str) -> PyResult<()> {
    runtime::set_memory_policy(enum_from_str::<MemoryPolicy>("policy", policy)?);
    Ok(())
}

/// The current allocator policy: ``"retain"`` or ``"system"``.
#[pyfunction]
fn memory_policy() -> PyResult<String> {
    crate::conversion::to_json(&runtime::memory_policy()).map(|s| s.trim_matches('"').to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_memory_policy, m)?)?;
    m.add_function(wrap_pyfunction!(memory_policy, m)?)?;
    Ok(())
}
