//! Secure aggregation (`battery_fl_core::secagg`), exposed as `battery_fl.secagg`: the
//! client and server state machines of one SecAgg+ round with messages as bytes, and
//! `simulate_round`, an in-process round with simulated dropouts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use battery_fl_core::secagg::{
    self, AdvertiseKeys, ClientPolicy, ConsistencySignature, Identity, MaskedInput, Pki,
    SecAggClient, SecAggConfig, SecAggServer, ServerStage, Setup, ShareKeys, Stage, UnmaskResponse,
};
use battery_fl_core::Error;
use numpy::{AllowTypeChange, PyArray1, PyArrayLike1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::conversion::{bytes, seed32, seed64, vec_f32};
use crate::errors::{config_error, lock, CoreResult};

/// Messages per client as `{client id: bytes}`.
fn per_client<'py, M>(
    py: Python<'py>,
    msgs: BTreeMap<u64, M>,
    encode: impl Fn(&M) -> Vec<u8>,
) -> BTreeMap<u64, Bound<'py, PyBytes>> {
    msgs.into_iter()
        .map(|(id, m)| (id, bytes(py, &encode(&m))))
        .collect()
}

fn pki(keys: Option<BTreeMap<u64, [u8; 32]>>) -> PyResult<Option<Pki>> {
    keys.map(|k| Pki::new(&k)).transpose().or_raise()
}

/// The result of a secure-aggregation round.
#[pyclass(frozen, name = "SecAggResult", module = "battery_fl.secagg")]
#[derive(Debug)]
pub struct PySecAggResult {
    round: u64,
    survivors: Vec<u64>,
    encoded_sum: Vec<u64>,
    mean: Vec<f32>,
    sum: Vec<f32>,
    total_weight: f64,
}

#[pymethods]
impl PySecAggResult {
    /// The round number.
    #[getter]
    fn round(&self) -> u64 {
        self.round
    }

    /// The clients whose inputs are in the aggregate (U3), sorted.
    #[getter]
    fn survivors(&self) -> Vec<u64> {
        self.survivors.clone()
    }

    /// The survivors' weighted mean delta (float32).
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        vec_f32(py, self.mean.clone())
    }

    /// The recovered sum of the survivors' deltas scaled by ``weight / max_weight`` (the plain
    /// sum when every client sent ``max_weight``), float32.
    #[getter]
    fn sum<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        vec_f32(py, self.sum.clone())
    }

    /// The survivors' total weight (quantized to multiples of ``max_weight / target_range``).
    #[getter]
    fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The exact unmasked integer sum ``[sum of q_u] + encoded values`` (uint64).
    #[getter]
    fn encoded_sum<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, self.encoded_sum.clone())
    }

    fn __repr__(&self) -> String {
        format!(
            "SecAggResult(round={}, survivors={:?}, total_weight={})",
            self.round, self.survivors, self.total_weight
        )
    }
}

/// The server of one SecAgg+ round over the sampled ``clients`` (ids), aggregating float32
/// vectors of length ``dim``. Drive it stage by stage: send ``setup()`` to every client,
/// ``receive_keys`` then ``finish_advertise`` (key directories to forward), ``receive_shares``
/// then ``finish_share_keys`` (encrypted shares to forward), ``receive_masked_input`` then
/// ``finish_masked_input`` (unmask requests), ``receive_unmask`` then ``finish``. Clients that
/// drop out are simply never heard from; fewer than ``threshold`` live neighbours raises
/// :class:`battery_fl.SecAggError` (``kind == 'below_threshold'``) and nothing is output.
/// ``neighbours`` (odd, at least 3) selects a sparse SecAgg+ graph (default: complete graph).
/// With ``pki`` (client id -> verifying key), clients must sign their keys and a consistency
/// round (``start_consistency_check``...) runs before unmasking. Every ``receive_*`` takes
/// the keyword ``sender``: the client id the transport authenticated (a message written in
/// another client's name is refused). ``run`` identifies the run (federation, experiment):
/// round numbers restart in every run, so give each run a fresh id; it is bound into every
/// key, ciphertext and signature, and messages of another run are refused.
#[pyclass(frozen, name = "SecAggServer", module = "battery_fl.secagg")]
#[derive(Debug)]
pub struct PySecAggServer {
    inner: Mutex<SecAggServer>,
}

impl PySecAggServer {
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut SecAggServer) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        py.detach(|| f(&mut *lock(&self.inner)?)).or_raise()
    }
}

#[pymethods]
impl PySecAggServer {
    #[new]
    #[pyo3(signature = (clients, dim, *, round=1, threshold=None, neighbours=None, clipping_range=None, target_range=None, modulus_bits=None, max_weight=None, num_clients=None, seed=None, pki=None, run=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        clients: Vec<u64>,
        dim: usize,
        round: u64,
        threshold: Option<usize>,
        neighbours: Option<usize>,
        clipping_range: Option<f64>,
        target_range: Option<u64>,
        modulus_bits: Option<u32>,
        max_weight: Option<f64>,
        num_clients: Option<usize>,
        seed: Option<&[u8]>,
        pki: Option<BTreeMap<u64, [u8; 32]>>,
        run: u64,
    ) -> PyResult<Self> {
        let default = SecAggConfig::default();
        let config = SecAggConfig {
            num_clients: num_clients.unwrap_or(clients.len()),
            neighbours,
            threshold,
            clipping_range: clipping_range.unwrap_or(default.clipping_range),
            target_range: target_range.unwrap_or(default.target_range),
            modulus_bits: modulus_bits.unwrap_or(default.modulus_bits),
            max_weight: max_weight.unwrap_or(default.max_weight),
        };
        let seed = seed32(py, seed)?;
        let mut server = SecAggServer::new(config, round, dim, &clients, seed)
            .or_raise()?
            .with_run(run);
        if let Some(p) = self::pki(pki)? {
            server = server.with_pki(p);
        }
        Ok(PySecAggServer {
            inner: Mutex::new(server),
        })
    }

    /// The setup message for every sampled client.
    fn setup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let setup = self.with(py, |s| Ok(s.setup()))?;
        Ok(bytes(py, &setup.to_bytes()))
    }

    /// The current stage: ``advertise_keys``, ``share_keys``, ``masked_input``,
    /// ``consistency_check``, ``unmask``, ``done`` or ``failed``.
    #[getter]
    fn stage(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match self.with(py, |s| Ok(s.stage()))? {
            ServerStage::AdvertiseKeys => "advertise_keys",
            ServerStage::ShareKeys => "share_keys",
            ServerStage::MaskedInput => "masked_input",
            ServerStage::ConsistencyCheck => "consistency_check",
            ServerStage::Unmask => "unmask",
            ServerStage::Done => "done",
            ServerStage::Failed => "failed",
        })
    }

    /// Clients whose keys arrived (U1).
    #[getter]
    fn u1(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        self.with(py, |s| Ok(s.u1().iter().copied().collect()))
    }

    /// Clients whose shares arrived (U2).
    #[getter]
    fn u2(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        self.with(py, |s| Ok(s.u2().iter().copied().collect()))
    }

    /// Clients whose masked inputs arrived (U3).
    #[getter]
    fn u3(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        self.with(py, |s| Ok(s.u3().iter().copied().collect()))
    }

    /// Stage 0: the advertised keys of client ``sender``.
    #[pyo3(signature = (message, *, sender))]
    fn receive_keys(&self, py: Python<'_>, message: &[u8], sender: u64) -> PyResult<()> {
        self.with(py, |s| {
            s.receive_keys(sender, AdvertiseKeys::from_bytes(message)?)
        })
    }

    /// End of stage 0: the key directory for each live client.
    fn finish_advertise<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u64, Bound<'py, PyBytes>>> {
        let out = self.with(py, |s| s.finish_advertise())?;
        Ok(per_client(py, out, |m| m.to_bytes()))
    }

    /// Stage 1: the encrypted shares of client ``sender``.
    #[pyo3(signature = (message, *, sender))]
    fn receive_shares(&self, py: Python<'_>, message: &[u8], sender: u64) -> PyResult<()> {
        self.with(py, |s| {
            s.receive_shares(sender, ShareKeys::from_bytes(message)?)
        })
    }

    /// End of stage 1: the shares to forward to each client.
    fn finish_share_keys<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u64, Bound<'py, PyBytes>>> {
        let out = self.with(py, |s| s.finish_share_keys())?;
        Ok(per_client(py, out, |m| m.to_bytes()))
    }

    /// Stage 2: the masked input of client ``sender``.
    #[pyo3(signature = (message, *, sender))]
    fn receive_masked_input(&self, py: Python<'_>, message: &[u8], sender: u64) -> PyResult<()> {
        self.with(py, |s| {
            s.receive_masked_input(sender, &MaskedInput::from_bytes(message)?)
        })
    }

    /// End of stage 2: the unmask request for each surviving client (without a PKI).
    fn finish_masked_input<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u64, Bound<'py, PyBytes>>> {
        let out = self.with(py, |s| s.finish_masked_input())?;
        Ok(per_client(py, out, |m| m.to_bytes()))
    }

    /// With a PKI, after stage 2: the consistency check (survivor list) for each client.
    fn start_consistency_check<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u64, Bound<'py, PyBytes>>> {
        let out = self.with(py, |s| s.start_consistency_check())?;
        Ok(per_client(py, out, |m| m.to_bytes()))
    }

    /// With a PKI: the signature of client ``sender`` on the survivor list.
    #[pyo3(signature = (message, *, sender))]
    fn receive_consistency(&self, py: Python<'_>, message: &[u8], sender: u64) -> PyResult<()> {
        self.with(py, |s| {
            s.receive_consistency(sender, ConsistencySignature::from_bytes(message)?)
        })
    }

    /// With a PKI: the unmask requests, carrying the collected signatures.
    fn finish_consistency_check<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u64, Bound<'py, PyBytes>>> {
        let out = self.with(py, |s| s.finish_consistency_check())?;
        Ok(per_client(py, out, |m| m.to_bytes()))
    }

    /// Stage 3: the revealed shares of client ``sender``.
    #[pyo3(signature = (message, *, sender))]
    fn receive_unmask(&self, py: Python<'_>, message: &[u8], sender: u64) -> PyResult<()> {
        self.with(py, |s| {
            s.receive_unmask(sender, UnmaskResponse::from_bytes(message)?)
        })
    }

    /// End of the round: unmask and decode the aggregate.
    fn finish(&self, py: Python<'_>) -> PyResult<PySecAggResult> {
        self.with(py, |s| {
            let out = s.finish()?;
            let decoded = out.decode()?;
            Ok(PySecAggResult {
                round: out.round,
                sum: out.decode_sum()?,
                survivors: out.survivors,
                encoded_sum: out.encoded_sum,
                mean: decoded.mean,
                total_weight: decoded.total_weight,
            })
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("SecAggServer(stage={:?})", self.stage(py)?))
    }
}

/// One client of a SecAgg+ round, built from the server's ``setup`` message. ``seed`` (32
/// bytes) is its secret randomness for the round, from the OS by default: never reuse it.
/// With ``identity_seed`` (32 bytes) and ``pki`` the client signs its keys and checks its
/// neighbours' signatures. ``min_clients`` and ``min_threshold`` are the client's own floor
/// on the server's setup (defaults from the core's ``ClientPolicy``: 3 and 2): it refuses
/// (raising :class:`battery_fl.SecAggError` from ``advertise_keys``) a round with fewer
/// clients, a lower threshold or smaller neighbourhoods, and with a ``pki`` also a sparse
/// graph and ``2 * threshold < num_clients + min_threshold - 1``; ``min_threshold - 2`` is the
/// number of clients colluding with a malicious server it is protected against.
#[pyclass(frozen, name = "SecAggClient", module = "battery_fl.secagg")]
#[derive(Debug)]
pub struct PySecAggClient {
    inner: Mutex<SecAggClient>,
}

impl PySecAggClient {
    fn with<'py, R: Send + AsRef<[u8]>>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(&mut SecAggClient) -> Result<R, Error> + Send,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let out = py.detach(|| f(&mut *lock(&self.inner)?)).or_raise()?;
        Ok(bytes(py, out.as_ref()))
    }
}

#[pymethods]
impl PySecAggClient {
    #[new]
    #[pyo3(signature = (client_id, setup, *, seed=None, identity_seed=None, pki=None, min_clients=None, min_threshold=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        client_id: u64,
        setup: &[u8],
        seed: Option<&[u8]>,
        identity_seed: Option<&[u8]>,
        pki: Option<BTreeMap<u64, [u8; 32]>>,
        min_clients: Option<usize>,
        min_threshold: Option<usize>,
    ) -> PyResult<Self> {
        let setup = Setup::from_bytes(setup).or_raise()?;
        let defaults = ClientPolicy::default();
        let policy = ClientPolicy {
            min_clients: min_clients.unwrap_or(defaults.min_clients),
            min_threshold: min_threshold.unwrap_or(defaults.min_threshold),
        };
        policy.validate().or_raise()?;
        let mut client = SecAggClient::new(client_id, &setup, seed32(py, seed)?)
            .or_raise()?
            .with_policy(policy);
        match (identity_seed, self::pki(pki)?) {
            (Some(s), Some(p)) => {
                let identity = Identity::from_seed(seed32(py, Some(s))?);
                client = client.with_identity(identity, p);
            }
            (None, None) => {}
            _ => return Err(config_error("pki", "identity_seed and pki go together")),
        }
        Ok(PySecAggClient {
            inner: Mutex::new(client),
        })
    }

    /// This client's id.
    #[getter]
    fn client_id(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.id())
    }

    /// The round number.
    #[getter]
    fn round(&self) -> PyResult<u64> {
        Ok(lock(&self.inner).or_raise()?.round())
    }

    /// Stage 0: this client's public keys.
    fn advertise_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |c| Ok(c.advertise_keys()?.to_bytes()))
    }

    /// Stage 1: encrypted shares for the neighbours listed in ``directory``.
    fn share_keys<'py>(&self, py: Python<'py>, directory: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |c| {
            let dir = secagg::KeyDirectory::from_bytes(directory)?;
            Ok(c.share_keys(&dir)?.to_bytes())
        })
    }

    /// Stage 2: the masked encoding of ``delta`` (the model update ``w_local - w_global``,
    /// length ``dim``, float32) with ``weight`` (at most ``max_weight``), given the forwarded
    /// shares.
    fn masked_input<'py>(
        &self,
        py: Python<'py>,
        forwarded: &[u8],
        delta: PyArrayLike1<'py, f32, AllowTypeChange>,
        weight: f64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let delta = delta.as_array().to_vec();
        self.with(py, |c| {
            let fwd = secagg::ForwardedShares::from_bytes(forwarded)?;
            Ok(c.masked_input(&fwd, &delta, weight)?.to_bytes())
        })
    }

    /// With a PKI: sign the survivor list of the consistency check.
    fn consistency_check<'py>(
        &self,
        py: Python<'py>,
        check: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |c| {
            let check = secagg::ConsistencyCheck::from_bytes(check)?;
            Ok(c.consistency_check(&check)?.to_bytes())
        })
    }

    /// Stage 3: reveal the shares the server's ``request`` asks for (refuses requests that
    /// would reveal both kinds of share of a neighbour).
    fn unmask<'py>(&self, py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |c| {
            let req = secagg::UnmaskRequest::from_bytes(request)?;
            Ok(c.unmask(&req)?.to_bytes())
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        let c = lock(&self.inner).or_raise()?;
        Ok(format!("SecAggClient(id={}, round={})", c.id(), c.round()))
    }
}

/// The 32-byte verifying key of the signing identity derived from ``identity_seed`` (for a
/// server's or client's ``pki``).
#[pyfunction]
fn verifying_key<'py>(py: Python<'py>, identity_seed: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let identity = Identity::from_seed(seed32(py, Some(identity_seed))?);
    Ok(bytes(py, &identity.verifying_key()))
}

/// Run one secure-aggregation round in process over ``inputs`` (one float32 vector per
/// client, client ``i`` has id ``i``) and return the recovered sum of the surviving clients'
/// inputs (each clipped to ``[-clipping_range, clipping_range]`` and quantized to
/// ``target_range`` levels). ``drop`` maps a client index to the stage at which it
/// disappears: 0 advertise keys, 1 share keys, 2 masked input, 3 unmask. Too few survivors
/// raise :class:`battery_fl.SecAggError`. ``seed`` makes the masks reproducible (default:
/// OS randomness).
///
/// >>> import numpy as np
/// >>> from battery_fl import secagg
/// >>> inputs = [np.full(4, 0.5 * i, dtype=np.float32) for i in range(5)]
/// >>> total = secagg.simulate_round(inputs, threshold=3, drop={4: 1}, seed=7)
/// >>> np.allclose(total, 0.0 + 0.5 + 1.0 + 1.5, atol=1e-4)
/// True
#[pyfunction]
#[pyo3(signature = (inputs, *, threshold, drop=None, neighbours=None, modulus_bits=None, seed=None, clipping_range=None, target_range=None))]
#[allow(clippy::too_many_arguments)]
fn simulate_round<'py>(
    py: Python<'py>,
    inputs: Vec<PyArrayLike1<'py, f32, AllowTypeChange>>,
    threshold: usize,
    drop: Option<BTreeMap<usize, usize>>,
    neighbours: Option<usize>,
    modulus_bits: Option<u32>,
    seed: Option<u64>,
    clipping_range: Option<f64>,
    target_range: Option<u64>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let default = SecAggConfig::default();
    let inputs: Vec<Vec<f32>> = inputs.iter().map(|a| a.as_array().to_vec()).collect();
    let drops = drop
        .unwrap_or_default()
        .into_iter()
        .map(|(client, stage)| match Stage::ALL.get(stage) {
            Some(&s) => Ok((client, s)),
            None => Err(config_error(
                "drop",
                format!("stage {stage} is not in 0..=3"),
            )),
        })
        .collect::<PyResult<BTreeMap<_, _>>>()?;
    let config = SecAggConfig {
        num_clients: inputs.len(),
        neighbours,
        threshold: Some(threshold),
        clipping_range: clipping_range.unwrap_or(default.clipping_range),
        target_range: target_range.unwrap_or(default.target_range),
        modulus_bits: modulus_bits.unwrap_or(default.modulus_bits),
        max_weight: 1.0,
    };
    let seed = seed64(py, seed)?;
    let weights = vec![1.0; inputs.len()];
    let sum = py
        .detach(|| {
            secagg::simulate_round_report(&inputs, &weights, &config, &drops, seed)?
                .output
                .decode_sum()
        })
        .or_raise()?;
    Ok(vec_f32(py, sum))
}

/// The core's secure-aggregation defaults (``SecAggConfig::default()``) as a dict:
/// ``clipping_range``, ``target_range``, ``modulus_bits``, ``max_weight``, ...
///
/// >>> from battery_fl import secagg
/// >>> secagg.default_config()["modulus_bits"]
/// 32
#[pyfunction(name = "secagg_default_config")]
fn default_config(py: Python<'_>) -> PyResult<Py<PyAny>> {
    crate::conversion::to_python(py, &battery_fl_core::secagg::SecAggConfig::default())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    m.add_class::<PySecAggServer>()?;
    m.add_class::<PySecAggClient>()?;
    m.add_class::<PySecAggResult>()?;
    m.add_function(wrap_pyfunction!(verifying_key, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_round, m)?)?;
    Ok(())
}
