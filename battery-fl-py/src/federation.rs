//! The in-process federation (`battery_fl_core::federation`): `Simulation`, `job_seed`.

use std::path::PathBuf;
use std::sync::Mutex;

use battery_fl_core::data::LabelConfig;
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{
    self, ClusterConfig, FederationConfig, FleetData, SecureAggregation, Simulation,
};
use battery_fl_core::model::{BatLiNet, Dataset};
use battery_fl_core::Error;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyType};

use crate::conversion::{arrays_from_params, config_from_dict, enum_from_str, to_python, vec_f32};
use crate::data::{cell_refs, owned_cells, PyBatteryCell};
use crate::errors::{lock, CoreResult};
use crate::model::PyBatLiNet;

/// One fleet as Python passes it: id, training cells, test cells.
type FleetIn<'py> = (
    String,
    Vec<Bound<'py, PyBatteryCell>>,
    Vec<Bound<'py, PyBatteryCell>>,
);

/// A federated run over in-process fleets: each round samples fleets, trains ``model``
/// locally on each fleet's own cells (FedProx term when configured), clips and noises the
/// deltas (``dp``), sums them through secure aggregation (``secure_aggregation``),
/// aggregates (``strategy``), evaluates every fleet's test cells and accounts privacy.
/// Everything random derives from ``seed`` and the round number.
///
/// ``fleets`` is a list of ``(id, train_cells, test_cells)``; ``model`` is a
/// :class:`BatLiNet` whose settings and featurizer every fleet uses (its weights are not
/// used: the global model starts from its seed). ``strategy`` is one of ``fed_avg``,
/// ``fed_prox``, ``fed_adam``, ``fed_yogi``, ``fed_adagrad``, ``fed_median``,
/// ``fed_trimmed_avg``. ``secure_aggregation`` is ``True`` or a dict of ``neighbours``,
/// ``threshold``, ``clipping_range``, ``modulus_bits``; ``dp`` a dict of ``noise_multiplier``,
/// ``clipping_norm``, ``mode`` (``central``, ``local``, ``distributed``), ``seed``,
/// ``target_delta``, ``max_epsilon``, ``adaptive``; ``server_optimizer`` a dict of ``eta``,
/// ``beta1``, ``beta2``, ``tau``; ``clustering`` a dict of ``threshold``.
/// ``personalization`` is ``none``, ``fine_tune``, ``head``, ``ditto`` (pull
/// ``ditto_lambda``) or ``auto`` (each fleet picks its own, the global, the fine-tuned or its
/// Ditto model on ``validation_fraction`` of its own training cells); :meth:`fleet_model`
/// returns the model a fleet uses. Rounds release the GIL; each returns its record as a dict
/// (``round``, ``clients``, ``rejected``, ``global_rmse``, ``fleet_rmse``, ``epsilon``,
/// ``clipping_norm``, ``personalized_rmse``, ``fleet_personalized_rmse``, ``choices``).
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> fleets = [(f.id, f.cells[:4], f.cells[4:]) for f in
/// ...           synthetic.generate_fleets(fleets=3, cells_per_fleet=6, cycles=12, seed=2)]
/// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
/// ...                             conv_channels=4, batch_size=4, progress=False)
/// >>> sim = battery_fl.Simulation(fleets, model=model, rounds=2, local_epochs=1, seed=1,
/// ...                             secure_aggregation=True, inference_references=4)
/// >>> [r["round"] for r in sim.run()], sim.is_finished
/// ([1, 2], True)
#[pyclass(frozen, name = "Simulation", module = "battery_fl")]
#[derive(Debug)]
pub struct PySimulation {
    inner: Mutex<Simulation>,
}

impl PySimulation {
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Simulation) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        py.detach(|| f(&mut *lock(&self.inner)?)).or_raise()
    }
}

/// `True` (defaults), `False`/`None` (off) or a dict of settings.
fn secure_aggregation(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<SecureAggregation>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_instance_of::<PyBool>() => {
            Ok(v.extract::<bool>()?.then(SecureAggregation::default))
        }
        Some(v) => config_from_dict(v.cast::<PyDict>()?, "secure_aggregation").map(Some),
    }
}

#[pymethods]
impl PySimulation {
    #[new]
    #[pyo3(signature = (fleets, *, model, rounds=10, clients_per_round=None, local_epochs=3, strategy="fed_prox", mu=0.01, trimmed_beta=0.2, server_optimizer=None, secure_aggregation=None, dp=None, clustering=None, max_delta_norm=None, seed=0, inference_references=16, personalization="none", ditto_lambda=0.1, personal_epochs=None, validation_fraction=0.25, checkpoint=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        fleets: Vec<FleetIn<'_>>,
        model: &Bound<'_, PyBatLiNet>,
        rounds: usize,
        clients_per_round: Option<usize>,
        local_epochs: usize,
        strategy: &str,
        mu: f64,
        trimmed_beta: f64,
        server_optimizer: Option<Bound<'_, PyDict>>,
        secure_aggregation: Option<Bound<'_, PyAny>>,
        dp: Option<Bound<'_, PyDict>>,
        clustering: Option<Bound<'_, PyDict>>,
        max_delta_norm: Option<f64>,
        seed: u64,
        inference_references: usize,
        personalization: &str,
        ditto_lambda: f64,
        personal_epochs: Option<usize>,
        validation_fraction: f64,
        checkpoint: Option<PathBuf>,
    ) -> PyResult<Self> {
        let config = FederationConfig {
            rounds,
            clients_per_round,
            local_epochs,
            strategy: enum_from_str("strategy", strategy)?,
            mu,
            server_optimizer: match &server_optimizer {
                Some(d) => config_from_dict(d, "server_optimizer")?,
                None => Default::default(),
            },
            trimmed_beta,
            secure_aggregation: self::secure_aggregation(secure_aggregation.as_ref())?,
            dp: dp.map(|d| config_from_dict(&d, "dp")).transpose()?,
            clustering: clustering
                .map(|d| config_from_dict::<ClusterConfig>(&d, "clustering"))
                .transpose()?,
            max_delta_norm,
            seed,
            inference_references,
            personalization: enum_from_str("personalization", personalization)?,
            ditto_lambda,
            personal_epochs,
            validation_fraction,
        };
        let (model, featurizer) = model.get().with(py, |m| {
            Ok((m.config().clone(), m.featurizer_config().clone()))
        })?;
        let fleets: Vec<_> = fleets
            .iter()
            .map(|(id, train, test)| (id.clone(), cell_refs(train), cell_refs(test)))
            .collect();
        let sim = py
            .detach(|| {
                let f = Featurizer::new(featurizer.clone())?;
                let ds = |cells: &[&_]| {
                    let cells = owned_cells(cells);
                    Dataset::for_config(&cells, &f, &model, &LabelConfig::default())
                };
                let data = fleets
                    .iter()
                    .map(|(id, train, test)| {
                        Ok(FleetData {
                            id: id.clone(),
                            train: ds(train)?,
                            test: ds(test)?,
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                let sim = Simulation::new(config, model, featurizer, data)?;
                Ok(match checkpoint {
                    Some(path) => sim.with_checkpoint(path),
                    None => sim,
                })
            })
            .or_raise()?;
        Ok(PySimulation {
            inner: Mutex::new(sim),
        })
    }

    /// The core defaults of the federation settings, as a dict.
    #[classmethod]
    fn default_config(_cls: &Bound<'_, PyType>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &FederationConfig::default())
    }

    /// Run one round (and checkpoint, when configured); returns its record.
    fn run_round(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let record = self.with(py, |s| s.run_round())?;
        to_python(py, &record)
    }

    /// Run the remaining rounds; returns their records.
    fn run(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let records = self.with(py, |s| {
            let mut out = Vec::new();
            s.run(|r| out.push(r.clone()))?;
            Ok(out)
        })?;
        to_python(py, &records)
    }

    /// Rounds completed.
    #[getter]
    fn round(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.state().round))
    }

    /// True when every configured round is done.
    #[getter]
    fn is_finished(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| Ok(s.is_finished()))
    }

    /// The records of every completed round.
    #[getter]
    fn history(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let history = self.with(py, |s| Ok(s.state().history.clone()))?;
        to_python(py, &history)
    }

    /// The global weights (float32 arrays in ``BatLiNet.parameter_names`` order).
    fn global_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let global = self.with(py, |s| Ok(s.state().global.clone()))?;
        arrays_from_params(py, &global)
    }

    /// A new :class:`BatLiNet` holding the global weights and the run's shared label
    /// transform and input scales.
    fn global_model(&self, py: Python<'_>) -> PyResult<PyBatLiNet> {
        let model = self.with(py, |s| BatLiNet::from_bytes(&s.global_model()?.to_bytes()?))?;
        Ok(PyBatLiNet::wrap(model))
    }

    /// A new :class:`BatLiNet` holding the model fleet ``fleet_id`` uses now: its
    /// personalized model (see ``personalization``), or the global one.
    fn fleet_model(&self, py: Python<'_>, fleet_id: &str) -> PyResult<PyBatLiNet> {
        let model = self.with(py, |s| s.fleet_model(fleet_id))?;
        Ok(PyBatLiNet::wrap(model))
    }

    /// The run's shared label transform ``(mean, std)`` of log cycle life.
    #[getter]
    fn label_transform(&self, py: Python<'_>) -> PyResult<(f64, f64)> {
        let (labels, _) = self.with(py, |s| Ok(s.statistics()))?;
        Ok((labels.mean, labels.std))
    }

    /// The run's shared per-channel input scales ``(branch_a, branch_b)``.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn input_scales<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>)> {
        let (_, scales) = self.with(py, |s| Ok(s.statistics()))?;
        Ok((vec_f32(py, scales.branch_a), vec_f32(py, scales.branch_b)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Simulation(round={})", self.round(py)?))
    }
}

/// The seed of one (round, client) job derived from a run's seed, as the simulation uses it
/// for a client's local training (SplitMix64 mixing).
///
/// >>> import battery_fl
/// >>> battery_fl.job_seed(0, 1, 2) == battery_fl.job_seed(0, 1, 2) != battery_fl.job_seed(0, 1, 3)
/// True
#[pyfunction]
fn job_seed(seed: u64, round: usize, client: usize) -> u64 {
    federation::job_seed(seed, round, client)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySimulation>()?;
    m.add_function(wrap_pyfunction!(job_seed, m)?)?;
    Ok(())
}
