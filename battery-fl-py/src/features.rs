//! The BatLiNet featurizer (`battery_fl_core::features`): `Featurizer`.

use battery_fl_core::features::{
    FeatureCleanConfig, Featurizer, FeaturizerConfig, CHANNELS, CHANNEL_NAMES,
};
use numpy::{PyArray1, PyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use rayon::prelude::*;

use crate::conversion::{from_json, shaped_f32, to_json, vec_f64};
use crate::data::{cell_refs, PyBatteryCell};
use crate::errors::CoreResult;

/// The six-channel BatLiNet featurizer: each cycle's V(Qc), V(Qd), I(Qc), I(Qd), dV(Q) and
/// R(Q) curves interpolated on ``interp_dim`` points of normalized capacity, for ``cycles``
/// cycles starting at ``first_cycle``.
///
/// ``transform`` returns a float32 array of shape ``(6, cycles, interp_dim)`` (C order,
/// moved into numpy without a copy); ``transform_many`` stacks cells into
/// ``(n, 6, cycles, interp_dim)``, featurizing in parallel with the GIL released.
///
/// >>> import battery_fl
/// >>> from battery_fl import synthetic
/// >>> cell = synthetic.generate_cell("LFP", cycles=12, seed=1)
/// >>> f = battery_fl.Featurizer(cycles=12, interp_dim=50)
/// >>> x = f.transform(cell)
/// >>> x.shape, x.dtype.name
/// ((6, 12, 50), 'float32')
/// >>> f.transform_many([cell, cell]).shape
/// (2, 6, 12, 50)
#[pyclass(frozen, eq, name = "Featurizer", module = "battery_fl")]
#[derive(Debug, Clone)]
pub struct PyFeaturizer {
    pub(crate) inner: Featurizer,
}

impl PartialEq for PyFeaturizer {
    fn eq(&self, other: &Self) -> bool {
        self.inner.config() == other.inner.config()
    }
}

impl PyFeaturizer {
    pub(crate) fn from_config(config: FeaturizerConfig) -> PyResult<Self> {
        Ok(PyFeaturizer {
            inner: Featurizer::new(config).or_raise()?,
        })
    }

    pub(crate) fn config(&self) -> &FeaturizerConfig {
        self.inner.config()
    }
}

/// A features tensor as a numpy array (moved, not copied).
pub(crate) fn features_array(
    py: Python<'_>,
    features: battery_fl_core::features::Features,
) -> PyResult<Bound<'_, PyArrayDyn<f32>>> {
    let shape = features.shape();
    shaped_f32(py, features.into_vec(), &shape)
}

#[pymethods]
impl PyFeaturizer {
    #[new]
    #[pyo3(signature = (cycles=100, interp_dim=1000, *, first_cycle=1, q_min=0.0, q_max=1.2, current_threshold_a=0.1, diff_base_cycle=10, fill_missing_cycles=true, edge_points=50, edge_std=3.0, glitch_width=25, glitch_std=3.0, cycle_std=5.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cycles: usize,
        interp_dim: usize,
        first_cycle: u32,
        q_min: f64,
        q_max: f64,
        current_threshold_a: f64,
        diff_base_cycle: u32,
        fill_missing_cycles: bool,
        edge_points: usize,
        edge_std: f64,
        glitch_width: usize,
        glitch_std: f64,
        cycle_std: f64,
    ) -> PyResult<Self> {
        let clean = FeatureCleanConfig {
            edge_points,
            edge_std,
            glitch_width,
            glitch_std,
            cycle_std,
        };
        Self::from_config(FeaturizerConfig {
            cycles,
            first_cycle,
            interp_dim,
            q_min,
            q_max,
            current_threshold_a,
            diff_base_cycle,
            clean,
            fill_missing_cycles,
        })
    }

    /// Names of the six channels, in order.
    #[classattr]
    fn channel_names(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, CHANNEL_NAMES)
    }

    /// Number of cycle rows.
    #[getter]
    fn cycles(&self) -> usize {
        self.config().cycles
    }

    /// Grid points along normalized capacity.
    #[getter]
    fn interp_dim(&self) -> usize {
        self.config().interp_dim
    }

    /// Recorded cycle number of row 0.
    #[getter]
    fn first_cycle(&self) -> u32 {
        self.config().first_cycle
    }

    /// Recorded cycle number subtracted by the intra-cell difference (branch A).
    #[getter]
    fn diff_base_cycle(&self) -> u32 {
        self.config().diff_base_cycle
    }

    /// The normalized-capacity grid (as ``numpy.linspace(q_min, q_max, interp_dim)``).
    #[getter]
    fn grid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_f64(py, self.inner.grid().to_vec())
    }

    /// ``(6, cycles, interp_dim)``.
    #[getter]
    fn output_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.inner.output_shape();
        (c, h, w)
    }

    /// Raw features of one cell, float32 ``(6, cycles, interp_dim)``.
    fn transform<'py>(
        &self,
        py: Python<'py>,
        cell: &Bound<'py, PyBatteryCell>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let cell = &cell.get().inner;
        let features = py.detach(|| self.inner.transform(cell)).or_raise()?;
        features_array(py, features)
    }

    /// Raw features of many cells, float32 ``(n, 6, cycles, interp_dim)``, computed in
    /// parallel straight into the output buffer.
    fn transform_many<'py>(
        &self,
        py: Python<'py>,
        cells: Vec<Bound<'py, PyBatteryCell>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let refs = cell_refs(&cells);
        let [c, h, w] = self.inner.output_shape();
        let block = c * h * w;
        let data = py
            .detach(|| {
                let mut out = vec![0f32; refs.len() * block];
                out.par_chunks_mut(block.max(1))
                    .zip(refs.par_iter())
                    .try_for_each(|(slot, cell)| self.inner.transform_into(cell, slot))
                    .map(|()| out)
            })
            .or_raise()?;
        shaped_f32(py, data, &[refs.len(), CHANNELS, h, w])
    }

    /// Branch-A input of one cell: raw features minus the ``diff_base_cycle`` row, cleaned.
    fn branch_a<'py>(
        &self,
        py: Python<'py>,
        cell: &Bound<'py, PyBatteryCell>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let cell = &cell.get().inner;
        let features = py.detach(|| self.inner.branch_a(cell)).or_raise()?;
        features_array(py, features)
    }

    /// The settings as JSON.
    fn to_json(&self) -> PyResult<String> {
        to_json(self.config())
    }

    /// A featurizer from JSON settings (missing fields take their defaults).
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        Self::from_config(from_json(text)?)
    }

    fn __repr__(&self) -> String {
        let c = self.config();
        format!(
            "Featurizer(cycles={}, interp_dim={}, first_cycle={})",
            c.cycles, c.interp_dim, c.first_cycle
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFeaturizer>()
}
