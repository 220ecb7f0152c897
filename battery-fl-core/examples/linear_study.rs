//! The linear recipe of the main job on the demo fleets for several data seeds, and what the
//! same model family reaches with far more cells (the ceiling any federation of this family
//! could approach).
//!
//! ```text
//! cargo run --release -p battery-fl-core --example linear_study -- [--seeds 42,43,44] [--big 400]
//!     [--knee-draws N] [--test-cells N] [--choice-margin K]
//! ```
//!
//! For each data seed: the main job's five fleets (24 cells, two thirds train), the linear
//! recipe's rows (local only, federated, personalized, centralized), then models fitted on
//! `--big` fresh cells per fleet from the same fleet profiles (another seed) and scored on the
//! same test cells: each fleet's own model with that many cells, and one pooled model. Last,
//! the knee oracle: each test cell's mean life over fresh draws of its knee given everything
//! else the generator drew for it (`CellSpec::knee_oracle`), the best any model of the first
//! 100 cycles could predict, and the floor (the root mean knee variance) none can go below.
//!
//! `--test-cells N` scores the same models on N fresh cells per fleet instead of the demo's 8
//! (less noisy ratios); the knee oracle is computed for the demo's test cells only and prints
//! NaN then.

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
    /// Knee draws per test cell for the oracle.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    knee_draws: usize,
    /// Score the demo's models on this many fresh test cells per fleet (same profiles, data
    /// seed + 2000) instead of the demo's 8: the same models, a less noisy ratio. 0 keeps
    /// the demo's test cells.
    #[arg(long, value_name = "N", default_value_t = 0)]
    test_cells: usize,
    /// How clearly a fleet's own fit must beat the global model, a paired t-test's level as a
    /// normal quantile (`LinearConfig::choice_margin`).
    #[arg(long, value_name = "K", default_value_t = battery_fl_core::federation::DEFAULT_CHOICE_MARGIN)]
    choice_margin: f64,
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
    let Args {
        seeds,
        big,
        knee_draws,
        test_cells,
        choice_margin,
    } = Args::parse();
    let config = LinearConfig {
        choice_margin,
        ..LinearConfig::default()
    };
    let label = LabelConfig::default();
    let mut summary = Vec::new();
    let mut fleets_rows = Vec::new();
    for &seed in &seeds {
        println!("\n## data seed {seed}\n");
        let demo = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(24)
            .with_seed(seed);
        let fleets = demo.generate()?;
        let oracle = if test_cells == 0 {
            knee_oracle(&demo, knee_draws)?
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
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
        let cells = if test_cells == 0 {
            cells
        } else {
            let fresh = FleetConfig::default()
                .with_fleets(demo.fleets)
                .with_cells_per_fleet(test_cells)
                .with_seed(seed + 2000)
                .generate()?;
            cells
                .into_iter()
                .zip(fresh)
                .map(|(c, f)| FleetCells { test: f.cells, ..c })
                .collect()
        };
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
            oracle,
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
    let summary_oracle: Vec<(f64, f64, f64)> = summary.iter().map(|r| r.7).collect();
    println!("\n| data seed | local only | federated | personalized | centralized | own, {big} cells | pooled, {big} cells/fleet | knee oracle (x local) | knee floor (x local) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (s, l, f, p, c, o, b, (k, floor, _)) in summary {
        println!(
            "| {s} | {l:.1} | {f:.1} | {p:.1} ({:.2} x) | {c:.1} | {o:.1} | {b:.1} | {k:.1} ({:.2} x) | {floor:.1} ({:.2} x) |",
            p / l,
            k / l,
            floor / l
        );
    }
    println!("\n| data seed | worst fleet (personalized / local) | minority cells: local / personalized / knee oracle | per-chemistry choice: all cells | worst fleet | minority cells |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for ((s, w, m, p2, w2, m2), oracle) in fleets_rows.into_iter().zip(&summary_oracle) {
        println!(
            "| {s} | {w:.2} | {:.1} / {:.1} / {:.1} ({} cells) | {p2:.1} | {w2:.2} | {:.1} |",
            m.1, m.2, oracle.2, m.0, m2.2
        );
    }
    Ok(())
}

/// The knee oracle on the demo's test cells (every third cell of each fleet): its RMSE
/// against the true lives, the floor (root mean knee variance), both over all test cells, and
/// its RMSE on the minority-chemistry test cells (a chemistry held by fewer than half the
/// fleet's training cells, as the linear report counts them).
fn knee_oracle(demo: &FleetConfig, draws: usize) -> Result<(f64, f64, f64)> {
    let (mut err, mut var, mut minority) = (Vec::new(), Vec::new(), Vec::new());
    for (f, fleet) in demo.aging_models()?.iter().enumerate() {
        let train: Vec<_> = (0..fleet.len()).filter(|i| i % 3 != 2).collect();
        for (i, (spec, model)) in fleet.iter().enumerate().filter(|(i, _)| i % 3 == 2) {
            let o = spec.knee_oracle(model, draws, (f * 1000 + i) as u64)?;
            let e = (o.mean_life - f64::from(model.cycle_life())).powi(2);
            let same = train
                .iter()
                .filter(|&&j| fleet[j].0.chemistry == spec.chemistry)
                .count();
            if same * 2 < train.len() {
                minority.push(e);
            }
            err.push(e);
            var.push(o.std_life.powi(2));
        }
    }
    let (rmse, floor, minority) = (root_mean(&err), root_mean(&var), root_mean(&minority));
    println!(
        "| knee oracle on the test cells: RMSE / floor / minority-chemistry cells | {rmse:.1} / {floor:.1} / {minority:.1} |"
    );
    Ok((rmse, floor, minority))
}
