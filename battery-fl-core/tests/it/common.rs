//! Shared helpers for the integration tests.

use std::path::PathBuf;
use std::sync::OnceLock;

use battery_fl_core::data::{load_cells, Cell};

/// The real-data folder: `$BFL_DATA_DIR`, else the repository's own `data/` folder.
///
/// Panics, naming the folder, when it is missing: the tests that need real cells fail
/// loudly rather than skip.
pub fn real_data_dir() -> PathBuf {
    let dir = std::env::var_os("BFL_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")));
    assert!(
        dir.is_dir(),
        "real-data folder {} not found: the tests read the repository's data/ folder, \
         and the BFL_DATA_DIR environment variable overrides it",
        dir.display()
    );
    dir
}

/// All MATR cells, loaded once per test binary.
pub fn matr() -> &'static [Cell] {
    static CELLS: OnceLock<Vec<Cell>> = OnceLock::new();
    CELLS.get_or_init(|| {
        load_cells(real_data_dir().join("matr_severson_qv")).expect("MATR cells load")
    })
}

/// All CALCE cells, loaded once per test binary.
pub fn calce() -> &'static [Cell] {
    static CELLS: OnceLock<Vec<Cell>> = OnceLock::new();
    CELLS.get_or_init(|| load_cells(real_data_dir().join("calce_cs2")).expect("CALCE cells load"))
}
