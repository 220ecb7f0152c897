//! What record-level differential privacy costs the federated linear model: RMSE at ε = 1, 4
//! and 8 per cell (δ = 1e-5, distributed noise under secure aggregation) next to the
//! non-private federation, for fleets of several sizes.
//!
//! ```text
//! cargo run --release -p battery-fl-core --example privacy_study -- [--sizes 24,200,1000] [--noise-seeds 3] [--epsilons 1,4,8]
//! ```
//!
//! Five synthetic fleets (the main job's profiles, data seed 42) of each size, two thirds of
//! each fleet's cells train, the rest test. For each ε and noise seed: the federated (global)
//! model and each fleet's personalized choice scored on the test cells of all fleets
//! (RMSE in cycles), and the local-only models for reference.

#[path = "cli/mod.rs"]
mod cli;

use anyhow::{Context, Result};
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::dp::RecordPrivacy;
use battery_fl_core::federation::{federate_linear, LinearFederation, SecureAggregation};
use battery_fl_core::model::{FeatureSet, LinearConfig, LinearRow};
use clap::{ArgAction, Parser};
use cli::{serde_enum, trimmed};

/// What record-level differential privacy costs the federated linear model: RMSE at ε = 1, 4
/// and 8 per cell (δ = 1e-5, distributed noise under secure aggregation) next to the
/// non-private federation, for fleets of several sizes.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Cells per fleet (two thirds train), comma-separated: one table block each.
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "24,200,1000",
        value_parser = trimmed::<usize>,
        action = ArgAction::Set
    )]
    sizes: Vec<usize>,
    /// Noise seeds per ε (mean ± std over them).
    #[arg(long, value_name = "K", default_value_t = 3)]
    noise_seeds: u64,
    /// Per-cell privacy budgets ε (δ = 1e-5), comma-separated.
    #[arg(
        long,
        value_name = "EPS,...",
        value_delimiter = ',',
        default_value = "1,4,8",
        value_parser = trimmed::<f64>,
        action = ArgAction::Set
    )]
    epsilons: Vec<f64>,
    /// Feature sets to try, comma-separated: variance, fade, discharge, conditions, aging, full
    /// (default: all).
    #[arg(
        long,
        value_name = "SET,...",
        value_delimiter = ',',
        value_parser = |s: &str| serde_enum::<FeatureSet>(s.trim()),
        action = ArgAction::Set
    )]
    sets: Option<Vec<FeatureSet>>,
    /// Candidate ridge strengths λ, comma-separated (default: LinearConfig's, 0.01 to 1000).
    #[arg(
        long,
        value_name = "L,...",
        value_delimiter = ',',
        value_parser = trimmed::<f64>,
        action = ArgAction::Set
    )]
    lambdas: Option<Vec<f64>>,
}

/// RMSE in cycles of the global model and of each fleet's own choice on its test cells, and
/// of the local-only models.
fn score(fed: &LinearFederation, test: &[Vec<LinearRow>]) -> Result<(f64, f64, f64)> {
    let (mut g, mut p, mut l) = (vec![], vec![], vec![]);
    for (fleet, rows) in fed.fleets.iter().zip(test) {
        let truth: Vec<f64> = rows
            .iter()
            .map(|r| r.require_label().map(f64::exp))
            .collect::<Result<_, _>>()?;
        let sq = |pred: Vec<(f64, bool)>| -> Vec<f64> {
            pred.iter()
                .zip(&truth)
                .map(|((p, _), t)| (p - t).powi(2))
                .collect()
        };
        g.extend(sq(fed.global.predict_rows(rows)?));
        p.extend(sq(fleet.predict_rows(rows)?));
        l.extend(sq(fleet.local.predict_rows(rows)?));
    }
    let rms = |v: &[f64]| (v.iter().sum::<f64>() / v.len().max(1) as f64).sqrt();
    Ok((rms(&g), rms(&p), rms(&l)))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (sizes, noise_seeds, epsilons) = (args.sizes, args.noise_seeds, args.epsilons);
    let mut config = LinearConfig::default();
    if let Some(sets) = args.sets {
        config.feature_sets = sets;
    }
    if let Some(lambdas) = args.lambdas {
        config.lambdas = lambdas;
    }
    let label = LabelConfig::default();
    let secure = SecureAggregation::default();
    println!("| cells per fleet (train) | epsilon per cell | noise multiplier | federated RMSE | personalized RMSE | local only | personalized / non-private |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &size in &sizes {
        let fleets = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(size)
            .with_seed(42)
            .generate()?;
        let split = |keep: fn(usize) -> bool| -> Result<Vec<Vec<LinearRow>>> {
            fleets
                .iter()
                .map(|f| {
                    let cells: Vec<_> = f
                        .cells
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| keep(*i))
                        .map(|(_, c)| c.clone())
                        .collect();
                    Ok(config.rows(&cells, &label)?)
                })
                .collect()
        };
        let (train, test) = (split(|i| i % 3 != 2)?, split(|i| i % 3 == 2)?);
        let clamped: usize = train.iter().map(|r| config.ranges.clamped_count(r)).sum();
        let train_cells = train[0].len();
        let exact = federate_linear(&train, &config, Some(&secure), 0)?;
        let (g0, p0, l0) = score(&exact, &test)?;
        println!(
            "| {size} ({train_cells}) | non-private | - | {g0:.1} | {p0:.1} | {l0:.1} | 1.00 |"
        );
        for &epsilon in &epsilons {
            let (mut gs, mut ps, mut z) = (vec![], vec![], 0.0);
            for s in 0..noise_seeds {
                let private = LinearConfig {
                    privacy: Some(RecordPrivacy {
                        seed: Some(s),
                        ..RecordPrivacy::with_epsilon(epsilon)
                    }),
                    ..config.clone()
                };
                let fed = federate_linear(&train, &private, Some(&secure), s)?;
                let report = fed.privacy.as_ref().context("a privacy report")?;
                z = report.noise_multiplier;
                let (g, p, _) = score(&fed, &test)?;
                gs.push(g);
                ps.push(p);
            }
            let ((g, gsd), (p, psd)) = (cli::mean_sd(&gs), cli::mean_sd(&ps));
            println!(
                "| {size} ({train_cells}) | {epsilon} | {z:.2} | {g:.1} ± {gsd:.1} | {p:.1} ± {psd:.1} | {l0:.1} | {:.2} |",
                p / p0
            );
        }
        if clamped > 0 {
            println!("(values outside the public ranges, clamped: {clamped})");
        }
    }
    Ok(())
}
