//! `battery_fl.dp.ServerDp`: the coordinator's side of a DP round (`battery_fl_core::dp::ServerDp`).

use std::sync::Mutex;

use battery_fl_core::dp::{AdaptiveClipConfig, DpConfig, DpMode, ServerDp};
use battery_fl_core::model::ModelParams;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::conversion::{
    arrays_from_params, config_from_dict, enum_from_str, named, positional_names, tensors,
    to_python, ArrayIn,
};
use crate::errors::{lock, CoreResult};

/// A coordinator's differential privacy across the rounds of a run of a mean-based strategy,
/// the same code the in-process simulation runs: each node's noise (``round_noise``), each
/// update clipped to ``clipping_norm`` in ``"central"`` mode (in ``"local"`` mode the nodes
/// clipped before adding their own noise), the mean over the *sampled* count (a fixed, public
/// denominator), the round accounted before anything is released (sampling rate 1: the
/// server knows whom it sampled), and in ``"central"`` mode the server's noise. An exhausted
/// budget (``max_epsilon``) raises :class:`battery_fl.PrivacyError` and releases nothing.
/// Distributed noise without ``secure_aggregation`` raises :class:`battery_fl.ConfigError`.
/// ``adaptive`` (a dict of ``target_unclipped_quantile``, ``learning_rate``,
/// ``count_noise_std``: :func:`battery_fl.dp.default_adaptive_config`) turns on adaptive
/// clipping in ``"central"`` mode without secure aggregation (the server sees each update's
/// norm only there): ``clipping_norm`` is then the first round's, :attr:`clipping_norm` the
/// next round's, and each round also releases and accounts the noisy count of updates that
/// fit under it, as :class:`battery_fl.Simulation` does. Settings left out take the core's
/// defaults.
///
/// >>> import numpy as np
/// >>> from battery_fl import dp
/// >>> server = dp.ServerDp(1e-9, 1.0, mode="central", seed=0)
/// >>> mean = server.release_updates([[np.array([3.0, 4.0])], [np.array([0.3, 0.4])]], sampled=4)
/// >>> [round(v, 4) for v in mean[0].tolist()], server.rounds, server.epsilon > 0
/// ([0.225, 0.3], 1, True)
#[pyclass(frozen, name = "ServerDp", module = "battery_fl.dp")]
#[derive(Debug)]
pub struct PyServerDp {
    inner: Mutex<ServerDp>,
}

fn params(arrays: &[ArrayIn<'_>]) -> Result<ModelParams, battery_fl_core::Error> {
    named(positional_names(arrays.len()), tensors(arrays))
}

#[pymethods]
impl PyServerDp {
    #[new]
    #[pyo3(signature = (noise_multiplier, clipping_norm, *, mode=None, target_delta=None, max_epsilon=None, seed=None, secure_aggregation=false, adaptive=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        noise_multiplier: f64,
        clipping_norm: f64,
        mode: Option<&str>,
        target_delta: Option<f64>,
        max_epsilon: Option<f64>,
        seed: Option<u64>,
        secure_aggregation: bool,
        adaptive: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let defaults = DpConfig::default();
        let mode: DpMode = match mode {
            Some(m) => enum_from_str("mode", m)?,
            None => defaults.mode,
        };
        let config = DpConfig {
            noise_multiplier,
            clipping_norm,
            mode,
            target_delta: target_delta.unwrap_or(defaults.target_delta),
            max_epsilon,
            seed,
            adaptive: adaptive
                .map(|a| config_from_dict::<AdaptiveClipConfig>(a, "adaptive"))
                .transpose()?,
        };
        Ok(PyServerDp {
            inner: Mutex::new(ServerDp::new(config, secure_aggregation).or_raise()?),
        })
    }

    /// ``(clipping_norm, client_std)``: what each of ``sampled`` nodes clips to and the noise
    /// std it adds itself (distributed noise sized for ``min_survivors``).
    #[pyo3(signature = (sampled, *, min_survivors=None))]
    fn client_noise(&self, sampled: usize, min_survivors: Option<usize>) -> PyResult<(f64, f64)> {
        let round = lock(&self.inner)
            .and_then(|s| s.round_noise(sampled, min_survivors))
            .or_raise()?;
        Ok((round.clipping_norm, round.client_std()))
    }

    /// The released mean of ``deltas`` (each node's update minus the global weights, a list
    /// of arrays per node) from a round with ``sampled`` nodes, as a list of float32 arrays.
    #[pyo3(signature = (deltas, sampled, *, min_survivors=None))]
    fn release_updates<'py>(
        &self,
        py: Python<'py>,
        deltas: Vec<Vec<ArrayIn<'py>>>,
        sampled: usize,
        min_survivors: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let deltas = deltas
            .iter()
            .map(|d| params(d))
            .collect::<Result<Vec<_>, _>>()
            .or_raise()?;
        let mean = py
            .detach(|| lock(&self.inner)?.release_updates(deltas, sampled, min_survivors))
            .or_raise()?;
        arrays_from_params(py, &mean)
    }

    /// The released mean from ``mean``, the plain mean of ``arrived`` equally weighted,
    /// already clipped deltas (secure aggregation's output), in a round with ``sampled``
    /// nodes.
    #[pyo3(signature = (mean, arrived, sampled, *, min_survivors=None))]
    fn release<'py>(
        &self,
        py: Python<'py>,
        mean: Vec<ArrayIn<'py>>,
        arrived: usize,
        sampled: usize,
        min_survivors: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mean = params(&mean).or_raise()?;
        let released = py
            .detach(|| lock(&self.inner)?.release(&mean, arrived, sampled, min_survivors))
            .or_raise()?;
        arrays_from_params(py, &released)
    }

    /// The clipping norm of the next round (moved by adaptive clipping, else the configured
    /// one).
    #[getter]
    fn clipping_norm(&self) -> PyResult<f64> {
        Ok(lock(&self.inner).or_raise()?.clipping_norm())
    }

    /// Epsilon spent so far at ``target_delta`` (``None`` before the first release).
    #[getter]
    fn epsilon(&self) -> PyResult<Option<f64>> {
        Ok(lock(&self.inner).or_raise()?.epsilon())
    }

    /// Rounds accounted so far.
    #[getter]
    fn rounds(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.rounds())
    }

    fn __repr__(&self) -> PyResult<String> {
        let s = lock(&self.inner).or_raise()?;
        let c = s.config();
        Ok(format!(
            "ServerDp({:?}, noise_multiplier={}, clipping_norm={}, adaptive={}, rounds={}, \
             epsilon={:?})",
            c.mode,
            c.noise_multiplier,
            s.clipping_norm(),
            c.adaptive.is_some(),
            s.rounds(),
            s.epsilon()
        ))
    }
}

/// The core's DP defaults (``DpConfig::default()``) as a dict: ``noise_multiplier``,
/// ``clipping_norm``, ``mode``, ``target_delta``, ... (what every DP setting left out takes).
///
/// >>> from battery_fl import dp
/// >>> dp.default_config()["mode"], dp.default_config()["target_delta"]
/// ('central', 1e-05)
#[pyfunction(name = "dp_default_config")]
fn default_config(py: Python<'_>) -> PyResult<Py<PyAny>> {
    to_python(py, &DpConfig::default())
}

/// The core's adaptive-clipping defaults (``AdaptiveClipConfig::default()``) as a dict:
/// ``target_unclipped_quantile``, ``learning_rate`` and ``count_noise_std`` (``None``:
/// ``m / 20`` for ``m`` sampled nodes).
///
/// >>> from battery_fl import dp
/// >>> dp.default_adaptive_config()
/// {'target_unclipped_quantile': 0.5, 'learning_rate': 0.2, 'count_noise_std': None}
#[pyfunction(name = "dp_default_adaptive_config")]
fn default_adaptive_config(py: Python<'_>) -> PyResult<Py<PyAny>> {
    to_python(py, &AdaptiveClipConfig::default())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyServerDp>()?;
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    m.add_function(wrap_pyfunction!(default_adaptive_config, m)?)
}
