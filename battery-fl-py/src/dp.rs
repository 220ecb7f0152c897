//! Differential privacy (`battery_fl_core::dp`), exposed as `battery_fl.dp`: `clip`,
//! `l2_norm`, `add_noise`, `GaussianNoise`, `RoundNoise`, `RdpAccountant`.
//!
//! An update is one float32 array or a list of them (a model's parameters); functions return
//! the same shape of thing, leaving their input untouched. The L2 norm is over all values.

use std::sync::Mutex;

use battery_fl_core::dp::{
    check_mode, clip_l2, DpConfig, DpFloor, DpMode, GaussianNoise, RdpAccountant, RoundNoise,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::conversion::{enum_from_str, from_json, to_json, Update};
use crate::errors::{lock, CoreResult};

/// ``update`` clipped to L2 norm ``max_norm`` (a copy; unchanged when already within it).
///
/// >>> import numpy as np
/// >>> from battery_fl import dp
/// >>> [round(v, 4) for v in dp.clip(np.array([3.0, 4.0]), 1.0).tolist()]
/// [0.6, 0.8]
/// >>> unchanged = dp.clip([np.array([0.3]), np.array([0.4])], 1.0)
/// >>> [a.dtype.name for a in unchanged], bool(unchanged[1][0] == np.float32(0.4))
/// (['float32', 'float32'], True)
#[pyfunction]
fn clip(py: Python<'_>, update: &Bound<'_, PyAny>, max_norm: f64) -> PyResult<Py<PyAny>> {
    let update = Update::extract(update)?;
    let mut params = update.to_params()?;
    py.detach(|| clip_l2(&mut params, max_norm)).or_raise()?;
    update.wrap(py, &params)
}

/// The L2 norm of an update over all its values (accumulated in float64).
///
/// >>> import numpy as np
/// >>> from battery_fl import dp
/// >>> dp.l2_norm([np.array([3.0]), np.array([[4.0]])])
/// 5.0
#[pyfunction]
fn l2_norm(update: &Bound<'_, PyAny>) -> PyResult<f64> {
    Ok(Update::extract(update)?.to_params()?.l2_norm())
}

/// ``update`` plus independent ``N(0, std^2)`` noise on every value (a copy), from a ChaCha20
/// CSPRNG keyed from the OS, or from ``seed`` for reproducible tests and simulations.
///
/// >>> import numpy as np
/// >>> from battery_fl import dp
/// >>> a = dp.add_noise(np.zeros(1000), 0.5, seed=1)
/// >>> bool(np.array_equal(a, dp.add_noise(np.zeros(1000), 0.5, seed=1))), 0.4 < float(a.std()) < 0.6
/// (True, True)
#[pyfunction]
#[pyo3(signature = (update, std, *, seed=None))]
fn add_noise(
    py: Python<'_>,
    update: &Bound<'_, PyAny>,
    std: f64,
    seed: Option<u64>,
) -> PyResult<Py<PyAny>> {
    let update = Update::extract(update)?;
    let mut params = update.to_params()?;
    py.detach(|| GaussianNoise::from_optional_seed(seed)?.add_to_params(&mut params, std))
        .or_raise()?;
    update.wrap(py, &params)
}

/// A source of Gaussian noise (ChaCha20 keyed from the OS, or from ``seed``). Successive
/// calls draw independent noise; the same seed replays the same sequence.
///
/// >>> import numpy as np
/// >>> from battery_fl import dp
/// >>> g = dp.GaussianNoise(seed=3)
/// >>> a, b = g.add(np.zeros(4), 1.0), g.add(np.zeros(4), 1.0)
/// >>> bool((a != b).all()), g.calls
/// (True, 2)
#[pyclass(frozen, name = "GaussianNoise", module = "battery_fl.dp")]
#[derive(Debug)]
pub struct PyGaussianNoise {
    inner: Mutex<GaussianNoise>,
}

#[pymethods]
impl PyGaussianNoise {
    #[new]
    #[pyo3(signature = (seed=None))]
    fn new(seed: Option<u64>) -> PyResult<Self> {
        let inner = GaussianNoise::from_optional_seed(seed).or_raise()?;
        Ok(PyGaussianNoise {
            inner: Mutex::new(inner),
        })
    }

    /// ``update`` plus ``N(0, std^2)`` noise on every value (a copy).
    fn add(&self, py: Python<'_>, update: &Bound<'_, PyAny>, std: f64) -> PyResult<Py<PyAny>> {
        let update = Update::extract(update)?;
        let mut params = update.to_params()?;
        py.detach(|| lock(&self.inner)?.add_to_params(&mut params, std))
            .or_raise()?;
        update.wrap(py, &params)
    }

    /// One sample of ``N(0, std^2)``.
    fn sample(&self, std: f64) -> PyResult<f64> {
        lock(&self.inner).and_then(|mut g| g.sample(std)).or_raise()
    }

    /// How many noise calls this source has served.
    #[getter]
    fn calls(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.calls())
    }

    fn __repr__(&self) -> String {
        "GaussianNoise(<secret key>)".into()
    }
}

/// The noise scales of one DP round with ``num_clients`` clients, noise multiplier ``z`` and
/// clipping norm ``C``: ``mode`` ``"central"`` (the server adds ``zC`` to the sum),
/// ``"local"`` (each client adds ``zC``) or ``"distributed"`` (each client adds
/// ``zC / sqrt(t)``, for secure aggregation; ``t`` = ``min_survivors``, the fewest survivors
/// the round accepts, default ``num_clients``). The mean is always ``sum / num_clients``
/// (the sampled count, fixed before the round), and the accountant is given
/// :meth:`effective_noise_multiplier` of the survivors.
///
/// >>> from battery_fl import dp
/// >>> r = dp.RoundNoise("distributed", 1.0, 2.0, 4)
/// >>> r.sum_std, r.client_std, r.server_sum_std
/// (2.0, 1.0, 0.0)
/// >>> round(r.effective_noise_multiplier(2), 4), dp.RoundNoise("distributed", 1.0, 2.0, 4, min_survivors=2).effective_noise_multiplier(2)
/// (0.7071, 1.0)
#[pyclass(frozen, name = "RoundNoise", module = "battery_fl.dp")]
#[derive(Debug)]
pub struct PyRoundNoise {
    inner: RoundNoise,
}

#[pymethods]
impl PyRoundNoise {
    #[new]
    #[pyo3(signature = (mode, noise_multiplier, clipping_norm, num_clients, *, min_survivors=None))]
    fn new(
        mode: &str,
        noise_multiplier: f64,
        clipping_norm: f64,
        num_clients: usize,
        min_survivors: Option<usize>,
    ) -> PyResult<Self> {
        let mode: DpMode = enum_from_str("mode", mode)?;
        let mut inner =
            RoundNoise::new(mode, noise_multiplier, clipping_norm, num_clients).or_raise()?;
        if let Some(t) = min_survivors {
            inner = inner.with_min_survivors(t).or_raise()?;
        }
        Ok(PyRoundNoise { inner })
    }

    /// The noise multiplier the mean really carries when ``survivors`` updates reach it
    /// (what the accountant must be given).
    fn effective_noise_multiplier(&self, survivors: usize) -> f64 {
        self.inner.effective_noise_multiplier(survivors)
    }

    /// The std ``zC`` the sum of the clipped updates carries.
    #[getter]
    fn sum_std(&self) -> f64 {
        self.inner.sum_std()
    }

    /// The std each client adds to its own clipped update.
    #[getter]
    fn client_std(&self) -> f64 {
        self.inner.client_std()
    }

    /// The std the server adds to the sum of the clipped updates.
    #[getter]
    fn server_sum_std(&self) -> f64 {
        self.inner.server_sum_std()
    }

    /// The std the server adds to the mean (``sum / m``).
    #[getter]
    fn server_mean_std(&self) -> f64 {
        self.inner.server_mean_std()
    }

    fn __repr__(&self) -> String {
        let r = &self.inner;
        format!(
            "RoundNoise({:?}, noise_multiplier={}, clipping_norm={}, num_clients={})",
            r.mode, r.noise_multiplier, r.clipping_norm, r.num_clients
        )
    }
}

/// A Renyi-DP accountant for the Poisson-subsampled Gaussian mechanism (agrees with Google's
/// ``dp-accounting``). With ``max_epsilon``, a step that would push epsilon at ``delta``
/// above it raises :class:`battery_fl.PrivacyError` (``kind == 'budget_exhausted'``) and
/// changes nothing.
///
/// >>> from battery_fl import dp
/// >>> acc = dp.RdpAccountant()
/// >>> acc.step(noise_multiplier=1.0, sample_rate=1.0, steps=1)
/// >>> round(acc.epsilon(1e-5), 3), acc.steps
/// (4.729, 1)
#[pyclass(frozen, name = "RdpAccountant", module = "battery_fl.dp")]
#[derive(Debug)]
pub struct PyRdpAccountant {
    inner: Mutex<RdpAccountant>,
}

#[pymethods]
impl PyRdpAccountant {
    #[new]
    #[pyo3(signature = (*, max_epsilon=None, delta=None))]
    fn new(max_epsilon: Option<f64>, delta: Option<f64>) -> PyResult<Self> {
        let delta = delta.unwrap_or(DpConfig::default().target_delta);
        let acc = match max_epsilon {
            Some(e) => RdpAccountant::new().with_max_epsilon(e, delta).or_raise()?,
            None => RdpAccountant::new(),
        };
        Ok(PyRdpAccountant {
            inner: Mutex::new(acc),
        })
    }

    /// Compose ``steps`` rounds with noise multiplier ``noise_multiplier`` and client
    /// sampling rate ``sample_rate`` (1.0: every client takes part).
    #[pyo3(signature = (noise_multiplier, sample_rate, steps=1))]
    fn step(&self, noise_multiplier: f64, sample_rate: f64, steps: u64) -> PyResult<()> {
        lock(&self.inner)
            .and_then(|mut a| a.step(noise_multiplier, sample_rate, steps))
            .or_raise()
    }

    /// Epsilon spent so far at ``delta``.
    fn epsilon(&self, delta: f64) -> PyResult<f64> {
        lock(&self.inner).and_then(|a| a.epsilon(delta)).or_raise()
    }

    /// Epsilon at ``delta`` if ``steps`` more rounds were composed (the state is untouched).
    #[pyo3(signature = (noise_multiplier, sample_rate, steps, delta))]
    fn epsilon_after(
        &self,
        noise_multiplier: f64,
        sample_rate: f64,
        steps: u64,
        delta: f64,
    ) -> PyResult<f64> {
        lock(&self.inner)
            .and_then(|a| a.epsilon_after(noise_multiplier, sample_rate, steps, delta))
            .or_raise()
    }

    /// Rounds composed so far.
    #[getter]
    fn steps(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.steps())
    }

    /// The accountant (orders, RDP, steps, budget) as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(&*lock(&self.inner).or_raise()?)
    }

    /// An accountant from ``to_json`` output.
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Ok(PyRdpAccountant {
            inner: Mutex::new(from_json(text)?),
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        let a = lock(&self.inner).or_raise()?;
        Ok(format!("RdpAccountant(steps={})", a.steps()))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

/// Refuse a DP mode the deployment cannot honour: ``"distributed"`` needs secure
/// aggregation (raises :class:`battery_fl.ConfigError`).
///
/// >>> from battery_fl import dp
/// >>> dp.check_mode("distributed", secure_aggregation=True)
#[pyfunction]
#[pyo3(name = "check_mode", signature = (mode, *, secure_aggregation))]
fn py_check_mode(mode: &str, secure_aggregation: bool) -> PyResult<()> {
    let mode: DpMode = enum_from_str("mode", mode)?;
    check_mode(mode, secure_aggregation).or_raise()
}

/// The least privacy a node accepts, pinned in its own configuration: updates clipped to at
/// most ``clipping_norm`` and noise of at least ``noise_multiplier * C / sqrt(noise_shares)``
/// added by the node itself (``noise_shares = 1``: local DP). :meth:`check` raises
/// :class:`battery_fl.PrivacyError` for a round that gives less.
///
/// >>> from battery_fl import dp
/// >>> floor = dp.DpFloor(1.0, 0.5)
/// >>> floor.check(1.0, 0.5)
/// >>> floor.min_noise_std(0.5)
/// 0.25
#[pyclass(frozen, name = "DpFloor", module = "battery_fl.dp")]
#[derive(Debug)]
pub struct PyDpFloor {
    inner: DpFloor,
}

#[pymethods]
impl PyDpFloor {
    #[new]
    #[pyo3(signature = (clipping_norm, noise_multiplier, *, noise_shares=1))]
    fn new(clipping_norm: f64, noise_multiplier: f64, noise_shares: usize) -> PyResult<Self> {
        let inner = DpFloor::new(clipping_norm, noise_multiplier).with_noise_shares(noise_shares);
        inner.validate().or_raise()?;
        Ok(PyDpFloor { inner })
    }

    /// Check a round's request: its clipping norm (``None`` or 0: no clipping) and the noise
    /// std the node is asked to add.
    #[pyo3(signature = (clipping_norm, noise_std))]
    fn check(&self, clipping_norm: Option<f64>, noise_std: f64) -> PyResult<()> {
        self.inner.check(clipping_norm, noise_std).or_raise()
    }

    /// The least noise std the node adds at clipping norm ``clipping_norm``.
    fn min_noise_std(&self, clipping_norm: f64) -> f64 {
        self.inner.min_noise_std(clipping_norm)
    }

    fn __repr__(&self) -> String {
        let f = &self.inner;
        format!(
            "DpFloor(clipping_norm={}, noise_multiplier={}, noise_shares={})",
            f.clipping_norm, f.noise_multiplier, f.noise_shares
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_check_mode, m)?)?;
    m.add_class::<PyDpFloor>()?;
    m.add_function(wrap_pyfunction!(clip, m)?)?;
    m.add_function(wrap_pyfunction!(l2_norm, m)?)?;
    m.add_function(wrap_pyfunction!(add_noise, m)?)?;
    m.add_class::<PyGaussianNoise>()?;
    m.add_class::<PyRoundNoise>()?;
    m.add_class::<PyRdpAccountant>()?;
    Ok(())
}
