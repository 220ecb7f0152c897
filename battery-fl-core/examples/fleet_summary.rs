//! The main job for now: generate the built-in synthetic fleets, featurize every cell, and
//! print a summary (cells per fleet and chemistry, cycle-life spread, featurization
//! throughput).
//!
//! ```text
//! cargo run --release --example fleet_summary -- [--fleets N] [--cells-per-fleet M] [--seed S]
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::genome::GenomeFingerprint;
use clap::Parser;

/// The main job for now: generate the built-in synthetic fleets, featurize every cell, and
/// print a summary (cells per fleet and chemistry, cycle-life spread, featurization
/// throughput).
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Number of synthetic fleets.
    #[arg(long, value_name = "N", default_value_t = FleetConfig::default().fleets)]
    fleets: usize,
    /// Cells generated per fleet.
    #[arg(long, value_name = "M", default_value_t = FleetConfig::default().cells_per_fleet)]
    cells_per_fleet: usize,
    /// Data seed of the generator.
    #[arg(long, value_name = "S", default_value_t = FleetConfig::default().seed)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = FleetConfig::default()
        .with_fleets(args.fleets)
        .with_cells_per_fleet(args.cells_per_fleet)
        .with_seed(args.seed);

    let t0 = Instant::now();
    let fleets = config.generate()?;
    let generated = t0.elapsed().as_secs_f64();
    let n_cells: usize = fleets.iter().map(|f| f.cells.len()).sum();
    println!(
        "generated {} fleets, {n_cells} cells x {} cycles in {generated:.2} s (seed {})",
        fleets.len(),
        config.cycles,
        config.seed
    );
    println!();
    println!(
        "{:<8} {:<12} {:>6}  {:<28} {:>22}",
        "fleet", "climate", "cells", "chemistries", "cycle life min/med/max"
    );
    let mut all_lives = Vec::new();
    let mut by_chem: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for fleet in &fleets {
        let mut chems: BTreeMap<&str, usize> = BTreeMap::new();
        let mut lives = Vec::new();
        for cell in &fleet.cells {
            let chem = cell.meta.cathode.as_deref().unwrap_or("?");
            *chems.entry(chem).or_default() += 1;
            if let Some(life) = cell.cycle_life {
                lives.push(f64::from(life));
                by_chem
                    .entry(chem.to_string())
                    .or_default()
                    .push(f64::from(life));
            }
        }
        let mix = chems
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<8} {:<12} {:>6}  {:<28} {:>22}",
            fleet.id,
            fleet.climate,
            fleet.cells.len(),
            mix,
            spread(&mut lives)
        );
        all_lives.extend(lives);
    }
    println!();
    for (chem, lives) in &mut by_chem {
        println!(
            "{chem:<4} {:>4} cells, cycle life min/med/max {}",
            lives.len(),
            spread(lives)
        );
    }
    println!(
        "all  {:>4} cells, cycle life min/med/max {}",
        all_lives.len(),
        spread(&mut all_lives)
    );

    let cells: Vec<_> = fleets
        .iter()
        .flat_map(|f| f.cells.iter().cloned())
        .collect();
    let featurizer = Featurizer::new(FeaturizerConfig::default())?;
    let t0 = Instant::now();
    let features = featurizer.transform_many(&cells)?;
    let secs = t0.elapsed().as_secs_f64();
    let [c, h, w] = featurizer.output_shape();
    println!();
    println!(
        "featurized {} cells to ({c}, {h}, {w}) float32 in {secs:.2} s: {:.1} cells/s on {} threads",
        features.len(),
        features.len() as f64 / secs,
        rayon::current_num_threads()
    );
    let t0 = Instant::now();
    let fps = cells
        .iter()
        .map(GenomeFingerprint::from_cell)
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "fingerprinted {} cells in {:.3} s",
        fps.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn spread(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    format!("{:.0}/{:.0}/{:.0}", v[0], v[v.len() / 2], v[v.len() - 1])
}
