//! Cells and cycles (`battery_fl_core::data`): `Cycle`, `Cell`, `load_cell`, `load_cells`.

use std::path::PathBuf;

use battery_fl_core::data::{self, Cell, CellMeta, CleanConfig, Cycle, LabelConfig};
use numpy::{AllowTypeChange, PyArray1, PyArrayLike1};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::conversion::{from_json, to_json, vec_f64};
use crate::errors::CoreResult;

/// A float64 series from any 1-D array-like.
type SeriesIn<'py> = PyArrayLike1<'py, f64, AllowTypeChange>;

fn series(s: Option<SeriesIn<'_>>) -> Option<Vec<f64>> {
    s.map(|a| a.as_array().to_vec())
}

fn array<'py>(py: Python<'py>, s: &Option<Vec<f64>>) -> Option<Bound<'py, PyArray1<f64>>> {
    s.as_ref().map(|v| vec_f64(py, v.clone()))
}

/// One charge/discharge cycle: aligned per-sample float64 series.
///
/// Signals a source does not record are ``None`` (never zero-filled). Current is positive on
/// charge and negative on discharge; capacities count from 0 within the cycle.
///
/// >>> import numpy as np, battery_fl
/// >>> c = battery_fl.Cycle(1, np.array([4.1, 3.9, 3.5]), discharge_capacity_ah=[0.0, 0.5, 1.0])
/// >>> len(c), c.current_a is None, float(c.discharge_capacity_ah[-1])
/// (3, True, 1.0)
#[pyclass(frozen, eq, name = "Cycle", module = "battery_fl")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyCycle {
    pub(crate) inner: Cycle,
}

#[pymethods]
impl PyCycle {
    #[new]
    #[pyo3(signature = (cycle, voltage_v, *, time_s=None, current_a=None, charge_capacity_ah=None, discharge_capacity_ah=None, temperature_c=None))]
    fn new(
        cycle: u32,
        voltage_v: SeriesIn<'_>,
        time_s: Option<SeriesIn<'_>>,
        current_a: Option<SeriesIn<'_>>,
        charge_capacity_ah: Option<SeriesIn<'_>>,
        discharge_capacity_ah: Option<SeriesIn<'_>>,
        temperature_c: Option<SeriesIn<'_>>,
    ) -> Self {
        let mut c = Cycle::new(cycle, voltage_v.as_array().to_vec());
        c.time_s = series(time_s);
        c.current_a = series(current_a);
        c.charge_capacity_ah = series(charge_capacity_ah);
        c.discharge_capacity_ah = series(discharge_capacity_ah);
        c.temperature_c = series(temperature_c);
        PyCycle { inner: c }
    }

    /// The cycle number as recorded by the source.
    #[getter]
    fn cycle(&self) -> u32 {
        self.inner.cycle
    }

    /// Terminal voltage, V.
    #[getter]
    fn voltage_v<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        vec_f64(py, self.inner.voltage_v.clone())
    }

    /// Time since the start of the cycle, s.
    #[getter]
    fn time_s<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        array(py, &self.inner.time_s)
    }

    /// Current, A (charge positive).
    #[getter]
    fn current_a<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        array(py, &self.inner.current_a)
    }

    /// Charge capacity, Ah.
    #[getter]
    fn charge_capacity_ah<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        array(py, &self.inner.charge_capacity_ah)
    }

    /// Discharge capacity, Ah.
    #[getter]
    fn discharge_capacity_ah<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        array(py, &self.inner.discharge_capacity_ah)
    }

    /// Cell temperature, degrees C.
    #[getter]
    fn temperature_c<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        array(py, &self.inner.temperature_c)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        let signals: Vec<&str> = self.inner.signals().map(|(n, _)| n).collect();
        format!(
            "Cycle({}, samples={}, signals={signals:?})",
            self.inner.cycle,
            self.inner.len()
        )
    }
}

/// A cell: metadata, early-life cycles and the cycle life its source records.
///
/// Build one from arrays per cycle (validated on construction), load one with
/// :func:`load_cell`, or round-trip through JSON (the shared data folder's schema).
///
/// >>> import numpy as np, battery_fl
/// >>> q = np.linspace(0.0, 1.0, 11)
/// >>> cycles = [battery_fl.Cycle(n, 4.0 - q, discharge_capacity_ah=q * (1 - 0.001 * n)) for n in (1, 2)]
/// >>> cell = battery_fl.Cell("demo", 1.0, cycles, cycle_life=900, cathode="LFP")
/// >>> cell.cell_id, len(cell), cell.cycle_life(), cell.cycle_life(eol=0.95) is None
/// ('demo', 2, 900, True)
/// >>> battery_fl.Cell.from_json(cell.to_json()) == cell
/// True
#[pyclass(frozen, eq, name = "Cell", module = "battery_fl")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyBatteryCell {
    pub(crate) inner: Cell,
}

impl PyBatteryCell {
    pub(crate) fn wrap(inner: Cell) -> Self {
        PyBatteryCell { inner }
    }
}

/// The core cells behind a list of Python cells (borrowed, no copy).
pub(crate) fn cell_refs<'a>(cells: &'a [Bound<'_, PyBatteryCell>]) -> Vec<&'a Cell> {
    cells.iter().map(|c| &c.get().inner).collect()
}

#[pymethods]
impl PyBatteryCell {
    #[new]
    #[pyo3(signature = (cell_id, nominal_capacity_ah, cycles, *, cycle_life=None, source=None, cathode=None, anode=None, electrolyte=None, form_factor=None, voltage_min_v=None, voltage_max_v=None, temperature_c=None, protocol=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cell_id: String,
        nominal_capacity_ah: f64,
        cycles: Vec<PyRef<'_, PyCycle>>,
        cycle_life: Option<u32>,
        source: Option<String>,
        cathode: Option<String>,
        anode: Option<String>,
        electrolyte: Option<String>,
        form_factor: Option<String>,
        voltage_min_v: Option<f64>,
        voltage_max_v: Option<f64>,
        temperature_c: Option<f64>,
        protocol: Option<String>,
    ) -> PyResult<Self> {
        let mut meta = CellMeta::new(cell_id, nominal_capacity_ah);
        meta.source = source;
        meta.cathode = cathode;
        meta.anode = anode;
        meta.electrolyte = electrolyte;
        meta.form_factor = form_factor;
        meta.voltage_min_v = voltage_min_v;
        meta.voltage_max_v = voltage_max_v;
        meta.temperature_c = temperature_c;
        meta.protocol = protocol;
        let mut cell = Cell::new(meta, cycles.iter().map(|c| c.inner.clone()).collect());
        cell.cycle_life = cycle_life;
        cell.validate().or_raise()?;
        Ok(PyBatteryCell { inner: cell })
    }

    /// The cell id.
    #[getter]
    fn cell_id(&self) -> &str {
        self.inner.id()
    }

    /// Nominal capacity, Ah.
    #[getter]
    fn nominal_capacity_ah(&self) -> f64 {
        self.inner.meta.nominal_capacity_ah
    }

    /// The cycles, in recorded order (copies).
    #[getter]
    fn cycles(&self) -> Vec<PyCycle> {
        let wrap = |c: &Cycle| PyCycle { inner: c.clone() };
        self.inner.cycles.iter().map(wrap).collect()
    }

    /// The cycle life the source records (at 80 % of nominal), if any.
    #[getter]
    fn recorded_cycle_life(&self) -> Option<u32> {
        self.inner.cycle_life
    }

    /// Where the data come from.
    #[getter]
    fn source(&self) -> Option<&str> {
        self.inner.meta.source.as_deref()
    }

    /// Cathode chemistry (`LFP`, `NMC`, ...).
    #[getter]
    fn cathode(&self) -> Option<&str> {
        self.inner.meta.cathode.as_deref()
    }

    /// Anode material.
    #[getter]
    fn anode(&self) -> Option<&str> {
        self.inner.meta.anode.as_deref()
    }

    /// Electrolyte.
    #[getter]
    fn electrolyte(&self) -> Option<&str> {
        self.inner.meta.electrolyte.as_deref()
    }

    /// Form factor.
    #[getter]
    fn form_factor(&self) -> Option<&str> {
        self.inner.meta.form_factor.as_deref()
    }

    /// Lower voltage limit, V.
    #[getter]
    fn voltage_min_v(&self) -> Option<f64> {
        self.inner.meta.voltage_min_v
    }

    /// Upper voltage limit, V.
    #[getter]
    fn voltage_max_v(&self) -> Option<f64> {
        self.inner.meta.voltage_max_v
    }

    /// Ambient temperature, degrees C.
    #[getter]
    fn temperature_c(&self) -> Option<f64> {
        self.inner.meta.temperature_c
    }

    /// Cycling protocol.
    #[getter]
    fn protocol(&self) -> Option<&str> {
        self.inner.meta.protocol.as_deref()
    }

    /// Per-cycle discharge capacity over the recorded life (entry k = cycle k + 1), Ah;
    /// NaN where missing.
    #[getter]
    fn capacity_trajectory<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let v = self.inner.capacity_trajectory.iter();
        vec_f64(py, v.map(|q| q.unwrap_or(f64::NAN)).collect())
    }

    /// Cycles the source flags as physically implausible.
    #[getter]
    fn suspect_cycles(&self) -> Vec<u32> {
        self.inner.suspect_cycles.clone()
    }

    /// True when every cycle carries current and both capacities.
    #[getter]
    fn has_full_signals(&self) -> bool {
        self.inner.has_full_signals()
    }

    /// The cycle life at end-of-life fraction `eol` of nominal capacity, or ``None`` when the
    /// data end before it (censored). At ``eol=0.8`` the source's recorded label is used
    /// when present (``prefer_recorded``); ``median_window`` (odd) smooths the capacity
    /// series first.
    #[pyo3(signature = (eol=0.8, *, median_window=1, prefer_recorded=true))]
    fn cycle_life(
        &self,
        eol: f64,
        median_window: usize,
        prefer_recorded: bool,
    ) -> PyResult<Option<u32>> {
        let config = LabelConfig {
            eol_fraction: eol,
            median_window,
            prefer_recorded,
        };
        Ok(self.inner.cycle_life(&config).or_raise()?.cycles())
    }

    /// Check the cell; raises :class:`DataError` naming cell, cycle and field.
    fn validate(&self) -> PyResult<()> {
        self.inner.validate().or_raise()
    }

    /// A cleaned copy and the recorded numbers of the cycles it dropped: cycles with a
    /// capacity outside ``[min, max] x nominal`` or a capacity counter that falls by more than
    /// ``max_capacity_fall_ah`` are dropped; small negatives and small falls are repaired.
    #[pyo3(
        signature = (*, min_capacity_fraction=-0.02, max_capacity_fraction=1.2, max_capacity_fall_ah=0.01, drop_source_suspects=false),
        text_signature = "(self, /, *, min_capacity_fraction=-0.02, max_capacity_fraction=1.2, max_capacity_fall_ah=0.01, drop_source_suspects=False)"
    )]
    fn clean(
        &self,
        py: Python<'_>,
        min_capacity_fraction: f64,
        max_capacity_fraction: f64,
        max_capacity_fall_ah: f64,
        drop_source_suspects: bool,
    ) -> PyResult<(Self, Vec<u32>)> {
        let config = CleanConfig {
            min_capacity_fraction,
            max_capacity_fraction,
            max_capacity_fall_ah,
            drop_source_suspects,
        };
        let (cell, report) = py
            .detach(|| {
                let mut cell = self.inner.clone();
                cell.clean(&config).map(|report| (cell, report))
            })
            .or_raise()?;
        Ok((PyBatteryCell { inner: cell }, report.dropped()))
    }

    /// The cell as JSON (the shared data folder's schema).
    fn to_json(&self) -> PyResult<String> {
        to_json(&self.inner)
    }

    /// A cell from JSON (the shared schema; BatteryML field names are accepted).
    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, text: &str) -> PyResult<Self> {
        from_json(text).map(PyBatteryCell::wrap)
    }

    /// Write the cell as JSON, gzip'd when the file name ends in ``.gz``.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| data::save_cell(&self.inner, &path)).or_raise()
    }

    fn __len__(&self) -> usize {
        self.inner.cycles.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Cell({:?}, nominal_capacity_ah={}, cycles={}, cathode={:?})",
            self.inner.id(),
            self.inner.meta.nominal_capacity_ah,
            self.inner.cycles.len(),
            self.inner.meta.cathode.as_deref().unwrap_or("?")
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from = slf.get_type().getattr("from_json")?;
        Ok((from, (slf.get().to_json()?,)))
    }
}

/// Load one cell from a ``.json`` or ``.json.gz`` file (parsed, not validated).
///
/// Raises :class:`DataError` (with the ``OSError`` as ``__cause__`` when the file cannot be
/// read).
#[pyfunction]
pub(crate) fn load_cell(py: Python<'_>, path: PathBuf) -> PyResult<PyBatteryCell> {
    py.detach(|| data::load_cell(&path))
        .or_raise()
        .map(PyBatteryCell::wrap)
}

/// Load every cell of a folder in parallel: the files its ``index.json`` lists (in that
/// order), else every ``*.json``/``*.json.gz`` file in name order.
#[pyfunction]
pub(crate) fn load_cells(py: Python<'_>, folder: PathBuf) -> PyResult<Vec<PyBatteryCell>> {
    let cells = py.detach(|| data::load_cells(&folder)).or_raise()?;
    Ok(cells.into_iter().map(PyBatteryCell::wrap).collect())
}

/// A fleet loaded by :func:`load_fleets`: its id, training cells and test cells.
type PyLoadedFleet = (String, Vec<PyBatteryCell>, Vec<PyBatteryCell>);

/// The fleets of a folder with an ``index.json``, as ``(fleet_id, train_cells, test_cells)``
/// tuples: grouped ``by`` ``"fleet"`` (each entry's ``fleet`` key), ``"batch"``
/// (``batch_date``) or ``"protocol"`` (charging protocols by first-step C-rate, cut into
/// ``fleets`` groups, default ``DEFAULT_PROTOCOL_GROUPS``; the other groupings refuse a
/// count with :class:`ConfigError`); each entry's ``split`` says
/// train (``train``) or test (``test``/``primary_test``), a fleet naming none tests every
/// third cell (``battery_fl_core::data::index_fleets``). Cells as stored: clean them before
/// training. Raises :class:`ConfigError` for an unknown ``by`` and :class:`DataError` for an
/// index that names too few fleets, a fleet without training or test cells, or an entry
/// without the key ``by`` reads.
#[pyfunction]
#[pyo3(signature = (folder, *, by, fleets=None))]
pub(crate) fn load_fleets(
    py: Python<'_>,
    folder: PathBuf,
    by: &str,
    fleets: Option<i64>,
) -> PyResult<Vec<PyLoadedFleet>> {
    let grouping: data::FleetGrouping = crate::conversion::enum_from_str("by", by)?;
    // a negative count is a bad setting, not an integer overflow (0 is the core's to refuse)
    let fleets = fleets
        .map(|n| {
            usize::try_from(n).map_err(|_| {
                crate::errors::config_error("fleets", format!("must be at least 1, got {n}"))
            })
        })
        .transpose()?;
    let loaded = py
        .detach(|| data::load_fleets(&folder, grouping, fleets))
        .or_raise()?;
    let wrap = |cells: Vec<Cell>| cells.into_iter().map(PyBatteryCell::wrap).collect();
    Ok(loaded
        .into_iter()
        .map(|f| (f.id, wrap(f.train), wrap(f.test)))
        .collect())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCycle>()?;
    m.add_class::<PyBatteryCell>()?;
    m.add_function(wrap_pyfunction!(load_cell, m)?)?;
    m.add_function(wrap_pyfunction!(load_cells, m)?)?;
    m.add_function(wrap_pyfunction!(load_fleets, m)?)?;
    m.add("DEFAULT_PROTOCOL_GROUPS", data::DEFAULT_PROTOCOL_GROUPS)?;
    Ok(())
}
