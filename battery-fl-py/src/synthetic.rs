//! Seeded synthetic fleets (`battery_fl_core::data::synthetic`), exposed as
//! `battery_fl.synthetic`: `generate_fleets`, `generate_cell`, `Fleet`.

use battery_fl_core::data::synthetic::{
    CellSpec, Chemistry, FleetConfig, PUBLIC_CELLS_PER_FLEET, PUBLIC_FLEETS, PUBLIC_SEED,
};
use battery_fl_core::Error;
use pyo3::prelude::*;

use crate::data::PyBatteryCell;
use crate::errors::CoreResult;

/// One synthetic fleet: an operator's cells under its own climate and usage.
#[pyclass(frozen, name = "Fleet", module = "battery_fl.synthetic")]
#[derive(Debug)]
pub struct PyFleet {
    id: String,
    climate: String,
    ambient_temperature_c: f64,
    chemistries: Vec<String>,
    cells: Vec<Py<PyBatteryCell>>,
}

#[pymethods]
impl PyFleet {
    /// Fleet id, ``fleet0``, ``fleet1``, ...
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// Climate label.
    #[getter]
    fn climate(&self) -> &str {
        &self.climate
    }

    /// Mean ambient temperature, degrees C.
    #[getter]
    fn ambient_temperature_c(&self) -> f64 {
        self.ambient_temperature_c
    }

    /// Chemistries present, dominant first.
    #[getter]
    fn chemistries(&self) -> Vec<String> {
        self.chemistries.clone()
    }

    /// The cells, ids ``fleet<f>-<CHEM>-<jjj>``.
    #[getter]
    fn cells(&self, py: Python<'_>) -> Vec<Py<PyBatteryCell>> {
        self.cells.iter().map(|c| c.clone_ref(py)).collect()
    }

    fn __len__(&self) -> usize {
        self.cells.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Fleet({:?}, climate={:?}, cells={}, chemistries={:?})",
            self.id,
            self.climate,
            self.cells.len(),
            self.chemistries
        )
    }
}

/// Generate ``fleets`` non-IID fleets of ``cells_per_fleet`` cycled cells each, seeded and
/// bit-reproducible (in parallel, with the GIL released). Every cell has ``cycles`` early
/// cycles with all signals and its ground-truth ``recorded_cycle_life``.
///
/// >>> from battery_fl import synthetic
/// >>> fleets = synthetic.generate_fleets(fleets=2, cells_per_fleet=3, cycles=12, seed=1)
/// >>> [f.id for f in fleets], len(fleets[0].cells), fleets[0].cells[0].cell_id
/// (['fleet0', 'fleet1'], 3, 'fleet0-LFP-000')
/// >>> synthetic.generate_fleets(fleets=2, cells_per_fleet=3, cycles=12, seed=1)[1].cells == fleets[1].cells
/// True
#[pyfunction]
#[pyo3(signature = (*, fleets=5, cells_per_fleet=20, seed=42, cycles=100, points_per_cycle=200, noise=1.0, variation=1.0))]
#[allow(clippy::too_many_arguments)]
fn generate_fleets(
    py: Python<'_>,
    fleets: usize,
    cells_per_fleet: usize,
    seed: u64,
    cycles: u32,
    points_per_cycle: usize,
    noise: f64,
    variation: f64,
) -> PyResult<Vec<PyFleet>> {
    let config = FleetConfig {
        fleets,
        cells_per_fleet,
        seed,
        cycles,
        points_per_cycle,
        noise,
        variation,
        profiles: Vec::new(),
    };
    let generated = py.detach(|| config.generate()).or_raise()?;
    generated
        .into_iter()
        .map(|f| {
            let cells = f
                .cells
                .into_iter()
                .map(|c| Py::new(py, PyBatteryCell::wrap(c)))
                .collect::<PyResult<_>>()?;
            Ok(PyFleet {
                id: f.id,
                climate: f.climate,
                ambient_temperature_c: f.ambient_temperature_c,
                chemistries: f.chemistries.iter().map(|c| c.name().to_string()).collect(),
                cells,
            })
        })
        .collect()
}

/// The library's public synthetic cells: ``fleets`` fleets (default ``PUBLIC_FLEETS``, one
/// per profile of the five default fleets) of ``cells_per_fleet`` cells (default ``PUBLIC_CELLS_PER_FLEET``) of
/// the public seed (``PUBLIC_SEED``, anyone can make them), their ids prefixed ``public-`` so
/// none is taken for a fleet's own cell. A record-private :class:`battery_fl.Simulation`
/// reads its statistics and branch B's training references from such cells.
///
/// >>> from battery_fl import synthetic
/// >>> cells = synthetic.public_cells(cells_per_fleet=2, cycles=12)
/// >>> len(cells) == 2 * synthetic.PUBLIC_FLEETS, cells[0].cell_id
/// (True, 'public-fleet0-LFP-000')
#[pyfunction]
#[pyo3(signature = (*, fleets=None, cells_per_fleet=None, cycles=100, points_per_cycle=200))]
fn public_cells(
    py: Python<'_>,
    fleets: Option<usize>,
    cells_per_fleet: Option<usize>,
    cycles: u32,
    points_per_cycle: usize,
) -> PyResult<Vec<Py<PyBatteryCell>>> {
    let config = FleetConfig::new()
        .with_fleets(fleets.unwrap_or(PUBLIC_FLEETS))
        .with_cells_per_fleet(cells_per_fleet.unwrap_or(PUBLIC_CELLS_PER_FLEET))
        .with_seed(PUBLIC_SEED)
        .with_cycles(cycles)
        .with_points_per_cycle(points_per_cycle);
    let cells = py.detach(|| config.generate_public()).or_raise()?;
    cells
        .into_iter()
        .map(|c| Py::new(py, PyBatteryCell::wrap(c)))
        .collect()
}

/// Generate one cell of ``chemistry`` (``"LFP"``, ``"NMC"``, ``"NCA"`` or ``"LCO"``) cycled
/// under explicit conditions; the same arguments give the same cell.
///
/// >>> from battery_fl import synthetic
/// >>> cell = synthetic.generate_cell("NMC", cycles=5, charge_c_rate=2.0, seed=7)
/// >>> cell.cathode, len(cell), cell.recorded_cycle_life > 5
/// ('NMC', 5, True)
#[pyfunction]
#[pyo3(signature = (chemistry="LFP", *, cell_id="cell", seed=0, charge_c_rate=1.0, discharge_c_rate=1.0, temperature_c=25.0, depth_of_discharge=1.0, cycles=100, points_per_cycle=200, noise=1.0, variation=1.0))]
#[allow(clippy::too_many_arguments)]
fn generate_cell(
    py: Python<'_>,
    chemistry: &str,
    cell_id: &str,
    seed: u64,
    charge_c_rate: f64,
    discharge_c_rate: f64,
    temperature_c: f64,
    depth_of_discharge: f64,
    cycles: u32,
    points_per_cycle: usize,
    noise: f64,
    variation: f64,
) -> PyResult<PyBatteryCell> {
    let chemistry = Chemistry::from_name(chemistry)
        .ok_or_else(|| Error::InvalidConfig {
            field: "chemistry".into(),
            reason: format!("unknown chemistry {chemistry:?} (LFP, NMC, NCA or LCO)"),
        })
        .or_raise()?;
    let spec = CellSpec {
        chemistry,
        charge_c_rate,
        discharge_c_rate,
        temperature_c,
        depth_of_discharge,
        cycles,
        points_per_cycle,
        noise,
        variation,
    };
    let cell = py
        .detach(|| spec.validate().and_then(|()| spec.generate(cell_id, seed)))
        .or_raise()?;
    Ok(PyBatteryCell::wrap(cell))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFleet>()?;
    m.add_function(wrap_pyfunction!(generate_fleets, m)?)?;
    m.add_function(wrap_pyfunction!(public_cells, m)?)?;
    m.add("PUBLIC_SEED", PUBLIC_SEED)?;
    m.add("PUBLIC_FLEETS", PUBLIC_FLEETS)?;
    m.add("PUBLIC_CELLS_PER_FLEET", PUBLIC_CELLS_PER_FLEET)?;
    m.add_function(wrap_pyfunction!(generate_cell, m)?)?;
    Ok(())
}
