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
use std::io::{Read, Write};
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

/// The largest cell accepted by [`load_cell`], [`load_cells`] and [`parse_cell`], in bytes of
/// JSON text (after gzip decompression for `.json.gz`): 256 MiB.
///
/// Real cells are a few MB of JSON (the shared MATR and CALCE cells are under 2 MB); the bound
/// keeps a small gzip bomb (a few hundred KB inflating to gigabytes) from exhausting memory.
/// Larger input is refused with [`Error::Parse`] before more than this many bytes are held.
pub const MAX_CELL_BYTES: u64 = 256 * 1024 * 1024;

/// Load one cell from a `.json` or `.json.gz` file (gzip is detected from the content).
///
/// The cell is parsed, not validated: call [`Cell::validate`] (or [`Cell::clean`] first for
/// sources with glitches).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read or the gzip stream is corrupt, [`Error::Parse`]
/// when the JSON does not match the schema or is larger than [`MAX_CELL_BYTES`].
pub fn load_cell(path: impl AsRef<Path>) -> Result<Cell> {
    let path = path.as_ref();
    let limit = MAX_CELL_BYTES;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| {
            let len = f.metadata().map_or(0, |m| m.len()).min(limit + 1);
            bytes.reserve(usize::try_from(len).unwrap_or(0));
            f.take(limit + 1).read_to_end(&mut bytes)
        })
        .map_err(io_err(path))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, limit, "file"));
    }
    parse_cell_limited(&bytes, path, limit)
}

/// Parse one cell from the bytes of a `.json` or `.json.gz` file (gzip is detected from the
/// content), as [`load_cell`] does after reading the file. Errors name an empty path.
///
/// # Errors
/// As [`load_cell`]: input (or decompressed input) larger than [`MAX_CELL_BYTES`] is refused
/// with [`Error::Parse`].
pub fn parse_cell(bytes: &[u8]) -> Result<Cell> {
    parse_cell_limited(bytes, Path::new(""), MAX_CELL_BYTES)
}

fn too_large(path: &Path, limit: u64, what: &str) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        reason: format!("{what} larger than the limit of {limit} bytes (MAX_CELL_BYTES)"),
    }
}

/// Parse a cell whose JSON text (decompressed, for gzip) may hold at most `limit` bytes; at
/// most `limit + 1` bytes are ever inflated.
fn parse_cell_limited(bytes: &[u8], path: &Path, limit: u64) -> Result<Cell> {
    let unzipped;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let cap = bytes
            .len()
            .saturating_mul(8)
            .min(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(cap);
        GzDecoder::new(bytes)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(io_err(path))?;
        if out.len() as u64 > limit {
            return Err(too_large(path, limit, "decompressed cell"));
        }
        unzipped = out;
        &unzipped
    } else {
        if bytes.len() as u64 > limit {
            return Err(too_large(path, limit, "cell"));
        }
        bytes
    };
    serde_json::from_slice::<Cell>(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Write a cell's JSON to `w`, gzip'd when `gz`; the gzip trailer is written by an explicit
/// `finish`, so its errors are returned, not dropped.
fn write_cell<W: Write>(cell: &Cell, gz: bool, mut w: W) -> std::io::Result<W> {
    if gz {
        let mut enc = GzEncoder::new(w, flate2::Compression::default());
        serde_json::to_writer(&mut enc, cell).map_err(std::io::Error::other)?;
        enc.finish()
    } else {
        serde_json::to_writer(&mut w, cell).map_err(std::io::Error::other)?;
        Ok(w)
    }
}

/// Save a cell as JSON, gzip'd when the file name ends in `.gz`.
///
/// The file is written with [`write_atomic`](crate::model::write_atomic): a uniquely named
/// temporary sibling, fsynced and renamed into place, so a failure (or a concurrent save of
/// the same path) never leaves a half-written cell behind.
///
/// # Errors
/// [`Error::Io`] naming `path` when encoding or writing fails.
pub fn save_cell(cell: &Cell, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let bytes = write_cell(cell, gz, Vec::new()).map_err(io_err(path))?;
    crate::model::write_atomic(path, &bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text).unwrap();
        enc.finish().unwrap()
    }

    fn tiny_json() -> Vec<u8> {
        let mut c = Cycle::new(1, vec![4.0, 3.6, 3.0]);
        c.discharge_capacity_ah = Some(vec![0.0, 0.5, 1.0]);
        serde_json::to_vec(&Cell::new(CellMeta::new("tiny", 1.1), vec![c])).unwrap()
    }

    #[test]
    fn gzip_bomb_over_the_limit_is_refused() {
        // 4 MiB of zeros compress to a few KB; with a 1 MiB limit it must be refused
        let bomb = gzip(&vec![0u8; 4 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = parse_cell_limited(&bomb, Path::new("bomb.json.gz"), 1 << 20).unwrap_err();
        match err {
            Error::Parse { path, reason } => {
                assert_eq!(path, Path::new("bomb.json.gz"));
                assert!(reason.contains("1048576"), "{reason}");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn limit_is_inclusive_for_plain_and_gzip() {
        let json = tiny_json();
        let n = json.len() as u64;
        for bytes in [json.clone(), gzip(&json)] {
            parse_cell_limited(&bytes, Path::new(""), n).unwrap();
            assert!(matches!(
                parse_cell_limited(&bytes, Path::new(""), n - 1),
                Err(Error::Parse { reason, .. }) if reason.contains("MAX_CELL_BYTES")
            ));
        }
    }

    /// Accepts `room` bytes, then fails every write.
    struct FailAfter {
        room: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::other("device full"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gzip_trailer_write_errors_are_returned() {
        let cell: Cell = serde_json::from_slice(&tiny_json()).unwrap();
        let full = write_cell(&cell, true, Vec::new()).unwrap();
        // room for everything but the 8-byte trailer: the error surfaces from `finish`
        let w = FailAfter {
            room: full.len() - 4,
        };
        assert!(write_cell(&cell, true, w).is_err());
        assert_eq!(parse_cell(&full).unwrap(), cell);
    }
}
