//! The linear recipe of the main job on the demo fleets for several data seeds, and what the
//! same model family reaches with far more cells (the ceiling any federation of this family
//! could approach).
//!
//! ```text
//! cargo run --release -p battery-fl-core --example linear_study -- [--seeds 42,43,44] [--big 400]
//! ```
//!
//! For each data seed: the main job's five fleets (24 cells, two thirds train), the linear
//! recipe's rows (local only, federated, personalized, centralized), then models fitted on
//! `--big` fresh cells per fleet from the same fleet profiles (another seed) and scored on the
//! same test cells: each fleet's own model with that many cells, and one pooled model.

#[path = "linear/mod.rs"]
mod linear;

#[path = "cli/mod.rs"]
mod cli;

use anyhow::Result;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::federation::SecureAggregation;
use battery_fl_core::model::{select_linear, LinearConfig, LinearModel, LinearRow};
use clap::{ArgAction, Parser};
use cli::trimmed;
use linear::FleetCells;

/// The linear recipe of the main job on the demo fleets for several data seeds, and what the
/// same model family reaches with far more cells (the ceiling any federation of this family
/// could approach).
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Data seeds of the demo fleets, comma-separated.
    #[arg(
        long,
        value_name = "S,...",
        value_delimiter = ',',
        default_value = "42,43,44",
        value_parser = trimmed::<u64>,
        action = ArgAction::Set
    )]
    seeds: Vec<u64>,
    /// Fresh cells per fleet for the many-cells models.
    #[arg(long, value_name = "N", default_value_t = 400)]
    big: usize,
}

fn rmse(model: &LinearModel, rows: &[LinearRow]) -> Result<Vec<f64>> {
    Ok(model
        .predict_rows(rows)?
        .into_iter()
        .zip(rows)
        .map(|((p, _), r)| (p - r.log_life.unwrap_or(f64::NAN).exp()).powi(2))
        .collect())
}

fn root_mean(v: &[f64]) -> f64 {
    (v.iter().sum::<f64>() / v.len().max(1) as f64).sqrt()
}

fn main() -> Result<()> {
    let Args { seeds, big } = Args::parse();
    let config = LinearConfig::default();
    let label = LabelConfig::default();
    let mut summary = Vec::new();
    let mut fleets_rows = Vec::new();
    for &seed in &seeds {
        println!("\n## data seed {seed}\n");
        let fleets = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(24)
            .with_seed(seed)
            .generate()?;
        let cells: Vec<FleetCells> = fleets
            .iter()
            .map(|f| {
                let pick = |keep: fn(usize) -> bool| {
                    f.cells
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| keep(*i))
                        .map(|(_, c)| c.clone())
                        .collect()
                };
                FleetCells {
                    id: format!("{} ({})", f.id, f.climate),
                    train: pick(|i| i % 3 != 2),
                    test: pick(|i| i % 3 == 2),
                }
            })
            .collect();
        let report = linear::run(&config, &cells, Some(&SecureAggregation::default()), seed)?;
        println!("\nthe same, each fleet choosing per cathode chemistry:\n");
        let genome = LinearConfig {
            per_chemistry_choice: true,
            ..config.clone()
        };
        let by_chem = linear::run(&genome, &cells, Some(&SecureAggregation::default()), seed)?;
        // the same family with `big` cells per fleet
        let many = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(big)
            .with_seed(seed + 1000)
            .generate()?;
        let many_rows: Vec<Vec<LinearRow>> = many
            .iter()
            .map(|f| config.rows(&f.cells, &label))
            .collect::<Result<_, _>>()?;
        let pooled: Vec<LinearRow> = many_rows.iter().flatten().cloned().collect();
        let (pooled_model, _) = select_linear(&pooled, &config)?;
        let (mut own_err, mut pooled_err) = (Vec::new(), Vec::new());
        for (f, rows) in cells.iter().zip(&many_rows) {
            let test = config.rows(&f.test, &label)?;
            let (own_model, _) = select_linear(rows, &config)?;
            own_err.extend(rmse(&own_model, &test)?);
            pooled_err.extend(rmse(&pooled_model, &test)?);
        }
        println!(
            "| with {big} cells per fleet: own fleet's model / one pooled model | {:.1} / {:.1} |",
            root_mean(&own_err),
            root_mean(&pooled_err)
        );
        summary.push((
            seed,
            report.local,
            report.federated,
            report.personalized,
            report.centralized,
            root_mean(&own_err),
            root_mean(&pooled_err),
        ));
        let worst = |r: &linear::LinearReport| {
            r.per_fleet
                .values()
                .map(|v| {
                    v["personalized"].as_f64().unwrap_or(f64::NAN)
                        / v["local"].as_f64().unwrap_or(f64::NAN)
                })
                .fold(0.0f64, f64::max)
        };
        fleets_rows.push((
            seed,
            worst(&report),
            report.minority,
            by_chem.personalized,
            worst(&by_chem),
            by_chem.minority,
        ));
    }
    println!("\n| data seed | local only | federated | personalized | centralized | own, {big} cells | pooled, {big} cells/fleet |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (s, l, f, p, c, o, b) in summary {
        println!(
            "| {s} | {l:.1} | {f:.1} | {p:.1} ({:.2} x) | {c:.1} | {o:.1} | {b:.1} |",
            p / l
        );
    }
    println!("\n| data seed | worst fleet (personalized / local) | minority cells: local / personalized | per-chemistry choice: all cells | worst fleet | minority cells |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (s, w, m, p2, w2, m2) in fleets_rows {
        println!(
            "| {s} | {w:.2} | {:.1} / {:.1} ({} cells) | {p2:.1} | {w2:.2} | {:.1} |",
            m.1, m.2, m.0, m2.2
        );
    }
    Ok(())
}
