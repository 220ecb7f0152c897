//! The main job's fleets: the built-in synthetic ones, real cells grouped by charging
//! protocol, the public cells record-level DP-SGD reads its statistics and references from,
//! and the BatLiNet recipe for each kind.

use anyhow::Result;
use battery_fl_core::data::synthetic::{FleetConfig, PUBLIC_SEED};
use battery_fl_core::data::{
    load_fleets, Cell, CleanConfig, FleetGrouping, LabelConfig, MATR_OUTLIER,
};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::federation::FleetData;
use battery_fl_core::model::{BatLiNetConfig, BatLiNetPreset, Dataset};

use super::linear::FleetCells;

/// The featurizer and BatLiNet settings for real (`--data`, MATR-like) or synthetic cells:
/// the core's presets (`BatLiNetPreset::Matr`, the recipe `eval_matr` chose by 4-fold
/// cross-validation on `train`, and `BatLiNetPreset::Synthetic`).
pub fn batlinet_recipe(real: bool) -> (FeaturizerConfig, BatLiNetConfig) {
    if real {
        BatLiNetPreset::Matr.configs()
    } else {
        BatLiNetPreset::Synthetic.configs()
    }
}

/// Labelled public cells for record-level DP-SGD: `fleets` synthetic fleets of `per_fleet`
/// cells of the library's public seed.
pub fn public_cells(
    featurizer: &Featurizer,
    model: &BatLiNetConfig,
    fleets: usize,
    per_fleet: usize,
) -> Result<Dataset> {
    let cells = FleetConfig::default()
        .with_fleets(fleets)
        .with_cells_per_fleet(per_fleet)
        .with_seed(PUBLIC_SEED)
        .generate_public()?;
    Ok(Dataset::for_config(
        &cells,
        featurizer,
        model,
        &LabelConfig::default(),
    )?)
}

/// Synthetic fleets of data seed `seed`: two thirds of each fleet's cells train, the rest test.
pub fn synthetic_fleets(
    featurizer: &Featurizer,
    model: &BatLiNetConfig,
    cells_per_fleet: usize,
    seed: u64,
) -> Result<Vec<(FleetData, FleetCells)>> {
    let fleets = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(cells_per_fleet)
        .with_seed(seed)
        .generate()?;
    fleets
        .into_iter()
        .map(|f| {
            let ds = Dataset::for_config(&f.cells, featurizer, model, &LabelConfig::default())?;
            let n = ds.len();
            let train: Vec<usize> = (0..n).filter(|i| i % 3 != 2).collect();
            let test: Vec<usize> = (0..n).filter(|i| i % 3 == 2).collect();
            anyhow::ensure!(n == f.cells.len(), "every synthetic cell has a label");
            let id = format!("{} ({})", f.id, f.climate);
            // the cells move (not copied) into the linear recipe's split: thousands of raw
            // cycling records are the largest thing the job holds
            let (mut train_cells, mut test_cells) = (Vec::new(), Vec::new());
            for (i, cell) in f.cells.into_iter().enumerate() {
                if i % 3 == 2 {
                    test_cells.push(cell);
                } else {
                    train_cells.push(cell);
                }
            }
            let cells = FleetCells {
                id: id.clone(),
                train: train_cells,
                test: test_cells,
            };
            let data = FleetData {
                id,
                train: ds.subset(&train)?,
                test: ds.subset(&test)?,
            };
            Ok((data, cells))
        })
        .collect()
}

/// Cells of a folder: fleets and their training and test cells from its `index.json`
/// (`data::index_fleets`; MATR's known 148-cycle outlier left out).
pub fn real_fleets(
    dir: &std::path::Path,
    grouping: FleetGrouping,
    n: Option<usize>,
    featurizer: &Featurizer,
    model: &BatLiNetConfig,
) -> Result<Vec<(FleetData, FleetCells)>> {
    let clean = |cells: Vec<Cell>| -> Result<Vec<Cell>> {
        cells
            .into_iter()
            .map(|mut c| {
                c.clean(&CleanConfig::default())?;
                Ok(c)
            })
            .collect()
    };
    load_fleets(dir, grouping, n)?
        .into_iter()
        .map(|f| {
            // (MATR's outlier is left out after grouping: its protocol still counts among
            // the protocols; a fleet it leaves without a test cell is an error)
            let f = f.without(|c| c.id() == MATR_OUTLIER)?;
            let ds =
                |v: &[Cell]| Dataset::for_config(v, featurizer, model, &LabelConfig::default());
            let cells = FleetCells {
                id: f.id,
                train: clean(f.train)?,
                test: clean(f.test)?,
            };
            let data = FleetData {
                id: cells.id.clone(),
                train: ds(&cells.train)?,
                test: ds(&cells.test)?,
            };
            Ok((data, cells))
        })
        .collect()
}
