//! Reading and writing cells: one JSON (optionally gzip'd) file per cell.
//!
//! The on-disk schema is the one of the shared real-data folders:
//! `cell_id, source, cathode, anode, form_factor, nominal_capacity_ah, voltage_min_v,
//! voltage_max_v, temperature_c, protocol, cycle_life, cycles[{cycle, time_s, voltage_v,
//! current_a, charge_capacity_ah, discharge_capacity_ah, temperature_c}],
//! capacity_trajectory, suspect_cycles`, plus any self-describing extra keys (kept verbatim).
//! The BatteryML/BatteryLife names (`cycle_data`, `cycle_number`, `voltage_in_V`,
//! `current_in_A`, `charge_capacity_in_Ah`, `discharge_capacity_in_Ah`, `time_in_s`,
//! `temperature_in_C`, `nominal_capacity_in_Ah`, `cathode_material`, ...) are read too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use super::{Cell, CellMeta, Cycle};
use crate::error::{Error, Result};

/// The flat file record; [`Cell`] converts from and into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CellRecord {
    cell_id: String,
    #[serde(default, alias = "reference")]
    source: Option<String>,
    #[serde(default, alias = "cathode_material")]
    cathode: Option<String>,
    #[serde(default, alias = "anode_material")]
    anode: Option<String>,
    #[serde(
        default,
        alias = "electrolyte_material",
        skip_serializing_if = "Option::is_none"
    )]
    electrolyte: Option<String>,
    #[serde(default)]
    form_factor: Option<String>,
    #[serde(alias = "nominal_capacity_in_Ah")]
    nominal_capacity_ah: f64,
    #[serde(default, alias = "min_voltage_limit_in_V")]
    voltage_min_v: Option<f64>,
    #[serde(default, alias = "max_voltage_limit_in_V")]
    voltage_max_v: Option<f64>,
    #[serde(default)]
    temperature_c: Option<f64>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    composition: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    purity_ppm: BTreeMap<String, f64>,
    #[serde(default)]
    cycle_life: Option<u32>,
    #[serde(alias = "cycle_data")]
    cycles: Vec<Cycle>,
    #[serde(default)]
    capacity_trajectory: Vec<Option<f64>>,
    #[serde(default)]
    suspect_cycles: Vec<u32>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
}

impl From<CellRecord> for Cell {
    fn from(r: CellRecord) -> Self {
        Cell {
            meta: CellMeta {
                cell_id: r.cell_id,
                source: r.source,
                cathode: r.cathode,
                anode: r.anode,
                electrolyte: r.electrolyte,
                form_factor: r.form_factor,
                nominal_capacity_ah: r.nominal_capacity_ah,
                voltage_min_v: r.voltage_min_v,
                voltage_max_v: r.voltage_max_v,
                temperature_c: r.temperature_c,
                protocol: r.protocol,
                composition: r.composition,
                purity_ppm: r.purity_ppm,
            },
            cycles: r.cycles,
            cycle_life: r.cycle_life,
            capacity_trajectory: r.capacity_trajectory,
            suspect_cycles: r.suspect_cycles,
            extra: r.extra,
        }
    }
}

impl From<Cell> for CellRecord {
    fn from(c: Cell) -> Self {
        let m = c.meta;
        CellRecord {
            cell_id: m.cell_id,
            source: m.source,
            cathode: m.cathode,
            anode: m.anode,
            electrolyte: m.electrolyte,
            form_factor: m.form_factor,
            nominal_capacity_ah: m.nominal_capacity_ah,
            voltage_min_v: m.voltage_min_v,
            voltage_max_v: m.voltage_max_v,
            temperature_c: m.temperature_c,
            protocol: m.protocol,
            composition: m.composition,
            purity_ppm: m.purity_ppm,
            cycle_life: c.cycle_life,
            cycles: c.cycles,
            capacity_trajectory: c.capacity_trajectory,
            suspect_cycles: c.suspect_cycles,
            extra: c.extra,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Load one cell from a `.json` or `.json.gz` file (gzip is detected from the content).
///
/// The cell is parsed, not validated: call [`Cell::validate`] (or [`Cell::clean`] first for
/// sources with glitches).
pub fn load_cell(path: impl AsRef<Path>) -> Result<Cell> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    parse_cell_at(&bytes, path)
}

/// Parse one cell from the bytes of a `.json` or `.json.gz` file (gzip is detected from the
/// content), as [`load_cell`] does after reading the file. Errors name an empty path.
pub fn parse_cell(bytes: &[u8]) -> Result<Cell> {
    parse_cell_at(bytes, Path::new(""))
}

fn parse_cell_at(bytes: &[u8], path: &Path) -> Result<Cell> {
    let unzipped;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 8);
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(io_err(path))?;
        unzipped = out;
        &unzipped
    } else {
        bytes
    };
    serde_json::from_slice::<Cell>(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Save a cell as JSON, gzip'd when the file name ends in `.gz`.
///
/// The file is written to a temporary sibling and renamed into place, so a failure never
/// leaves a half-written cell behind.
pub fn save_cell(cell: &Cell, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("json")
    ));
    let write = || -> std::io::Result<()> {
        let file = File::create(&tmp)?;
        let gz = path.extension().is_some_and(|e| e == "gz");
        let mut w: Box<dyn Write> = if gz {
            Box::new(GzEncoder::new(
                BufWriter::new(file),
                flate2::Compression::default(),
            ))
        } else {
            Box::new(BufWriter::new(file))
        };
        serde_json::to_writer(&mut w, cell).map_err(std::io::Error::other)?;
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// One entry of a dataset folder's `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The cell id.
    pub cell_id: String,
    /// The file name, relative to the folder.
    pub file: String,
    /// Recorded cycle life, if any.
    #[serde(default)]
    pub cycle_life: Option<u32>,
    /// Split name (`train`, `primary_test`, ...), if the dataset defines one.
    #[serde(default)]
    pub split: Option<String>,
    /// Charging protocol, if listed.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Read a folder's `index.json`.
pub fn load_index(folder: impl AsRef<Path>) -> Result<Vec<IndexEntry>> {
    let path = folder.as_ref().join("index.json");
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Parse {
        path,
        reason: e.to_string(),
    })
}

/// Load every cell of a folder, in parallel.
///
/// With an `index.json`, the files it lists are loaded in its order; without one, every
/// `*.json` / `*.json.gz` file except `index.json` is loaded in file-name order.
pub fn load_cells(folder: impl AsRef<Path>) -> Result<Vec<Cell>> {
    use rayon::prelude::*;
    let folder = folder.as_ref();
    let files: Vec<PathBuf> = if folder.join("index.json").is_file() {
        load_index(folder)?
            .into_iter()
            .map(|e| folder.join(e.file))
            .collect()
    } else {
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(io_err(folder))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                (name.ends_with(".json") || name.ends_with(".json.gz")) && name != "index.json"
            })
            .collect();
        files.sort();
        files
    };
    files.par_iter().map(load_cell).collect()
}
