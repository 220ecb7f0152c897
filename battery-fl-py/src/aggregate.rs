//! Aggregators (`battery_fl_core::aggregate`): `FedAvg`, `FedProx`, `FedAdam`, `FedYogi`,
//! `FedAdagrad`, `FedMedian`, `FedTrimmedAvg`, each with
//! `aggregate(updates, weights) -> list[ndarray]`.

use std::sync::Mutex;

use battery_fl_core::aggregate::{
    partition_updates, ClientUpdate, FedAvg, FedMedian, FedOpt, FedOptConfig, FedProx,
    FedTrimmedAvg, ServerOptimizer, UpdatePolicy, DEFAULT_TRIMMED_BETA,
};
// the core rule behind a Python aggregator (serializable, for pickling)
use battery_fl_core::federation::{AggregationRule as Rule, FederationConfig, Strategy};
use battery_fl_core::model::ModelParams;
use battery_fl_core::{Error, UpdateRejection};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};
use serde::{Deserialize, Serialize};

use crate::conversion::{
    arrays_from_params, config_from_dict, from_json, named, positional_names, tensors, to_json,
    ArrayIn, Tensors,
};
use crate::errors::{config_error, lock, CoreResult};

/// An aggregator's state: its rule and, for the server optimizers, the global weights they
/// step from (the last result, or the initial parameters).
#[derive(Debug, Serialize, Deserialize)]
struct State {
    rule: Rule,
    global: Option<ModelParams>,
}

impl State {
    fn new(rule: Rule, global: Option<ModelParams>) -> Mutex<Self> {
        Mutex::new(State { rule, global })
    }
}

/// Sample counts from Python weights: positive whole numbers (the FedAvg weight).
fn sample_counts(weights: &[f64], updates: usize) -> Result<Vec<u64>, Error> {
    if weights.len() != updates {
        return Err(Error::Shape {
            what: "weights (one per update)".into(),
            expected: vec![updates],
            got: vec![weights.len()],
        });
    }
    let exact = |w: f64| w.is_finite() && w >= 0.0 && w.fract() == 0.0 && w <= 2f64.powi(53);
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| match exact(w) {
            true => Ok(w as u64),
            false => Err(Error::RejectedUpdate {
                client_id: i.to_string(),
                reason: UpdateRejection::InvalidWeight { weight: w },
            }),
        })
        .collect()
}

/// One round: positional tensors in, the next global weights out (the GIL released).
fn run(
    py: Python<'_>,
    state: &Mutex<State>,
    updates: Vec<Tensors>,
    weights: &[f64],
    current: Option<Tensors>,
) -> PyResult<ModelParams> {
    let counts = sample_counts(weights, updates.len()).or_raise()?;
    py.detach(|| {
        let mut state = lock(state)?;
        let params = updates
            .into_iter()
            .map(|u| named(positional_names(u.len()), u))
            .collect::<Result<Vec<_>, _>>()?;
        let global = match (current, &state.global) {
            (Some(c), _) => named(positional_names(c.len()), c)?,
            (None, Some(g)) => g.clone(),
            (None, None) if matches!(state.rule, Rule::Opt(_)) => {
                return Err(Error::InvalidConfig {
                    field: "current".into(),
                    reason: "a server optimizer needs the current global parameters: pass \
                             initial_parameters or current="
                        .into(),
                });
            }
            (None, None) => params
                .first()
                .map(ModelParams::zeros_like)
                .unwrap_or_default(),
        };
        let updates: Vec<ClientUpdate> = params
            .into_iter()
            .zip(counts)
            .enumerate()
            .map(|(i, (p, n))| ClientUpdate::parameters(i.to_string(), n, p))
            .collect();
        let next = state.rule.aggregator().aggregate(&global, &updates)?;
        if matches!(state.rule, Rule::Opt(_)) {
            state.global = Some(next.clone());
        }
        Ok(next)
    })
    .or_raise()
}

/// Which ``updates`` (each a list of arrays, as for :meth:`FedAvg.aggregate`) a server takes
/// against ``current``, the global weights they started from, as the core's
/// ``partition_updates`` sorts them for :class:`Simulation`: ``(kept, rejected)``, the positions
/// kept and, by position, why each other one is refused (names and shapes, a non-finite
/// value, a delta longer than ``max_delta_norm``). A server drops the rejected before it
/// aggregates; the bound is for one update, never for their mean.
///
/// >>> import numpy as np, battery_fl
/// >>> current = [np.zeros(3, np.float32)]
/// >>> near, far = [np.full(3, 0.1, np.float32)], [np.full(3, 5.0, np.float32)]
/// >>> battery_fl.partition_updates([near, far], current, max_delta_norm=1.0)
/// ([0], {1: 'L2 norm 8.6603 exceeds bound 1'})
#[pyfunction]
#[pyo3(name = "partition_updates", signature = (updates, current, *, max_delta_norm=None))]
fn partition_updates_py(
    py: Python<'_>,
    updates: Vec<Vec<ArrayIn<'_>>>,
    current: Vec<ArrayIn<'_>>,
    max_delta_norm: Option<f64>,
) -> PyResult<(Vec<usize>, std::collections::BTreeMap<usize, String>)> {
    let policy = policy(max_delta_norm);
    policy.validate().or_raise()?;
    let updates: Vec<Tensors> = updates.iter().map(|u| tensors(u)).collect();
    let current = tensors(&current);
    py.detach(|| partition(updates, current, &policy))
        .or_raise()
}

/// Positions of the `updates` `policy` accepts against `current`, and why it refuses the others.
fn partition(
    updates: Vec<Tensors>,
    current: Tensors,
    policy: &UpdatePolicy,
) -> Result<(Vec<usize>, std::collections::BTreeMap<usize, String>), Error> {
    let global = named(positional_names(current.len()), current)?;
    let mut named_updates = Vec::with_capacity(updates.len());
    let mut refused = std::collections::BTreeMap::new();
    for (i, u) in updates.into_iter().enumerate() {
        // a list of another length cannot even be named like the global weights
        match named(positional_names(u.len()), u) {
            Ok(params) => named_updates.push(ClientUpdate::parameters(i.to_string(), 1, params)),
            Err(e) => {
                refused.insert(i, e.to_string());
            }
        }
    }
    let (kept, rejected) = partition_updates(&global, named_updates, policy);
    for (id, why) in rejected {
        refused.insert(id.parse().unwrap_or(usize::MAX), why.to_string());
    }
    let kept = kept
        .iter()
        .filter_map(|u| u.client_id.parse().ok())
        .collect();
    Ok((kept, refused))
}

fn policy(max_delta_norm: Option<f64>) -> UpdatePolicy {
    UpdatePolicy { max_delta_norm }
}

/// Server-optimizer settings: `[eta, beta1, beta2, tau]` where given, the core's defaults
/// elsewhere.
fn fedopt_config(given: [Option<f64>; 4], max_delta_norm: Option<f64>) -> FedOptConfig {
    let default = FedOptConfig::default();
    let [eta, beta1, beta2, tau] = given;
    FedOptConfig {
        eta: eta.unwrap_or(default.eta),
        beta1: beta1.unwrap_or(default.beta1),
        beta2: beta2.unwrap_or(default.beta2),
        tau: tau.unwrap_or(default.tau),
        policy: policy(max_delta_norm),
    }
}

fn fedopt(
    optimizer: ServerOptimizer,
    initial_parameters: Option<Vec<ArrayIn<'_>>>,
    config: FedOptConfig,
) -> PyResult<Mutex<State>> {
    let global = initial_parameters
        .map(|p| named(positional_names(p.len()), tensors(&p)))
        .transpose()
        .or_raise()?;
    let rule = FedOpt::new(optimizer, config).or_raise()?;
    Ok(State::new(Rule::Opt(rule), global))
}

/// The methods every aggregator shares; `$strategy` is the core rule's [`Strategy`].
macro_rules! aggregator {
    ($ty:ident, $name:literal, $strategy:expr, $doc:literal, { $($new:tt)* }) => {
        #[doc = $doc]
        #[pyclass(frozen, name = $name, module = "battery_fl")]
        #[derive(Debug)]
        pub struct $ty {
            state: Mutex<State>,
        }

        #[pymethods]
        impl $ty {
            $($new)*

            /// Combine one round of client updates (each a list of arrays with the same
            /// shapes, in the same order) weighted by ``weights`` (sample counts: positive
            /// whole numbers) into the next global weights (float32 arrays). ``current`` is
            /// the global model the clients started from (required by the server
            /// optimizers unless given as ``initial_parameters``; they keep their own result
            /// as the next round's ``current``). The GIL is released while aggregating.
            #[pyo3(signature = (updates, weights, *, current=None))]
            fn aggregate<'py>(
                &self,
                py: Python<'py>,
                updates: Vec<Vec<ArrayIn<'py>>>,
                weights: Vec<f64>,
                current: Option<Vec<ArrayIn<'py>>>,
            ) -> PyResult<Bound<'py, PyList>> {
                let updates = updates.iter().map(|u| tensors(u)).collect();
                let current = current.as_deref().map(tensors);
                let next = run(py, &self.state, updates, &weights, current)?;
                arrays_from_params(py, &next)
            }

            /// The rule's name: its ``strategy`` name in :class:`Simulation` and the Flower
            /// run config (``fed_avg``, ``fed_prox``, ...; see
            /// :func:`strategy_needs_only_the_sum`).
            #[getter]
            fn name(&self) -> &'static str {
                $strategy.name()
            }

            /// The aggregator (settings and state) as JSON.
            fn to_json(&self) -> PyResult<String> {
                to_json(&*lock(&self.state).or_raise()?)
            }

            /// An aggregator from ``to_json`` output.
            #[classmethod]
            fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
                let mut state: State = from_json(text)?;
                if state.rule.aggregator().name() != $strategy.name() {
                    return Err(config_error("rule", format!("not a {} state", $name)));
                }
                Ok($ty { state: Mutex::new(state) })
            }

            fn __repr__(&self) -> String {
                format!("{}()", $name)
            }

            fn __reduce__<'py>(
                slf: &Bound<'py, Self>,
            ) -> PyResult<(Bound<'py, PyAny>, (String,))> {
                let from = slf.get_type().getattr("from_json")?;
                Ok((from, (slf.get().to_json()?,)))
            }
        }
    };
}

aggregator!(PyFedAvg, "FedAvg", Strategy::FedAvg,
    "Sample-weighted mean of the clients' weights (McMahan et al. 2017).\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> out = battery_fl.FedAvg().aggregate([[np.array([1.0, 1.0])], [np.array([5.0, 1.0])]], [1, 3])\n\
     >>> out[0].tolist()\n\
     [4.0, 1.0]", {
    #[new]
    #[pyo3(signature = (*, max_delta_norm=None))]
    fn new(max_delta_norm: Option<f64>) -> Self {
        let rule = Rule::Avg(FedAvg::with_policy(policy(max_delta_norm)));
        PyFedAvg { state: State::new(rule, None) }
    }
});

aggregator!(
    PyFedProx,
    "FedProx",
    Strategy::FedProx,
    "FedProx: clients add ``(mu / 2) ||w - w_global||^2`` to their loss (pass ``mu`` to \
     ``BatLiNet.train``); the server averages as FedAvg.\n\n\
     >>> import battery_fl\n\
     >>> battery_fl.FedProx(0.01).mu\n\
     0.01",
    {
        #[new]
        #[pyo3(signature = (mu, *, max_delta_norm=None))]
        fn new(mu: f64, max_delta_norm: Option<f64>) -> PyResult<Self> {
            let mut rule = FedProx::new(mu).or_raise()?;
            rule.fedavg.policy = policy(max_delta_norm);
            Ok(PyFedProx {
                state: State::new(Rule::Prox(rule), None),
            })
        }

        /// The proximal weight clients use.
        #[getter]
        fn mu(&self) -> PyResult<f64> {
            match &lock(&self.state).or_raise()?.rule {
                Rule::Prox(r) => Ok(r.mu),
                _ => Err(config_error("rule", "not a FedProx state")),
            }
        }
    }
);

aggregator!(
    PyFedAdam,
    "FedAdam",
    Strategy::FedAdam,
    "FedAdam (Reddi et al. 2021): Adam on the server with the weighted mean client delta as \
     pseudo-gradient; ``x <- x + eta * m / (sqrt(v) + tau)``.\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> agg = battery_fl.FedAdam([np.zeros(2)], eta=0.1)\n\
     >>> [round(float(v), 3) for v in agg.aggregate([[np.ones(2)]], [1])[0]]\n\
     [0.099, 0.099]",
    {
        #[new]
        #[pyo3(signature = (initial_parameters=None, *, eta=None, beta1=None, beta2=None, tau=None, max_delta_norm=None))]
        fn new(
            initial_parameters: Option<Vec<ArrayIn<'_>>>,
            eta: Option<f64>,
            beta1: Option<f64>,
            beta2: Option<f64>,
            tau: Option<f64>,
            max_delta_norm: Option<f64>,
        ) -> PyResult<Self> {
            let config = fedopt_config([eta, beta1, beta2, tau], max_delta_norm);
            Ok(PyFedAdam {
                state: fedopt(ServerOptimizer::Adam, initial_parameters, config)?,
            })
        }
    }
);

aggregator!(PyFedYogi, "FedYogi", Strategy::FedYogi,
    "FedYogi (Reddi et al. 2021): like FedAdam with Yogi's additive second-moment update.\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> battery_fl.FedYogi([np.zeros(3)]).aggregate([[np.ones(3)], [np.ones(3)]], [1, 1])[0].shape\n\
     (3,)", {
    #[new]
    #[pyo3(signature = (initial_parameters=None, *, eta=None, beta1=None, beta2=None, tau=None, max_delta_norm=None))]
    fn new(initial_parameters: Option<Vec<ArrayIn<'_>>>, eta: Option<f64>, beta1: Option<f64>, beta2: Option<f64>, tau: Option<f64>, max_delta_norm: Option<f64>) -> PyResult<Self> {
        let config = fedopt_config([eta, beta1, beta2, tau], max_delta_norm);
        Ok(PyFedYogi { state: fedopt(ServerOptimizer::Yogi, initial_parameters, config)? })
    }
});

aggregator!(
    PyFedAdagrad,
    "FedAdagrad",
    Strategy::FedAdagrad,
    "FedAdagrad (Reddi et al. 2021): Adagrad on the server.\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> battery_fl.FedAdagrad([np.zeros(3)]).aggregate([[np.ones(3)]], [4])[0].shape\n\
     (3,)",
    {
        #[new]
        #[pyo3(signature = (initial_parameters=None, *, eta=None, beta1=None, beta2=None, tau=None, max_delta_norm=None))]
        fn new(
            initial_parameters: Option<Vec<ArrayIn<'_>>>,
            eta: Option<f64>,
            beta1: Option<f64>,
            beta2: Option<f64>,
            tau: Option<f64>,
            max_delta_norm: Option<f64>,
        ) -> PyResult<Self> {
            let config = fedopt_config([eta, beta1, beta2, tau], max_delta_norm);
            Ok(PyFedAdagrad {
                state: fedopt(ServerOptimizer::Adagrad, initial_parameters, config)?,
            })
        }
    }
);

aggregator!(
    PyFedMedian,
    "FedMedian",
    Strategy::FedMedian,
    "Coordinate-wise median (Yin et al. 2018); ignores the weights' sizes.\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> ups = [[np.array([1.0])], [np.array([2.0])], [np.array([100.0])]]\n\
     >>> battery_fl.FedMedian().aggregate(ups, [1, 1, 1])[0].tolist()\n\
     [2.0]",
    {
        #[new]
        #[pyo3(signature = (*, max_delta_norm=None))]
        fn new(max_delta_norm: Option<f64>) -> Self {
            let rule = Rule::Median(FedMedian {
                policy: policy(max_delta_norm),
            });
            PyFedMedian {
                state: State::new(rule, None),
            }
        }
    }
);

aggregator!(
    PyFedTrimmedAvg,
    "FedTrimmedAvg",
    Strategy::FedTrimmedAvg,
    "Coordinate-wise trimmed mean: drop the ``floor(beta * n)`` smallest and largest values \
     of each coordinate and average the rest; ignores the weights' sizes.\n\n\
     >>> import numpy as np, battery_fl\n\
     >>> ups = [[np.array([v])] for v in (1.0, 2.0, 3.0, 100.0)]\n\
     >>> battery_fl.FedTrimmedAvg(0.25).aggregate(ups, [1, 1, 1, 1])[0].tolist()\n\
     [2.5]",
    {
        #[new]
        #[pyo3(signature = (beta=None, *, max_delta_norm=None))]
        fn new(beta: Option<f64>, max_delta_norm: Option<f64>) -> PyResult<Self> {
            let mut rule = FedTrimmedAvg::new(beta.unwrap_or(DEFAULT_TRIMMED_BETA)).or_raise()?;
            rule.policy = policy(max_delta_norm);
            Ok(PyFedTrimmedAvg {
                state: State::new(Rule::Trimmed(rule), None),
            })
        }

        /// The fraction trimmed from each end.
        #[getter]
        fn beta(&self) -> PyResult<f64> {
            match &lock(&self.state).or_raise()?.rule {
                Rule::Trimmed(r) => Ok(r.beta),
                _ => Err(config_error("rule", "not a FedTrimmedAvg state")),
            }
        }
    }
);

/// The aggregator a federation ``config``'s ``strategy`` names, with its settings
/// (``proximal_mu``, ``trimmed_beta``, ``server_optimizer``, and ``max_delta_norm`` as its
/// update check), built by the core's dispatch that :class:`Simulation` also uses: keys as
/// :meth:`Simulation.default_config`, missing ones (or no ``config``) the core's defaults.
/// ``initial_parameters`` as the server optimizers take them.
///
/// >>> import battery_fl
/// >>> battery_fl.aggregator_for({"strategy": "fed_trimmed_avg", "trimmed_beta": 0.1}).beta
/// 0.1
/// >>> battery_fl.aggregator_for().name == battery_fl.Simulation.default_config()["strategy"]
/// True
#[pyfunction]
#[pyo3(signature = (config=None, *, initial_parameters=None))]
fn aggregator_for(
    py: Python<'_>,
    config: Option<&Bound<'_, PyDict>>,
    initial_parameters: Option<Vec<ArrayIn<'_>>>,
) -> PyResult<Py<PyAny>> {
    let config: FederationConfig = match config {
        Some(dict) => config_from_dict(dict, "config")?,
        None => FederationConfig::default(),
    };
    let global = initial_parameters
        .map(|p| named(positional_names(p.len()), tensors(&p)))
        .transpose()
        .or_raise()?;
    let rule = config.aggregation_rule().or_raise()?;
    let strategy = rule.strategy();
    let state = State::new(rule, global);
    Ok(match strategy {
        Strategy::FedAvg => Py::new(py, PyFedAvg { state })?.into_any(),
        Strategy::FedProx => Py::new(py, PyFedProx { state })?.into_any(),
        Strategy::FedAdam => Py::new(py, PyFedAdam { state })?.into_any(),
        Strategy::FedYogi => Py::new(py, PyFedYogi { state })?.into_any(),
        Strategy::FedAdagrad => Py::new(py, PyFedAdagrad { state })?.into_any(),
        Strategy::FedMedian => Py::new(py, PyFedMedian { state })?.into_any(),
        Strategy::FedTrimmedAvg => Py::new(py, PyFedTrimmedAvg { state })?.into_any(),
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(aggregator_for, m)?)?;
    m.add_function(wrap_pyfunction!(partition_updates_py, m)?)?;
    m.add_class::<PyFedAvg>()?;
    m.add_class::<PyFedProx>()?;
    m.add_class::<PyFedAdam>()?;
    m.add_class::<PyFedYogi>()?;
    m.add_class::<PyFedAdagrad>()?;
    m.add_class::<PyFedMedian>()?;
    m.add_class::<PyFedTrimmedAvg>()?;
    Ok(())
}
