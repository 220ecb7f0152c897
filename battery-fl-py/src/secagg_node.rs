//! `battery_fl.secagg.NodeSession` (`battery_fl_core::secagg::NodeSession`): a node's answers
//! in one round, stored between the messages of a transport whose handler lives for one
//! message (Flower's ClientApp).

use std::sync::Mutex;

use battery_fl_core::secagg::{ClientPolicy, NodeSession, Stage};
use numpy::{AllowTypeChange, PyArrayLike1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::conversion::{bytes, seed32};
use crate::errors::{config_error, lock, CoreResult};

/// One node's side of one secure-aggregation round, across processes. Each stage is
/// answered at most once: :meth:`answered` gives the cached reply for a byte-identical
/// repeat and raises :class:`battery_fl.SecAggError` for any other request of a stage
/// already answered. The weight the node masks is its own (capped at ``max_weight``, which
/// the node pins), never the server's. :meth:`to_bytes` holds the round secret: keep it on
/// the node and drop it when the round ends or fails.
///
/// ``min_clients`` and ``min_threshold`` are the node's own floor on the server's setup
/// (defaults from the core's ``ClientPolicy``).
#[pyclass(frozen, name = "NodeSession", module = "battery_fl.secagg")]
#[derive(Debug)]
pub struct PyNodeSession {
    inner: Mutex<NodeSession>,
}

fn stage_of(stage: u8) -> PyResult<Stage> {
    Stage::ALL
        .get(usize::from(stage))
        .copied()
        .ok_or_else(|| config_error("stage", format!("{stage} is not a stage 0..=3")))
}

impl PyNodeSession {
    fn with<'py>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut NodeSession) -> Result<Vec<u8>, battery_fl_core::Error> + Send,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let out = py.detach(|| f(&mut *lock(&self.inner)?)).or_raise()?;
        Ok(bytes(py, &out))
    }
}

#[pymethods]
impl PyNodeSession {
    /// Stage 0: start the round described by ``setup`` (bytes from the server) for
    /// ``client_id`` in transport run ``run``; returns ``(session, reply)``.
    #[staticmethod]
    #[pyo3(signature = (client_id, run, setup, *, seed=None, min_clients=None, min_threshold=None, max_weight=None))]
    #[allow(clippy::too_many_arguments)]
    fn start<'py>(
        py: Python<'py>,
        client_id: u64,
        run: u64,
        setup: &[u8],
        seed: Option<&[u8]>,
        min_clients: Option<usize>,
        min_threshold: Option<usize>,
        max_weight: Option<f64>,
    ) -> PyResult<(Self, Bound<'py, PyBytes>)> {
        let seed = seed32(py, seed)?;
        let defaults = ClientPolicy::default();
        let policy = ClientPolicy {
            min_clients: min_clients.unwrap_or(defaults.min_clients),
            min_threshold: min_threshold.unwrap_or(defaults.min_threshold),
        };
        let (session, reply) =
            NodeSession::start(client_id, run, setup, seed, &policy, max_weight).or_raise()?;
        let session = PyNodeSession {
            inner: Mutex::new(session),
        };
        Ok((session, bytes(py, &reply)))
    }

    /// The cached reply when ``stage`` was answered for exactly ``request`` before, ``None``
    /// when it is the next stage to answer; raises otherwise.
    fn answered<'py>(
        &self,
        py: Python<'py>,
        stage: u8,
        request: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let stage = stage_of(stage)?;
        let cached = lock(&self.inner)
            .or_raise()?
            .answered(stage, request)
            .or_raise()?;
        Ok(cached.map(|r| bytes(py, &r)))
    }

    /// Stage 1: the encrypted shares for the neighbours in ``directory``.
    fn share_keys<'py>(&self, py: Python<'py>, directory: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |s| s.share_keys(directory))
    }

    /// Stage 2: ``vector`` masked with the node's own ``weight`` (``None``: the full weight,
    /// for DP and secure sums).
    #[pyo3(signature = (forwarded, vector, weight=None))]
    fn masked_input<'py>(
        &self,
        py: Python<'py>,
        forwarded: &[u8],
        vector: PyArrayLike1<'py, f32, AllowTypeChange>,
        weight: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let vector = vector.as_array().to_vec();
        self.with(py, |s| s.masked_input(forwarded, &vector, weight))
    }

    /// Stage 3: the shares the unmask request asks for.
    fn unmask<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |s| s.unmask(request))
    }

    /// The round number.
    #[getter]
    fn round(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.round())
    }

    /// The fewest survivors whose sum the server of this round can decode (the setup's
    /// threshold t): distributed noise added to this round's input must be sized for them.
    #[getter]
    fn threshold(&self) -> PyResult<usize> {
        lock(&self.inner).and_then(|s| s.threshold()).or_raise()
    }

    /// True once the node answered the unmask request.
    #[getter]
    fn finished(&self) -> PyResult<bool> {
        Ok(lock(&self.inner).or_raise()?.is_finished())
    }

    /// The stored session (the round secret included: keep it on the node).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(bytes(py, &lock(&self.inner).or_raise()?.to_bytes()))
    }

    /// A session stored by :meth:`to_bytes`.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(PyNodeSession {
            inner: Mutex::new(NodeSession::from_bytes(data).or_raise()?),
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("{:?}", lock(&self.inner).or_raise()?))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(protocol_threshold, m)?)?;
    m.add_class::<PyNodeSession>()
}

/// The Shamir threshold ``t`` of a round over ``num_clients`` nodes (``threshold`` if given,
/// else the core's default ``ceil(2k/3)`` with ``k = neighbours`` or the complete graph):
/// the fewest survivors a round accepts, which distributed DP sizes its noise for.
///
/// >>> from battery_fl import secagg
/// >>> secagg.protocol_threshold(5), secagg.protocol_threshold(5, threshold=4)
/// (4, 4)
#[pyfunction]
#[pyo3(signature = (num_clients, *, threshold=None, neighbours=None))]
fn protocol_threshold(
    num_clients: usize,
    threshold: Option<usize>,
    neighbours: Option<usize>,
) -> PyResult<usize> {
    let config = battery_fl_core::secagg::SecAggConfig {
        num_clients,
        neighbours: neighbours.filter(|&k| k < num_clients),
        threshold,
        ..Default::default()
    };
    config.validate().or_raise()?;
    Ok(config.t())
}
