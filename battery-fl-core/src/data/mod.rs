//! Cells and cycles: the measured data a fleet keeps at home.
//!
//! A [`Cell`] is its [`CellMeta`] plus a list of [`Cycle`]s. Each cycle holds aligned time
//! series; signals a source does not record are `None`, never zero-filled (the MATR files,
//! for example, carry only the discharge branch: voltage and discharge capacity).
//!
//! ```
//! use battery_fl_core::data::{Cell, CellMeta, Cycle};
//!
//! let mut cycle = Cycle::new(1, vec![4.1, 3.9, 3.5]);
//! cycle.discharge_capacity_ah = Some(vec![0.0, 0.5, 1.0]);
//! let cell = Cell::new(CellMeta::new("demo", 1.1), vec![cycle]);
//! cell.validate().unwrap();
//! assert_eq!(cell.cycles[0].len(), 3);
//! assert!(cell.cycles[0].current_a.is_none());
//! ```

mod clean;
mod fleets;
mod io;
mod label;
pub mod synthetic;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use clean::{CleanAction, CleanConfig, CleanReport};
pub use fleets::{
    index_fleets, load_fleets, FleetGrouping, FleetSplit, IndexFleet, LoadedFleet,
    DEFAULT_PROTOCOL_GROUPS,
};

/// The MATR cell Severson et al. left out of every split's evaluation (cycle life 148, an
/// outlier of the 2017-06-30 batch); the library's MATR benchmarks leave it out too.
pub const MATR_OUTLIER: &str = "MATR_2017-06-30_EL150800460605";
pub use io::{
    load_cell, load_cells, load_index, parse_cell, save_cell, IndexEntry, MAX_CELL_BYTES,
};
pub use label::{LabelConfig, LabelSource, LifeLabel};

/// One charge/discharge cycle: aligned per-sample series.
///
/// All present series have the same length as `voltage_v`. Current is positive on charge and
/// negative on discharge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    /// Cycle number as recorded by the source (1-based in most sources).
    #[serde(alias = "cycle_number")]
    pub cycle: u32,
    /// Terminal voltage, V.
    #[serde(alias = "voltage_in_V")]
    pub voltage_v: Vec<f64>,
    /// Time since the start of the cycle, s.
    #[serde(default, alias = "time_in_s")]
    pub time_s: Option<Vec<f64>>,
    /// Current, A (charge positive, discharge negative).
    #[serde(default, alias = "current_in_A")]
    pub current_a: Option<Vec<f64>>,
    /// Charge capacity counted from the start of the cycle, Ah.
    #[serde(default, alias = "charge_capacity_in_Ah")]
    pub charge_capacity_ah: Option<Vec<f64>>,
    /// Discharge capacity counted from the start of the cycle, Ah.
    #[serde(default, alias = "discharge_capacity_in_Ah")]
    pub discharge_capacity_ah: Option<Vec<f64>>,
    /// Cell temperature, degrees C.
    #[serde(default, alias = "temperature_in_C")]
    pub temperature_c: Option<Vec<f64>>,
}

impl Cycle {
    /// A cycle with only a voltage series; add the other signals through the public fields.
    pub fn new(cycle: u32, voltage_v: Vec<f64>) -> Self {
        Cycle {
            cycle,
            voltage_v,
            time_s: None,
            current_a: None,
            charge_capacity_ah: None,
            discharge_capacity_ah: None,
            temperature_c: None,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.voltage_v.len()
    }

    /// True when the cycle has no samples.
    pub fn is_empty(&self) -> bool {
        self.voltage_v.is_empty()
    }

    /// The present series by schema name, voltage first.
    pub fn signals(&self) -> impl Iterator<Item = (&'static str, &[f64])> {
        [
            ("voltage_v", Some(&self.voltage_v)),
            ("time_s", self.time_s.as_ref()),
            ("current_a", self.current_a.as_ref()),
            ("charge_capacity_ah", self.charge_capacity_ah.as_ref()),
            ("discharge_capacity_ah", self.discharge_capacity_ah.as_ref()),
            ("temperature_c", self.temperature_c.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, s)| s.map(|s| (name, s.as_slice())))
    }

    /// Largest discharge capacity in the cycle (the cycle's discharge capacity), if recorded.
    pub fn max_discharge_capacity(&self) -> Option<f64> {
        self.discharge_capacity_ah
            .as_ref()
            .and_then(|q| q.iter().copied().filter(|v| v.is_finite()).reduce(f64::max))
    }

    /// True when the cycle has current, charge and discharge capacity (a full raw record).
    pub fn has_full_signals(&self) -> bool {
        self.current_a.is_some()
            && self.charge_capacity_ah.is_some()
            && self.discharge_capacity_ah.is_some()
    }
}

/// What a cell is and how it was cycled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMeta {
    /// Unique identifier within a dataset.
    pub cell_id: String,
    /// Where the data come from (free text).
    #[serde(default)]
    pub source: Option<String>,
    /// Cathode chemistry (`LFP`, `NMC`, `NCA`, `LCO`, ...).
    #[serde(default)]
    pub cathode: Option<String>,
    /// Anode material (`graphite`, ...).
    #[serde(default)]
    pub anode: Option<String>,
    /// Electrolyte, when known.
    #[serde(default)]
    pub electrolyte: Option<String>,
    /// Form factor (`cylindrical 18650`, `prismatic`, `pouch`, ...).
    #[serde(default)]
    pub form_factor: Option<String>,
    /// Nominal capacity, Ah. Must be positive.
    pub nominal_capacity_ah: f64,
    /// Lower voltage limit, V.
    #[serde(default)]
    pub voltage_min_v: Option<f64>,
    /// Upper voltage limit, V.
    #[serde(default)]
    pub voltage_max_v: Option<f64>,
    /// Ambient / chamber temperature, degrees C.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Cycling protocol (free text).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Elemental composition (element -> mass or mole fraction), when known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub composition: BTreeMap<String, f64>,
    /// Impurity levels (impurity -> ppm), when known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub purity_ppm: BTreeMap<String, f64>,
}

impl CellMeta {
    /// Metadata with only the required fields set.
    pub fn new(cell_id: impl Into<String>, nominal_capacity_ah: f64) -> Self {
        CellMeta {
            cell_id: cell_id.into(),
            source: None,
            cathode: None,
            anode: None,
            electrolyte: None,
            form_factor: None,
            nominal_capacity_ah,
            voltage_min_v: None,
            voltage_max_v: None,
            temperature_c: None,
            protocol: None,
            composition: BTreeMap::new(),
            purity_ppm: BTreeMap::new(),
        }
    }
}

/// A cell: metadata, early-life cycles and what the source says about its life.
///
/// Serializes to the flat schema of the shared data folder (see [`load_cell`]); the
/// BatteryML/BatteryLife field names are accepted on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "io::CellRecord", into = "io::CellRecord")]
pub struct Cell {
    /// Metadata.
    pub meta: CellMeta,
    /// Cycles in recorded order.
    pub cycles: Vec<Cycle>,
    /// Cycle life at 80 % of nominal as recorded by the source, if any.
    pub cycle_life: Option<u32>,
    /// Per-cycle discharge capacity over the recorded life (entry k = cycle k + 1), Ah.
    /// Entries may be missing (`None`).
    pub capacity_trajectory: Vec<Option<f64>>,
    /// Cycles the source flags as physically implausible.
    pub suspect_cycles: Vec<u32>,
    /// Any other self-describing keys of the source file, kept for round trips.
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Cell {
    /// A cell from metadata and cycles, with no recorded label.
    pub fn new(meta: CellMeta, cycles: Vec<Cycle>) -> Self {
        Cell {
            meta,
            cycles,
            cycle_life: None,
            capacity_trajectory: Vec::new(),
            suspect_cycles: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The cell id.
    pub fn id(&self) -> &str {
        &self.meta.cell_id
    }

    /// The cycle with the given recorded number.
    pub fn cycle(&self, number: u32) -> Option<&Cycle> {
        self.cycles.iter().find(|c| c.cycle == number)
    }

    /// True when every cycle carries current and both capacities.
    pub fn has_full_signals(&self) -> bool {
        !self.cycles.is_empty() && self.cycles.iter().all(Cycle::has_full_signals)
    }
}
