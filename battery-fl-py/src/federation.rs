//! The in-process federation (`battery_fl_core::federation`): `Simulation`, `job_seed`,
//! `strategy_needs_only_the_sum`.

use std::path::PathBuf;
use std::sync::Mutex;

use battery_fl_core::data::LabelConfig;
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{
    self, ClusterConfig, FederationConfig, FleetData, LabelScope, Personalization,
    SecureAggregation, Simulation, Strategy,
};
use battery_fl_core::model::{BatLiNet, Dataset};
use battery_fl_core::Error;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyTuple, PyType};

use crate::conversion::{arrays_from_params, config_from_dict, enum_from_str, to_python, vec_f32};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::{lock, CoreResult};
use crate::model::{PyBatLiNet, PyIntervalCalibration};

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
/// used: the global model starts from its seed). Settings left out (or ``None``) take the
/// core defaults, :meth:`default_config`; :attr:`config` holds the run's settings.
/// ``strategy`` is one of ``fed_avg``, ``fed_prox``, ``fed_adam``, ``fed_yogi``,
/// ``fed_adagrad``, ``fed_median``, ``fed_trimmed_avg`` (the clients add the FedProx term
/// ``proximal_mu`` with ``fed_prox`` only). ``secure_aggregation`` is ``True`` or a dict of
/// ``neighbours``, ``threshold``, ``clipping_range``, ``modulus_bits``; ``dp`` a dict of
/// ``noise_multiplier``, ``clipping_norm``, ``mode`` (``central``, ``local``,
/// ``distributed``), ``seed``, ``target_delta``, ``max_epsilon``, ``adaptive``;
/// ``server_optimizer`` a dict of ``eta``, ``beta1``, ``beta2``, ``tau``; ``clustering`` a
/// dict of ``threshold``.
/// ``personalization`` is ``none``, ``fine_tune``, ``head``, ``ditto`` (pull
/// ``ditto_lambda``) or ``auto`` (each fleet picks its own, the global, the fine-tuned or its
/// Ditto model on ``validation_fraction`` of its own training cells, leaving its own only when
/// a shared model's squared ln errors there lie below its own by a paired t-test at
/// ``choice_margin``, default ``DEFAULT_CHOICE_MARGIN``: 3.3 standard errors on 4 cells) or
/// ``auto_head`` (the encoders federated as with ``head``; each fleet keeps its own model
/// unless its own-head model passes the same test); :meth:`fleet_model`
/// returns the model a fleet uses. ``calibration_holdout=True`` holds ``validation_fraction``
/// of each fleet's cells out of training in every mode so that they calibrate its intervals
/// (:meth:`calibrate_fleets`; ``auto`` and ``auto_head`` always hold them out). ``record_privacy`` (a dict of ``epsilon``,
/// ``noise_multiplier``, ``clipping_norm``, ``delta``, ``seed``, ``public_pretraining``,
/// ``learning_rate_scale``: the core's ``DpSgdConfig``) trains
/// every fleet with record-level DP-SGD, one cell being the unit, within ``epsilon`` per cell
/// over all rounds; it needs ``public`` labelled cells (the statistics, branch B's training
/// references and, unless ``public_pretraining`` is false, the first global weights, trained
/// on them), none of them a fleet's own, and a round the budget does not cover raises
/// :class:`battery_fl.PrivacyError`.
/// Rounds release the GIL; each returns its record as a dict (``round``, ``clients``,
/// ``rejected``, ``global_rmse``, ``fleet_rmse``, ``epsilon``, ``clipping_norm``,
/// ``personalized_rmse``, ``fleet_personalized_rmse``, ``choices``, ``validation_rmse``: with
/// ``auto`` each candidate's RMSE on each fleet's validation cells, ``fleet_epsilon``: ε per
/// cell each fleet has spent under ``record_privacy``).
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
    /// The settings the run was built with.
    config: FederationConfig,
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
    #[pyo3(signature = (fleets, *, model, rounds=None, clients_per_round=None, local_epochs=None, strategy=None, proximal_mu=None, trimmed_beta=None, server_optimizer=None, secure_aggregation=None, dp=None, clustering=None, max_delta_norm=None, seed=None, inference_references=None, personalization=None, ditto_lambda=None, personal_epochs=None, validation_fraction=None, calibration_holdout=None, choice_margin=None, label_scope=None, record_privacy=None, public=None, checkpoint=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        fleets: Vec<FleetIn<'_>>,
        model: &Bound<'_, PyBatLiNet>,
        rounds: Option<usize>,
        clients_per_round: Option<usize>,
        local_epochs: Option<usize>,
        strategy: Option<&str>,
        proximal_mu: Option<f64>,
        trimmed_beta: Option<f64>,
        server_optimizer: Option<Bound<'_, PyDict>>,
        secure_aggregation: Option<Bound<'_, PyAny>>,
        dp: Option<Bound<'_, PyDict>>,
        clustering: Option<Bound<'_, PyDict>>,
        max_delta_norm: Option<f64>,
        seed: Option<u64>,
        inference_references: Option<usize>,
        personalization: Option<&str>,
        ditto_lambda: Option<f64>,
        personal_epochs: Option<usize>,
        validation_fraction: Option<f64>,
        calibration_holdout: Option<bool>,
        choice_margin: Option<f64>,
        label_scope: Option<&str>,
        record_privacy: Option<Bound<'_, PyDict>>,
        public: Option<Vec<Bound<'_, PyBatteryCell>>>,
        checkpoint: Option<PathBuf>,
    ) -> PyResult<Self> {
        let core = FederationConfig::default();
        let config = FederationConfig {
            rounds: rounds.unwrap_or(core.rounds),
            clients_per_round,
            local_epochs: local_epochs.unwrap_or(core.local_epochs),
            strategy: match strategy {
                Some(s) => enum_from_str("strategy", s)?,
                None => core.strategy,
            },
            proximal_mu: proximal_mu.unwrap_or(core.proximal_mu),
            server_optimizer: match &server_optimizer {
                Some(d) => config_from_dict(d, "server_optimizer")?,
                None => core.server_optimizer,
            },
            trimmed_beta: trimmed_beta.unwrap_or(core.trimmed_beta),
            secure_aggregation: self::secure_aggregation(secure_aggregation.as_ref())?,
            dp: dp.map(|d| config_from_dict(&d, "dp")).transpose()?,
            clustering: clustering
                .map(|d| config_from_dict::<ClusterConfig>(&d, "clustering"))
                .transpose()?,
            max_delta_norm,
            seed: seed.unwrap_or(core.seed),
            inference_references: inference_references.unwrap_or(core.inference_references),
            personalization: match personalization {
                Some(p) => enum_from_str("personalization", p)?,
                None => core.personalization,
            },
            ditto_lambda: ditto_lambda.unwrap_or(core.ditto_lambda),
            personal_epochs,
            validation_fraction: validation_fraction.unwrap_or(core.validation_fraction),
            calibration_holdout: calibration_holdout.unwrap_or(core.calibration_holdout),
            choice_margin: choice_margin.unwrap_or(core.choice_margin),
            label_scope: match label_scope {
                Some(s) => enum_from_str("label_scope", s)?,
                None => core.label_scope,
            },
            record_privacy: record_privacy
                .map(|d| config_from_dict(&d, "record_privacy"))
                .transpose()?,
        };
        let (model, featurizer) = model.get().with(py, |m| {
            Ok((m.config().clone(), m.featurizer_config().clone()))
        })?;
        let fleets: Vec<_> = fleets
            .iter()
            .map(|(id, train, test)| (id.clone(), cell_refs(train), cell_refs(test)))
            .collect();
        let public = public.as_deref().map(cell_refs);
        let sim = py
            .detach(|| {
                let f = Featurizer::new(featurizer.clone())?;
                let ds =
                    |cells: &[&_]| Dataset::for_config(cells, &f, &model, &LabelConfig::default());
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
                let sim = match &public {
                    Some(cells) => {
                        let public = ds(cells)?;
                        Simulation::with_public_cells(
                            config.clone(),
                            model,
                            featurizer,
                            data,
                            public,
                        )?
                    }
                    None => Simulation::new(config.clone(), model, featurizer, data)?,
                };
                Ok(match checkpoint {
                    Some(path) => sim.with_checkpoint(path),
                    None => sim,
                })
            })
            .or_raise()?;
        Ok(PySimulation {
            inner: Mutex::new(sim),
            config,
        })
    }

    /// The core defaults of the federation settings (``FederationConfig::default()``), as a
    /// dict: what every setting left out of the constructor takes, and the defaults of the
    /// Flower run config's shared settings.
    ///
    /// >>> import battery_fl
    /// >>> d = battery_fl.Simulation.default_config()
    /// >>> d["strategy"], d["proximal_mu"], d["trimmed_beta"]
    /// ('fed_prox', 0.01, 0.2)
    #[classmethod]
    fn default_config(_cls: &Bound<'_, PyType>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &FederationConfig::default())
    }

    /// The run's settings (the constructor's arguments over the core defaults), as a dict
    /// with the keys of :meth:`default_config`.
    #[getter]
    fn config(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_python(py, &self.config)
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

    /// Each fleet's interval calibration of the model it uses now (``fleet_model``), by
    /// fleet id: the errors of its model on the cells it held out (``personalization="auto"``
    /// or ``"auto_head"``, or ``calibration_holdout=True``), or, for a fleet with fewer than 19
    /// of them, every fleet's errors pooled through a secure sum of histograms. Pass one to
    /// ``fleet_model(id).predict(cells, train_cells, coverage=0.9, calibration=...)``. Raises
    /// :class:`ConfigError` (``calibration_holdout``) when no cells are held out, or
    /// (``state``) before the first round.
    fn calibrate_fleets(
        &self,
        py: Python<'_>,
    ) -> PyResult<std::collections::BTreeMap<String, PyIntervalCalibration>> {
        let calibrations = self.with(py, |s| s.calibrate_fleets())?;
        Ok(calibrations
            .into_iter()
            .map(|(id, inner)| (id, PyIntervalCalibration { inner }))
            .collect())
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

/// The fleets that train in round ``server_round`` of a run seeded ``seed``: ``per_round``
/// of ``fleets`` indices, ascending (the core's ``select_clients``, as :class:`Simulation`
/// samples with ``clients_per_round``; a Flower server applies it to its nodes in ascending id
/// order). :class:`ConfigError` (``clients_per_round``) unless ``1 <= per_round <= fleets``.
///
/// >>> import battery_fl
/// >>> chosen = battery_fl.select_clients(7, 1, 5, 2)
/// >>> len(chosen), chosen == sorted(chosen), chosen == battery_fl.select_clients(7, 1, 5, 2)
/// (2, True, True)
#[pyfunction]
fn select_clients(
    seed: u64,
    server_round: usize,
    fleets: usize,
    per_round: usize,
) -> PyResult<Vec<usize>> {
    federation::select_clients(seed, server_round, fleets, per_round).or_raise()
}

/// True when the aggregation rule ``strategy`` (a ``Simulation`` / Flower ``strategy`` name,
/// which is also each aggregator's ``name``) needs only the weighted sum of the updates, so
/// it composes with secure aggregation and DP; ``fed_median`` and ``fed_trimmed_avg`` need
/// each update. An unknown name raises :class:`ConfigError`.
///
/// >>> import battery_fl
/// >>> battery_fl.strategy_needs_only_the_sum("fed_adam"), battery_fl.FedMedian().name
/// (True, 'fed_median')
/// >>> battery_fl.strategy_needs_only_the_sum(battery_fl.FedMedian().name)
/// False
#[pyfunction]
fn strategy_needs_only_the_sum(strategy: &str) -> PyResult<bool> {
    Ok(enum_from_str::<Strategy>("strategy", strategy)?.needs_only_the_sum())
}

/// Check a federation ``config`` (keys as :meth:`Simulation.default_config`, missing ones the
/// core's defaults) for ``fleets`` fleets as :class:`Simulation` checks it, its aggregation
/// rule's settings included; :class:`ConfigError` names the first setting out of range.
///
/// >>> import battery_fl
/// >>> battery_fl.check_federation_config({"personalization": "ditto"}, fleets=3)
/// >>> try:
/// ...     battery_fl.check_federation_config({"ditto_lambda": -1.0}, fleets=3)
/// ... except battery_fl.ConfigError as err:
/// ...     print(err.field)
/// ditto_lambda
#[pyfunction]
#[pyo3(signature = (config, *, fleets))]
fn check_federation_config(config: &Bound<'_, PyDict>, fleets: usize) -> PyResult<()> {
    let config: FederationConfig = config_from_dict(config, "config")?;
    config.validate(fleets).or_raise()?;
    config.aggregation_rule().or_raise()?;
    Ok(())
}

/// Whether each fleet of a federation ``config`` (keys as :meth:`Simulation.default_config`)
/// holds out validation cells: to choose its model (``auto``, ``auto_head``) or to calibrate
/// its intervals (``calibration_holdout``). Only then can fleets calibrate intervals.
///
/// >>> import battery_fl
/// >>> battery_fl.holds_out_validation_cells({"personalization": "auto"})
/// True
/// >>> battery_fl.holds_out_validation_cells({"personalization": "head"})
/// False
/// >>> battery_fl.holds_out_validation_cells({"personalization": "head", "calibration_holdout": True})
/// True
#[pyfunction]
fn holds_out_validation_cells(config: &Bound<'_, PyDict>) -> PyResult<bool> {
    let config: FederationConfig = config_from_dict(config, "config")?;
    Ok(config.holds_out_validation_cells())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let names = |v: Vec<&'static str>| PyTuple::new(m.py(), v);
    m.add(
        "STRATEGIES",
        names(Strategy::ALL.map(Strategy::name).to_vec())?,
    )?;
    m.add(
        "PERSONALIZATIONS",
        names(Personalization::ALL.map(Personalization::name).to_vec())?,
    )?;
    m.add(
        "LABEL_SCOPES",
        names(LabelScope::ALL.map(LabelScope::name).to_vec())?,
    )?;
    m.add_function(wrap_pyfunction!(check_federation_config, m)?)?;
    m.add_function(wrap_pyfunction!(holds_out_validation_cells, m)?)?;
    m.add_class::<PySimulation>()?;
    m.add_function(wrap_pyfunction!(job_seed, m)?)?;
    m.add_function(wrap_pyfunction!(select_clients, m)?)?;
    m.add_function(wrap_pyfunction!(strategy_needs_only_the_sum, m)?)?;
    Ok(())
}
