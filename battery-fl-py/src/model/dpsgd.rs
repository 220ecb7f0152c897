//! `BatLiNet.train_private`, `start_private` and `set_public_statistics`: record-level DP-SGD
//! (`battery_fl_core::model::dpsgd`).

use battery_fl_core::model::{DpSgdConfig, TrainOptions};
use pyo3::prelude::*;

use super::batlinet::{dataset, PyBatLiNet};
use crate::conversion::to_python;
use crate::data::{cell_refs, PyBatteryCell};

#[pymethods]
impl PyBatLiNet {
    /// Fit the label transform and input scales on labelled ``public`` cells, as
    /// ``train_private`` requires (statistics of the private cells would be released outside
    /// the guarantee).
    fn set_public_statistics(
        &self,
        py: Python<'_>,
        public: Vec<Bound<'_, PyBatteryCell>>,
    ) -> PyResult<()> {
        let public = cell_refs(&public);
        self.with(py, |m| {
            let ds = dataset(m, &public)?;
            m.set_public_statistics(&ds)
        })
    }

    /// Make a fresh model ready for ``train_private``: the statistics of the labelled
    /// ``public`` cells and, with ``public_pretraining`` (default: the core's, on), weights
    /// trained on them without noise (the model's own epochs, batch and seed). It reads only
    /// the public cells, so it spends nothing, provided the model is fresh (weights already
    /// trained on private cells would stay in the start).
    ///
    /// >>> import battery_fl
    /// >>> from battery_fl import synthetic
    /// >>> public = synthetic.public_cells(cells_per_fleet=4, cycles=12)
    /// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
    /// ...                             conv_channels=4, epochs=2, batch_size=4, progress=False)
    /// >>> before = model.get_parameters()
    /// >>> model.start_private(public)
    /// >>> any((a != b).any() for a, b in zip(before, model.get_parameters()))
    /// True
    #[pyo3(signature = (public, *, public_pretraining=None))]
    fn start_private(
        &self,
        py: Python<'_>,
        public: Vec<Bound<'_, PyBatteryCell>>,
        public_pretraining: Option<bool>,
    ) -> PyResult<()> {
        let public = cell_refs(&public);
        let defaults = DpSgdConfig::default();
        let config = DpSgdConfig {
            public_pretraining: public_pretraining.unwrap_or(defaults.public_pretraining),
            ..defaults
        };
        self.with(py, |m| {
            let ds = dataset(m, &public)?;
            m.start_private(&ds, &config)
        })
    }

    /// Train on private ``cells`` with record-level DP-SGD: each step samples cells with rate
    /// ``batch_size / len(cells)``, clips each cell's gradient to ``clipping_norm``, adds
    /// Gaussian noise of std ``noise_multiplier * clipping_norm`` and steps; branch B's
    /// references come from the labelled ``public`` cells only (a private cell among them
    /// raises ``ConfigError``). Give a target ``epsilon`` per cell (the noise multiplier is
    /// found for it; the core's default is 8) or a ``noise_multiplier`` (with ``epsilon`` too,
    /// training that would spend more raises ``PrivacyError`` before it starts). Set the
    /// label transform and input scales from public cells first (``set_public_statistics``).
    /// ``noise_seed`` makes the noise reproducible (tests; by default it comes from the OS).
    /// ``learning_rate_scale`` multiplies the model's learning rate for the private steps
    /// (default the core's ``DpSgdConfig``, ``dp.default_record_config()``).
    /// Returns the report: ``epsilon``, ``delta``, ``noise_multiplier``, ``sample_rate``,
    /// ``steps``, ``epoch_losses``, ``clipped_fraction`` (the share of sampled cells whose
    /// gradient was clipped).
    ///
    /// >>> import battery_fl
    /// >>> from battery_fl import synthetic
    /// >>> fleets = synthetic.generate_fleets(fleets=2, cells_per_fleet=8, cycles=12, seed=3)
    /// >>> private, public = fleets[0].cells, fleets[1].cells
    /// >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
    /// ...                             conv_channels=4, epochs=2, batch_size=4, progress=False)
    /// >>> model.set_public_statistics(public)
    /// >>> report = model.train_private(private, public, epsilon=4.0, noise_seed=0)
    /// >>> report["epsilon"] <= 4.0, report["steps"]
    /// (True, 4)
    #[pyo3(signature = (cells, public, *, epsilon=None, noise_multiplier=None, clipping_norm=None, delta=None, noise_seed=None, epochs=None, seed=None, learning_rate_scale=None))]
    #[allow(clippy::too_many_arguments)]
    fn train_private(
        &self,
        py: Python<'_>,
        cells: Vec<Bound<'_, PyBatteryCell>>,
        public: Vec<Bound<'_, PyBatteryCell>>,
        epsilon: Option<f64>,
        noise_multiplier: Option<f64>,
        clipping_norm: Option<f64>,
        delta: Option<f64>,
        noise_seed: Option<u64>,
        epochs: Option<usize>,
        seed: Option<u64>,
        learning_rate_scale: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let (cells, public) = (cell_refs(&cells), cell_refs(&public));
        let defaults = DpSgdConfig::default();
        let config = DpSgdConfig {
            clipping_norm: clipping_norm.unwrap_or(defaults.clipping_norm),
            noise_multiplier,
            // a noise multiplier alone means no budget; neither means the default target
            epsilon: epsilon.or(if noise_multiplier.is_some() {
                None
            } else {
                defaults.epsilon
            }),
            delta: delta.unwrap_or(defaults.delta),
            seed: noise_seed,
            // train_private trains the weights it is given; `start_private` pretrains
            public_pretraining: defaults.public_pretraining,
            learning_rate_scale: learning_rate_scale.unwrap_or(defaults.learning_rate_scale),
        };
        let opts = TrainOptions {
            epochs,
            seed,
            ..Default::default()
        };
        let report = self.with(py, |m| {
            let (train, public) = (dataset(m, &cells)?, dataset(m, &public)?);
            m.train_private(&train, &public, &config, &opts)
        })?;
        to_python(py, &report)
    }
}

/// The core's record-level DP-SGD defaults (``DpSgdConfig::default()``) as a dict:
/// ``epsilon``, ``clipping_norm``, ``delta``, ``public_pretraining``, ... (what a
/// ``record_privacy`` setting left out takes).
///
/// >>> from battery_fl import dp
/// >>> dp.default_record_config()["epsilon"], dp.default_record_config()["public_pretraining"]
/// (8.0, True)
#[pyfunction]
pub(crate) fn dp_default_record_config(py: Python<'_>) -> PyResult<Py<PyAny>> {
    to_python(py, &DpSgdConfig::default())
}

/// The loss-threshold membership-inference attack on ``model``: the chance that a random
/// ``members`` cell (trained on) has a smaller error than a random ``non_members`` cell of the
/// same distribution, predicting with the attacker's ``references`` (public cells). 0.5 is
/// chance; a model trained with DP-SGD at a small epsilon keeps it near 0.5.
#[pyfunction]
pub(crate) fn membership_auc(
    py: Python<'_>,
    model: &PyBatLiNet,
    members: Vec<Bound<'_, PyBatteryCell>>,
    non_members: Vec<Bound<'_, PyBatteryCell>>,
    references: Vec<Bound<'_, PyBatteryCell>>,
) -> PyResult<f64> {
    let (members, non_members) = (cell_refs(&members), cell_refs(&non_members));
    let references = cell_refs(&references);
    model.with(py, |m| {
        battery_fl_core::model::membership_auc(
            m,
            &dataset(m, &members)?,
            &dataset(m, &non_members)?,
            &dataset(m, &references)?,
        )
    })
}
