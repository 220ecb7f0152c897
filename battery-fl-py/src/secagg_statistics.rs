//! `battery_fl.secagg.statistics_protocol` / `encode_statistics` / `decode_statistics`
//! (`battery_fl_core::secagg::statistics`): secure sums of float64 statistics, encoded and
//! decoded by the core for the Flower nodes and server alike.

use battery_fl_core::secagg::statistics;
use numpy::{AllowTypeChange, PyArray1, PyArrayLike1};
use pyo3::prelude::*;

use crate::conversion::{to_python, vec_f32, vec_f64};
use crate::errors::CoreResult;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(statistics_protocol, m)?)?;
    m.add_function(wrap_pyfunction!(encode_statistics, m)?)?;
    m.add_function(wrap_pyfunction!(decode_statistics, m)?)?;
    m.add("STATISTICS_BOUND", statistics::STATISTICS_BOUND)?;
    Ok(())
}

/// The :class:`SecAggServer` settings (a dict of its keyword arguments) of a secure sum of
/// statistics over ``parties`` nodes: 64-bit modulus, every node at weight 1, values within
/// ±``STATISTICS_BOUND``, the finest grid that cannot wrap.
///
/// >>> from battery_fl import secagg
/// >>> p = secagg.statistics_protocol(3)
/// >>> p["modulus_bits"], p["max_weight"], p["target_range"] == 2**52
/// (64, 1.0, True)
#[pyfunction]
#[pyo3(signature = (parties, *, threshold=None, neighbours=None))]
fn statistics_protocol(
    py: Python<'_>,
    parties: usize,
    threshold: Option<usize>,
    neighbours: Option<usize>,
) -> PyResult<Py<PyAny>> {
    let config = statistics::statistics_config(parties, neighbours, threshold).or_raise()?;
    to_python(py, &config)
}

/// What a node masks for float64 ``values``: the float32 high parts, then the float32
/// remainders (``2 * len(values)`` entries), to be sent at weight 1. A value that is not
/// finite or lies outside ±``STATISTICS_BOUND`` raises :class:`battery_fl.ConfigError`.
///
/// >>> from battery_fl import secagg
/// >>> secagg.encode_statistics([1.0 + 2**-30]).tolist() == [1.0, 2**-30]
/// True
#[pyfunction]
fn encode_statistics<'py>(
    py: Python<'py>,
    values: PyArrayLike1<'py, f64, AllowTypeChange>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let values = values.as_array().to_vec();
    Ok(vec_f32(
        py,
        statistics::encode_statistics(&values).or_raise()?,
    ))
}

/// The float64 sum of the statistics from a secure sum's ``SecAggResult.encoded_sum`` over
/// ``survivors`` of ``parties`` nodes (the ``parties`` the protocol was set up for). A weight
/// prefix other than every survivor at weight 1 raises :class:`battery_fl.SecAggError`.
#[pyfunction]
#[pyo3(signature = (encoded_sum, *, survivors, parties))]
fn decode_statistics<'py>(
    py: Python<'py>,
    encoded_sum: PyArrayLike1<'py, u64, AllowTypeChange>,
    survivors: usize,
    parties: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let config = statistics::statistics_config(parties, None, None).or_raise()?;
    let sum = encoded_sum.as_array().to_vec();
    Ok(vec_f64(
        py,
        statistics::decode_statistics(&config, &sum, survivors).or_raise()?,
    ))
}
