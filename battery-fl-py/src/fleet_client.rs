//! `battery_fl.FleetClient`: a fleet's side of a federated round (core
//! `federation::FleetClient`), for nodes that run rounds outside `Simulation` (Flower). The
//! personal state travels in and out as bytes, so a node can keep it in its own state.

use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{FederationConfig, FleetClient, FleetState};
use battery_fl_core::model::{BatLiNet, Dataset, ModelParams};
use battery_fl_core::Error;
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::conversion::{
    arrays_from_params, bytes, config_from_dict, named, tensors, vec_f64, ArrayIn,
};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;
use crate::model::{PyBatLiNet, PyIntervalCalibration};

/// A fleet's side of each round: local training (FedProx term, personal head or Ditto model)
/// and the model the fleet ends with, as :class:`Simulation` runs them for every fleet.
///
/// ``config`` is a dict of federation settings (the keys of
/// :meth:`Simulation.default_config`, defaults for the rest); ``index`` is the fleet's
/// position (its seeds depend on it); ``model`` carries the architecture, the shared label
/// transform and input scales; ``train`` are the fleet's labelled cells. The personal state
/// (bytes, never sent anywhere) goes in and out of each call. With ``record_privacy`` in
/// ``config`` the fleet trains with per-cell DP-SGD, its statistics (set in ``model``) and
/// branch B's references from the labelled ``public`` cells; its state counts the steps.
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=4, cycles=12, seed=1)[0].cells
/// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=8),
/// ...                             conv_channels=4, epochs=1, batch_size=2, progress=False)
/// >>> model.set_statistics(*model.local_statistics(cells))  # the federation's, in a real run
/// >>> client = battery_fl.FleetClient({"personalization": "ditto", "local_epochs": 1}, 0, model, cells)
/// >>> start = model.get_parameters()
/// >>> state = client.initial_state(model)
/// >>> params, n, state = client.train(model, start, state, 1)
/// >>> personal, state = client.personal_model(model, params, state, 1)
/// >>> n, len(personal.get_parameters()) == len(start)
/// (4, True)
#[pyclass(frozen, name = "FleetClient", module = "battery_fl")]
#[derive(Debug)]
pub struct PyFleetClient {
    inner: FleetClient,
}

fn state_from(data: &[u8]) -> Result<FleetState, Error> {
    if data.is_empty() {
        return Ok(FleetState::default());
    }
    serde_json::from_slice(data).map_err(|e| Error::Parse {
        path: "fleet state".into(),
        reason: e.to_string(),
    })
}

fn state_bytes(state: &FleetState) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(state).map_err(|e| Error::Parse {
        path: "fleet state".into(),
        reason: e.to_string(),
    })
}

/// `cells` read as `m` reads its cells (its featurizer and recipe).
fn dataset(m: &BatLiNet, cells: &[&Cell]) -> Result<Dataset, Error> {
    let featurizer = Featurizer::new(m.featurizer_config().clone())?;
    Dataset::for_config(cells, &featurizer, m.config(), &LabelConfig::default())
}

fn params_like(m: &BatLiNet, arrays: crate::conversion::Tensors) -> Result<ModelParams, Error> {
    named(m.params()?.names().map(String::from).collect(), arrays)
}

/// Run `f` on the model with the received weights and the decoded personal state; returns
/// its result and the state encoded again.
fn with_round<R: Send>(
    py: Python<'_>,
    model: &PyBatLiNet,
    global_parameters: &[ArrayIn<'_>],
    state: &[u8],
    f: impl FnOnce(&mut BatLiNet, &ModelParams, &mut FleetState) -> Result<R, Error> + Send,
) -> PyResult<(R, Vec<u8>)> {
    let received = tensors(global_parameters);
    model.with(py, |m| {
        let received = params_like(m, received)?;
        let mut state = state_from(state)?;
        let out = f(m, &received, &mut state)?;
        Ok((out, state_bytes(&state)?))
    })
}

#[pymethods]
impl PyFleetClient {
    #[new]
    #[pyo3(signature = (config, index, model, train, *, public=None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyDict>,
        index: usize,
        model: &PyBatLiNet,
        train: Vec<Bound<'_, PyBatteryCell>>,
        public: Option<Vec<Bound<'_, PyBatteryCell>>>,
    ) -> PyResult<Self> {
        let config: FederationConfig = config_from_dict(config, "config")?;
        let cells = cell_refs(&train);
        let public = public.as_deref().map(cell_refs);
        let inner = model.with(py, |m| {
            let client = FleetClient::new(&config, index, dataset(m, &cells)?)?;
            match &public {
                Some(p) => client.with_public_cells(dataset(m, p)?, m.config().batch_size),
                None => Ok(client),
            }
        })?;
        Ok(PyFleetClient { inner })
    }

    /// Whether the fleet keeps a personal state between rounds (the model it uses, or the
    /// private steps of record-level DP-SGD): a node stores it only then.
    #[getter]
    fn keeps_state(&self) -> bool {
        self.inner.keeps_state()
    }

    /// Whether the fleet keeps the model it uses in its state (personalization other than
    /// ``none``, or ``calibration_holdout``, whose held-out cells calibrate that model): a node
    /// calls :meth:`personal_model` each round only then.
    #[getter]
    fn keeps_fleet_model(&self) -> bool {
        self.inner.keeps_fleet_model()
    }

    /// ε per cell the fleet has spent with record-level DP-SGD (``config["record_privacy"]``
    /// and ``public`` cells), given its personal ``state``; ``None`` without it.
    fn record_epsilon(&self, state: &[u8]) -> PyResult<Option<f64>> {
        state_from(state)
            .and_then(|s| self.inner.record_epsilon(&s))
            .or_raise()
    }

    /// The fleet's first personal state (bytes): with ``auto`` or ``auto_head`` its own
    /// models, trained alone on its cells as ``model`` would train (this takes two full
    /// trainings); empty otherwise.
    fn initial_state<'py>(
        &self,
        py: Python<'py>,
        model: &PyBatLiNet,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = model.with(py, |m| state_bytes(&self.inner.initial_state(m)?))?;
        Ok(bytes(py, &data))
    }

    /// Local training in round ``server_round`` from ``global_parameters``: returns the
    /// weights to send (received + update; with ``head`` the head is the received one), the
    /// number of cells trained on and the new personal state.
    fn train<'py>(
        &self,
        py: Python<'py>,
        model: &PyBatLiNet,
        global_parameters: Vec<ArrayIn<'_>>,
        state: &[u8],
        server_round: usize,
    ) -> PyResult<(Bound<'py, PyList>, u64, Bound<'py, PyBytes>)> {
        let ((params, n), data) = with_round(
            py,
            model,
            &global_parameters,
            state,
            |m, received, state| {
                let update = self.inner.train(m, received, state, server_round)?;
                Ok((received.add(&update.delta)?, update.num_examples))
            },
        )?;
        Ok((arrays_from_params(py, &params)?, n, bytes(py, &data)))
    }

    /// The model the fleet uses after round ``server_round`` given the received
    /// ``global_parameters`` (its personalized model, a new :class:`BatLiNet` with the label
    /// transform and input scales it reads with), and the new personal state.
    fn personal_model<'py>(
        &self,
        py: Python<'py>,
        model: &PyBatLiNet,
        global_parameters: Vec<ArrayIn<'_>>,
        state: &[u8],
        server_round: usize,
    ) -> PyResult<(PyBatLiNet, Bound<'py, PyBytes>)> {
        let (own, data) = with_round(
            py,
            model,
            &global_parameters,
            state,
            |m, received, state| {
                let own = self
                    .inner
                    .personal_model(m, received, state, server_round)?;
                own.to_batlinet(m)
            },
        )?;
        Ok((PyBatLiNet::wrap(own), bytes(py, &data)))
    }

    /// Round ``server_round``'s evaluation on the fleet's labelled ``test`` cells, as
    /// :class:`Simulation` scores each fleet (its training cells as references,
    /// ``inference_references`` of them, the round's seed): ``(rmse, personalized_rmse,
    /// state)``, the RMSE (cycles) of ``global_parameters`` as the fleet reads them and of the
    /// model it uses (:meth:`personal_model`, recorded in the new personal ``state``; the
    /// same RMSE when it keeps none).
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        model: &PyBatLiNet,
        global_parameters: Vec<ArrayIn<'_>>,
        state: &[u8],
        test: Vec<Bound<'_, PyBatteryCell>>,
        server_round: usize,
    ) -> PyResult<(f64, f64, Bound<'py, PyBytes>)> {
        let cells = cell_refs(&test);
        let (evaluation, data) = with_round(
            py,
            model,
            &global_parameters,
            state,
            |m, received, state| {
                let test = dataset(m, &cells)?;
                self.inner.evaluate(m, received, state, &test, server_round)
            },
        )?;
        Ok((
            evaluation.rmse,
            evaluation.personalized_rmse,
            bytes(py, &data),
        ))
    }

    /// The received ``global_parameters`` as this fleet reads them: a new :class:`BatLiNet`
    /// with the federation's label transform, or with ``label_scope="fleet"`` the fleet's own.
    fn shared_model(
        &self,
        py: Python<'_>,
        model: &PyBatLiNet,
        global_parameters: Vec<ArrayIn<'_>>,
    ) -> PyResult<PyBatLiNet> {
        let received = tensors(&global_parameters);
        let own = model.with(py, |m| {
            let received = params_like(m, received)?;
            self.inner.shared_model(m, received)?.to_batlinet(m)
        })?;
        Ok(PyBatLiNet::wrap(own))
    }

    /// The model the fleet uses now (its personal ``state`` after an evaluated round), a new
    /// :class:`BatLiNet`.
    fn current_model(
        &self,
        py: Python<'_>,
        model: &PyBatLiNet,
        state: &[u8],
    ) -> PyResult<PyBatLiNet> {
        let own = model.with(py, |m| state_from(state)?.current_model(m))?;
        Ok(PyBatLiNet::wrap(own))
    }

    /// What the fleet sends to the secure sum that pools interval calibrations: the
    /// histogram (float64 counts in fixed bins) of its held-out cells' conformal scores
    /// (``auto`` or ``auto_head`` personalization, or ``calibration_holdout``, after an
    /// evaluated round).
    fn calibration_histogram<'py>(
        &self,
        py: Python<'py>,
        model: &PyBatLiNet,
        state: &[u8],
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let counts = model.with(py, |m| {
            self.inner.calibration_histogram(m, &state_from(state)?)
        })?;
        Ok(vec_f64(py, counts))
    }

    /// The fleet's interval calibration of ``current_model`` given ``summed``, every fleet's
    /// ``calibration_histogram`` summed: its own scores with 19 held-out cells or more, the
    /// pooled ones below.
    fn pooled_calibration(
        &self,
        py: Python<'_>,
        model: &PyBatLiNet,
        state: &[u8],
        summed: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<PyIntervalCalibration> {
        let summed = summed.as_slice()?.to_vec();
        let inner = model.with(py, |m| {
            self.inner
                .pooled_calibration(m, &state_from(state)?, &summed)
        })?;
        Ok(PyIntervalCalibration { inner })
    }

    /// The number of cells the fleet federates on (with ``auto``, ``auto_head`` or
    /// ``calibration_holdout``, those not held out).
    #[getter]
    fn fit_cells(&self) -> usize {
        self.inner.fit_cells().len()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFleetClient>()
}
