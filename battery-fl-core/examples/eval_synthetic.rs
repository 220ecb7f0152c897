//! Robustness on the main job's synthetic fleets (5 fleets x 24 cells, data seed 42): each
//! model trains on some cells pooled and is scored on cells of a group it never saw.
//!
//! - `--protocol lofo` (leave one fleet out): train on four fleets, test on the fifth (a new
//!   operator joining, with its own climate, usage and chemistry mix);
//! - `--protocol loco` (leave one chemistry out): train on every cell of the other cathode
//!   chemistries, test on the cells of this one.
//!
//! Models: the Severson variance model, the linear early-life model (settings by leave-one-out
//! on the training cells), and the networks `--networks` names (default `gated,cnn`):
//! BatLiNet, the single-branch CNN, `gated` (`model::GatedModel`: BatLiNet, and the hybrid where
//! the linear model extrapolates; `--members M` networks per half, default 3, the gated seed S
//! training model seeds S·M to S·M + M − 1) and `hybrid` (`model::HybridModel`: BatLiNet trained on the
//! linear model's cross-fitted residuals), with the main job's settings (60 epochs, batch 16,
//! 16 channels, 16 references), `--seeds N` seeds each (default 3); inference references come
//! from the training cells. The last lines are a
//! table: RMSE mean and spread over seeds per model and held-out group, and over all groups
//! (every held-out cell pooled).
//!
//! ```text
//! cargo run --release -p battery-fl-core --features tch --example eval_synthetic -- \
//!     --protocol lofo|loco [--seeds N] [--data-seed S] [--threads T] [--linear-only]
//!     [--networks batlinet,cnn,hybrid,gated] [--members M] [--cells-out FILE]
//! ```
#[path = "eval/cell_log.rs"]
mod cell_log;
#[path = "cli/mod.rs"]
mod cli;

use std::collections::BTreeMap;

use anyhow::Result;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    select_linear, BatLiNet, BatLiNetConfig, Dataset, GatedModel, HybridModel, LabelGrouping,
    LinearConfig, Metrics, VarianceModel, DEFAULT_GATED_MEMBERS,
};
use clap::{Parser, ValueEnum};
use cli::serde_enum;

/// Robustness on the main job's synthetic fleets (5 fleets x 24 cells, data seed 42): each
/// model trains on some cells pooled and is scored on cells of a group it never saw.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Which group is held out.
    #[arg(long, value_enum)]
    protocol: Protocol,
    /// Model seeds per network (at least 1).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    seeds: u64,
    /// Data seed of the synthetic fleets.
    #[arg(long, value_name = "S", default_value_t = 42)]
    data_seed: u64,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "T")]
    threads: Option<i32>,
    /// How the networks normalize cycle lives: pooled (over all cells) or cathode (per chemistry).
    #[arg(
        long,
        value_name = "pooled|cathode",
        default_value = "pooled",
        value_parser = serde_enum::<LabelGrouping>
    )]
    label_grouping: LabelGrouping,
    /// Only the variance and linear models (seconds; no network is trained, whatever
    /// `--networks` says).
    #[arg(long)]
    linear_only: bool,
    /// The networks to train, comma-separated (each once, in this order).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gated,cnn")]
    networks: Vec<Network>,
    /// Networks per half of the gated model: its seed S trains model seeds S·M, …, S·M + M − 1
    /// and averages them in ln(life), so the seeds of a run are disjoint ensembles.
    #[arg(long, value_name = "M", default_value_t = DEFAULT_GATED_MEMBERS)]
    members: usize,
    /// Append every test cell's prediction by every model to FILE as JSON lines (`model`,
    /// `split` (the held-out group), `seed`, `cell`, `life`, `pred`, the training lives'
    /// `train_min` / `train_max`; the linear lines also `ood`, its out-of-distribution flag,
    /// and its 90 % and widest intervals `lower_90`, `upper_90`, `lower_max`, `upper_max`; on
    /// `gated` lines `seed` is the ensemble S of model seeds S·M to S·M + M − 1).
    #[arg(long, value_name = "FILE")]
    cells_out: Option<std::path::PathBuf>,
}

/// The networks a run can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Network {
    /// BatLiNet (both branches).
    Batlinet,
    /// The single-branch CNN (BatLiNet's branch A alone).
    Cnn,
    /// BatLiNet on the linear model's cross-fitted residuals (`model::HybridModel`).
    Hybrid,
    /// BatLiNet, and the hybrid where the linear model extrapolates (`model::GatedModel`).
    Gated,
}

impl Network {
    /// The model's name in the log lines and the table (its value on the command line).
    fn name(self) -> &'static str {
        match self {
            Network::Batlinet => "batlinet",
            Network::Cnn => "cnn",
            Network::Hybrid => "hybrid",
            Network::Gated => "gated",
        }
    }
}

/// The held-out groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Leave one fleet out: train on four fleets, test on the fifth.
    Lofo,
    /// Leave one chemistry out: train on the other cathode chemistries, test on this one.
    Loco,
}

/// Each cell with its group (fleet id or cathode chemistry).
fn grouped(cells: Vec<(Cell, String)>) -> BTreeMap<String, Vec<Cell>> {
    let mut groups: BTreeMap<String, Vec<Cell>> = BTreeMap::new();
    for (cell, g) in cells {
        groups.entry(g).or_default().push(cell);
    }
    groups
}

/// (model, held-out group, seed) -> (predictions, truth)
type Results = BTreeMap<(String, String, u64), (Vec<f64>, Vec<f64>)>;

fn main() -> Result<()> {
    let mut args = Args::parse();
    let mut seen = Vec::new();
    args.networks.retain(|n| {
        let new = !seen.contains(n);
        seen.push(*n);
        new
    });
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let by_chemistry = args.protocol == Protocol::Loco;
    let fleets = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(24)
        .with_seed(args.data_seed)
        .generate()?;
    let mut cells = Vec::new();
    for f in fleets {
        for cell in f.cells {
            let group = if by_chemistry {
                cell.meta
                    .cathode
                    .clone()
                    .unwrap_or_else(|| "unknown".into())
            } else {
                format!("{} ({})", f.id, f.climate)
            };
            cells.push((cell, group));
        }
    }
    let groups = grouped(cells);
    let featurizer_cfg = FeaturizerConfig::default().with_interp_dim(64);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let base = BatLiNetConfig::default()
        .with_conv_channels(16)
        .with_batch_size(16)
        .with_epochs(60)
        .with_inference_references(16)
        .with_label_grouping(args.label_grouping)
        .with_progress(false);
    let label = LabelConfig::default();

    let mut results: Results = BTreeMap::new();
    for (held_out, test) in &groups {
        let train: Vec<Cell> = groups
            .iter()
            .filter(|(g, _)| *g != held_out)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        eprintln!(
            "{held_out}: {} train / {} test cells",
            train.len(),
            test.len()
        );
        let train_ds = Dataset::for_config(&train, &featurizer, &base, &label)?;
        let test_ds = Dataset::for_config(test, &featurizer, &base, &label)?;
        let truth = test_ds.require_labels()?;
        let variance = VarianceModel::fit(&train, &Default::default(), &label)?;
        let p_var = variance.predict(test)?;
        let linear_config = LinearConfig::default();
        let (linear, _) = select_linear(&linear_config.rows(&train, &label)?, &linear_config)?;
        let p_lin = linear.predict(test)?;
        // 90 % conformal intervals calibrated by leave-one-out on the training cells, and
        // the out-of-distribution flags
        let calibration = linear.calibrate(&linear_config.rows(&train, &label)?, true)?;
        let iv = linear.intervals(&linear_config.rows(test, &label)?, &calibration, 0.9)?;
        let covered = iv
            .iter()
            .zip(&truth)
            .filter(|(i, t)| (i.lower..=i.upper).contains(*t))
            .count();
        let flagged = iv.iter().filter(|i| i.out_of_distribution).count();
        let mut cells_out =
            cell_log::CellLog::open(args.cells_out.as_deref(), &train_ds.require_labels()?)?;
        let test_rows = linear_config.rows(test, &label)?;
        cells_out.write_linear(
            held_out,
            &test_ds,
            &p_lin,
            (&linear, &test_rows, &calibration),
        )?;
        cells_out.write("variance", held_out, 0, &test_ds, &p_var)?;
        eprintln!(
            "  linear ({} features, lambda {}): RMSE {:.1}; 90 % intervals cover {covered}/{n}, {flagged}/{n} flagged out of distribution",
            linear.feature_set.name(),
            linear.lambda,
            Metrics::compute(&p_lin, &truth)?.rmse,
            n = truth.len()
        );
        for seed in 0..args.seeds {
            results.insert(
                ("variance".into(), held_out.clone(), seed),
                (p_var.clone(), truth.clone()),
            );
            results.insert(
                ("linear".into(), held_out.clone(), seed),
                (p_lin.clone(), truth.clone()),
            );
            let networks: &[Network] = if args.linear_only {
                &[]
            } else {
                &args.networks
            };
            for &network in networks {
                let name = network.name();
                let config = base
                    .clone()
                    .with_single_branch(network == Network::Cnn)
                    .with_seed(seed);
                let p = if network == Network::Hybrid {
                    let model = HybridModel::fit(
                        &train,
                        &train_ds,
                        config,
                        featurizer_cfg.clone(),
                        &linear_config,
                        &label,
                    )?;
                    model.predict(test, &test_ds)?
                } else if network == Network::Gated {
                    let model = GatedModel::fit(
                        &train,
                        &train_ds,
                        config.with_seed(seed * args.members as u64),
                        featurizer_cfg.clone(),
                        &linear_config,
                        &label,
                        args.members,
                    )?;
                    let p = model.predict(test, &test_ds)?;
                    let sent = p.iter().filter(|g| g.extrapolated).count();
                    eprintln!(
                        "  gated seed {seed}: {sent} of {} cells extrapolated",
                        p.len()
                    );
                    p.iter().map(|g| g.life).collect()
                } else {
                    let mut model = BatLiNet::new(config, featurizer_cfg.clone())?;
                    model.fit(&train_ds)?;
                    model.predict(&test_ds, &train_ds)?
                };
                let both = p.iter().zip(&p_var).map(|(a, b)| (a * b).sqrt()).collect();
                results.insert(
                    (format!("{name}+variance"), held_out.clone(), seed),
                    (both, truth.clone()),
                );
                let m = Metrics::compute(&p, &truth)?;
                eprintln!(
                    "  {name} seed {seed}: RMSE {:.1}, MAPE {:.1} %",
                    m.rmse, m.mape
                );
                cells_out.write(name, held_out, seed, &test_ds, &p)?;
                results.insert((name.into(), held_out.clone(), seed), (p, truth.clone()));
            }
        }
    }

    println!("| model | held out | seeds | RMSE mean | RMSE std | MAPE mean (%) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut models = vec!["variance".to_string(), "linear".to_string()];
    if !args.linear_only {
        let names = args.networks.iter().map(|n| n.name().to_string());
        models.extend(names.clone());
        models.extend(names.map(|n| format!("{n}+variance")));
    }
    let mut held: Vec<String> = groups.keys().cloned().collect();
    held.push("all".into());
    for g in &held {
        for model in &models {
            let mut rmse = Vec::new();
            let mut mape = Vec::new();
            for seed in 0..args.seeds {
                let (mut p, mut t) = (Vec::new(), Vec::new());
                for ((m, h, s), (pp, tt)) in &results {
                    if m == model && *s == seed && (h == g || g == "all") {
                        p.extend(pp);
                        t.extend(tt);
                    }
                }
                let m = Metrics::compute(&p, &t)?;
                rmse.push(m.rmse);
                mape.push(m.mape);
            }
            let n = rmse.len() as f64;
            let mean = rmse.iter().sum::<f64>() / n;
            let std = (rmse.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
            let mape = mape.iter().sum::<f64>() / n;
            println!(
                "| {model} | {g} | {} | {mean:.1} | {std:.1} | {mape:.1} |",
                args.seeds
            );
        }
    }
    Ok(())
}
