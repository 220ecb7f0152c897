//! The `battery_fl._core` native module. Translation only: all logic lives in
//! `battery-fl-core`; each file here mirrors one core module and only converts types
//! (numpy arrays, bytes, dicts), maps errors ([`errors`]) and releases the GIL around
//! long work. The Python package `battery_fl` re-exports this module (`python/battery_fl/`).

mod aggregate;
mod conversion;
mod data;
mod dp;
mod errors;
mod features;
mod federation;
mod fleet_client;
mod genome;
mod model;
mod runtime;
mod secagg;
mod secagg_node;
mod secagg_statistics;
mod server_dp;
mod synthetic;

use pyo3::prelude::*;

/// The native core of the `battery_fl` package.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_COVERAGE", battery_fl_core::model::DEFAULT_COVERAGE)?;
    m.add(
        "DEFAULT_CALIBRATION_FOLDS",
        battery_fl_core::model::DEFAULT_CALIBRATION_FOLDS,
    )?;
    m.add(
        "DEFAULT_CHOICE_MARGIN",
        battery_fl_core::federation::DEFAULT_CHOICE_MARGIN,
    )?;
    m.add(
        "SCORE_BINS",
        battery_fl_core::federation::intervals::SCORE_BINS,
    )?;
    errors::register(m)?;
    data::register(m)?;
    features::register(m)?;
    genome::register(m)?;
    model::register(m)?;
    runtime::register(m)?;
    aggregate::register(m)?;
    dp::register(m)?;
    server_dp::register(m)?;
    secagg::register(m)?;
    secagg_node::register(m)?;
    secagg_statistics::register(m)?;
    federation::register(m)?;
    fleet_client::register(m)?;
    synthetic::register(m)?;
    Ok(())
}
