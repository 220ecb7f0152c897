//! Train a tiny BatLiNet on a few real MATR cells and save it: the model the C example
//! (`examples/c/predict.c`) and the C model tests load. Seeded and quick (seconds); the
//! model is small, not accurate.
//!
//! ```text
//! cargo run -p battery-fl-ffi --features tch --example tiny_model -- <matr_dir> <out_dir> [cells] [epochs]
//! ```
//!
//! MATR cells hold only discharge curves for cycles 2..100, so the network sees the V(Qd)
//! channel (1) on rows for cycles 2..100.

use std::error::Error;
use std::path::PathBuf;

use battery_fl_core::data::{load_cell, load_index, CleanConfig, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{BatLiNet, BatLiNetConfig, Dataset};
use clap::Parser;

/// Train a tiny BatLiNet on a few real MATR cells and save it: the model the C example
/// (`examples/c/predict.c`) and the C model tests load.
#[derive(Debug, Parser)]
struct Args {
    /// MATR data folder (with its index of cells and their train/test split).
    #[arg(value_name = "matr_dir")]
    data: PathBuf,
    /// Folder to save the model to.
    #[arg(value_name = "out_dir")]
    out: PathBuf,
    /// Training cells: the first ones of the train split.
    #[arg(value_name = "cells", default_value_t = 16)]
    n_cells: usize,
    /// Training epochs.
    #[arg(value_name = "epochs", default_value_t = 40)]
    epochs: usize,
}

fn main() -> Result<(), Box<dyn Error>> {
    let Args {
        data,
        out,
        n_cells,
        epochs,
    } = Args::parse();

    // the first `n_cells` cells of the train split, cleaned and validated
    let mut cells = Vec::new();
    for entry in load_index(&data)? {
        if cells.len() == n_cells {
            break;
        }
        if entry.split.as_deref() != Some("train") {
            continue;
        }
        let mut cell = load_cell(data.join(&entry.file))?;
        cell.clean(&CleanConfig::default())?;
        cell.validate()?;
        cells.push(cell);
    }

    let featurizer_cfg = FeaturizerConfig::default()
        .with_first_cycle(2)
        .with_cycles(99)
        .with_interp_dim(100);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let train = Dataset::from_cells(&cells, &featurizer, &[1], &LabelConfig::default())?;
    let config = BatLiNetConfig::default()
        .with_input_channels(vec![1])
        .with_conv_channels(8)
        .with_epochs(epochs)
        .with_batch_size(8)
        .with_inference_references(4)
        .with_progress(false)
        .with_seed(7);
    let mut model = BatLiNet::new(config, featurizer_cfg)?;
    let report = model.fit(&train)?;
    model.save(&out)?;
    println!(
        "tiny model: {} cells, {} epochs (final loss {:.4}) -> {}",
        cells.len(),
        epochs,
        report.epoch_losses.last().copied().unwrap_or(f64::NAN),
        out.display()
    );
    Ok(())
}
