//! What record-level DP-SGD costs BatLiNet: RMSE at ε = 1, 4, 8 per cell against
//! non-private training, on synthetic multi-chemistry fleets large enough for per-cell DP to
//! make sense (`BatLiNet::train_private`).
//!
//! The fleets' cells (5 fleets x `--cells-per-fleet`, data seed 42) are pooled and split 80/20
//! into private training and test cells (seeded). Public references: `--public-cells` cells
//! generated from a public seed (9000), named apart. Rows:
//!
//! - `plain`: ordinary training (statistics and branch-B references from the private cells);
//! - `public, clipped, no noise`: DP-SGD's recipe (public statistics and references, per-cell
//!   clipping) with a negligible noise multiplier: what the design costs before any noise;
//! - `epsilon E`: DP-SGD at ε = E per cell (δ = 1e-5), the noise multiplier found for it.
//!
//! Every model predicts the test cells with the private training cells as references
//! (inference stays at home). Each row also audits the model: the loss-threshold
//! membership attack's AUC (`model::membership_auc`) of the private training cells against
//! the test cells, predicted with the public cells (what an attacker holding the released
//! model can use); 0.5 is chance. The main job's settings: 16 channels, batch 16, 16 references.
//!
//! With `--data DIR` (MATR: `data/matr_severson_qv`) the cells are real: `--public-cells`
//! cells of the `train` split, drawn with the library's public seed, are declared public
//! (an operator would take them from an open dataset such as MATR itself), the rest of
//! `train` is private, and the `primary_test` cells (the known 148-cycle outlier left out)
//! are the test cells; the model is the MATR recipe of the main job and `eval_matr` (one
//! channel, cycle-difference inter features, batch 16, 32 inference references, `--epochs`).
//!
//! ```text
//! cargo run --release -p battery-fl-core --features tch --example dpsgd_study -- \
//!     [--data DIR] [--cells-per-fleet N] [--public-cells N] [--epochs E] [--epsilons 1,4,8]
//!     [--dp-batch B] [--seeds N] [--first-seed S] [--threads T]
//! ```

#[path = "cli/mod.rs"]
mod cli;

use std::time::Instant;

use anyhow::{Context, Result};
use battery_fl_core::data::synthetic::{FleetConfig, PUBLIC_SEED};
use battery_fl_core::data::{load_cell, load_index, Cell, CleanConfig, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    membership_auc, BatLiNet, BatLiNetConfig, Dataset, DpSgdConfig, InterFeatures, Metrics,
    TrainOptions,
};
use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// What record-level DP-SGD costs BatLiNet (RMSE at ε per cell against plain training) and
/// what it buys (the membership attack's AUC against each model).
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Real cells (an index.json folder with `train` and `primary_test` splits) instead of
    /// the synthetic fleets.
    #[arg(long, value_name = "DIR")]
    data: Option<std::path::PathBuf>,
    /// Cells per fleet (five fleets, pooled; synthetic only).
    #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "data")]
    cells_per_fleet: usize,
    /// Public reference cells: generated from a public seed (default 60), or with `--data`
    /// taken from the `train` split (default 10).
    #[arg(long, value_name = "N")]
    public_cells: Option<usize>,
    /// Training epochs of every model (default 60; with `--data`, the MATR recipe's 600).
    #[arg(long, value_name = "E")]
    epochs: Option<usize>,
    /// Target epsilons per cell, comma-separated.
    #[arg(
        long,
        value_name = "E,...",
        value_delimiter = ',',
        default_value = "1,4,8"
    )]
    epsilons: Vec<f64>,
    /// Expected batch of the DP-SGD models (default: the recipe's batch, 16); plain
    /// training keeps the recipe's.
    #[arg(long, value_name = "B")]
    dp_batch: Option<usize>,
    /// Seeds (model and noise; the synthetic split too).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// The first seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    first_seed: u64,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "T")]
    threads: Option<i32>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let study = match &args.data {
        Some(dir) => Study::real(dir, &args)?,
        None => Study::synthetic(&args)?,
    };
    let label = LabelConfig::default();
    let Study {
        featurizer_cfg,
        featurizer,
        base,
        cells,
        fixed,
        public,
    } = study;
    let mut rows: Vec<Row> = Vec::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        let (train, test) = match &fixed {
            Some(split) => split.clone(),
            None => {
                let mut order: Vec<usize> = (0..cells.len()).collect();
                order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(500 + seed));
                let cut = cells.len() * 4 / 5;
                let pick =
                    |idx: &[usize]| idx.iter().map(|&i| cells[i].clone()).collect::<Vec<_>>();
                let ds = |c: &[Cell]| Dataset::for_config(c, &featurizer, &base, &label);
                (ds(&pick(&order[..cut]))?, ds(&pick(&order[cut..]))?)
            }
        };
        let truth = test.require_labels()?;
        eprintln!(
            "seed {seed}: {} private training cells, {} test cells, {} public references",
            train.len(),
            test.len(),
            public.len()
        );
        let config = base.clone().with_seed(seed);
        let mut report = |name: String, model: &BatLiNet, epsilon: f64, z: f64, secs: f64| {
            let rmse = Metrics::compute(&model.predict(&test, &train)?, &truth)?.rmse;
            // the attacker holds the released model and the public cells, never the fleet's
            let attack = membership_auc(model, &train, &test, &public)?;
            // JSON has no infinity: plain training's ε is `null`
            let eps = if epsilon.is_finite() {
                format!("{epsilon}")
            } else {
                "null".into()
            };
            println!(
                "{{\"model\": \"{name}\", \"seed\": {seed}, \"epsilon\": {eps}, \"noise_multiplier\": {z:.4}, \"rmse\": {rmse:.1}, \"attack_auc\": {attack:.3}, \"seconds\": {secs:.0}}}"
            );
            rows.push(Row {
                name,
                epsilon,
                noise_multiplier: z,
                rmse,
                attack_auc: attack,
            });
            anyhow::Ok(())
        };
        let t0 = Instant::now();
        let mut plain = BatLiNet::new(config.clone(), featurizer_cfg.clone())?;
        plain.fit(&train)?;
        report(
            "plain".into(),
            &plain,
            f64::INFINITY,
            0.0,
            t0.elapsed().as_secs_f64(),
        )?;
        let mut variants: Vec<(String, DpSgdConfig)> = vec![(
            "public, clipped, no noise".into(),
            DpSgdConfig {
                noise_multiplier: Some(1e-3),
                epsilon: None,
                seed: Some(seed),
                ..Default::default()
            },
        )];
        for &e in &args.epsilons {
            variants.push((
                format!("epsilon {e}"),
                DpSgdConfig {
                    epsilon: Some(e),
                    seed: Some(seed),
                    ..Default::default()
                },
            ));
        }
        for (name, dp) in variants {
            let t0 = Instant::now();
            let dp_config = match args.dp_batch {
                Some(b) => config.clone().with_batch_size(b),
                None => config.clone(),
            };
            let mut model = BatLiNet::new(dp_config, featurizer_cfg.clone())?;
            model.set_public_statistics(&public)?;
            let r = model.train_private(&train, &public, &dp, &TrainOptions::default())?;
            report(
                name,
                &model,
                r.epsilon,
                r.noise_multiplier,
                t0.elapsed().as_secs_f64(),
            )?;
        }
    }
    println!();
    println!(
        "| training | seeds | epsilon per cell | noise multiplier | RMSE (mean ± sample sd) | attack AUC (mean ± sample sd) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    // one line per training, in the order of the first seed
    let mut names: Vec<&str> = Vec::new();
    for r in &rows {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    for name in names {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.name == name).collect();
        let (mean, sd) = cli::mean_sd(&mine.iter().map(|r| r.rmse).collect::<Vec<_>>());
        let (auc, auc_sd) = cli::mean_sd(&mine.iter().map(|r| r.attack_auc).collect::<Vec<_>>());
        let eps = mine.iter().map(|r| r.epsilon).fold(0.0, f64::max);
        let z = mine.iter().map(|r| r.noise_multiplier).sum::<f64>() / mine.len() as f64;
        println!(
            "| {name} | {} | {} | {z:.2} | {mean:.1} ± {sd:.1} | {auc:.3} ± {auc_sd:.3} |",
            mine.len(),
            if eps.is_finite() {
                format!("{eps:.2}")
            } else {
                "∞".into()
            }
        );
    }
    Ok(())
}

/// One trained model's result (one seed).
struct Row {
    /// The training (`plain`, `epsilon 8`, ...).
    name: String,
    /// ε per cell spent (infinite for plain training).
    epsilon: f64,
    /// The noise multiplier DP-SGD used (0 for plain training).
    noise_multiplier: f64,
    /// RMSE on the test cells, predicted with the private training cells as references.
    rmse: f64,
    /// The loss-threshold membership attack's AUC (members: training cells; non-members:
    /// test cells; references: the public cells).
    attack_auc: f64,
}

/// What one study runs on: the model recipe, and either a pool of cells split per seed
/// (synthetic) or a fixed private training / test split (real cells), and the public cells.
struct Study {
    featurizer_cfg: FeaturizerConfig,
    featurizer: Featurizer,
    base: BatLiNetConfig,
    /// Cells split 80/20 per seed (synthetic; empty with a fixed split).
    cells: Vec<Cell>,
    /// Private training and test cells, the same for every seed (real cells).
    fixed: Option<(Dataset, Dataset)>,
    public: Dataset,
}

impl Study {
    /// Five synthetic fleets pooled; public cells generated from the public seed.
    fn synthetic(args: &Args) -> Result<Study> {
        let cells: Vec<Cell> = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(args.cells_per_fleet)
            .with_seed(42)
            .generate()?
            .into_iter()
            .flat_map(|f| f.cells)
            .collect();
        let public_cells = FleetConfig::default()
            .with_fleets(1)
            .with_cells_per_fleet(args.public_cells.unwrap_or(60))
            .with_seed(PUBLIC_SEED)
            .generate_public()?;
        let featurizer_cfg = FeaturizerConfig::default().with_interp_dim(64);
        let featurizer = Featurizer::new(featurizer_cfg.clone())?;
        let base = BatLiNetConfig::default()
            .with_conv_channels(16)
            .with_batch_size(16)
            .with_epochs(args.epochs.unwrap_or(60))
            .with_inference_references(16)
            .with_progress(false);
        let public =
            Dataset::for_config(&public_cells, &featurizer, &base, &LabelConfig::default())?;
        Ok(Study {
            featurizer_cfg,
            featurizer,
            base,
            cells,
            fixed: None,
            public,
        })
    }

    /// Real cells: `--public-cells` of the `train` split public (drawn with the public seed),
    /// the rest private; `primary_test` without the known outlier is the test set.
    fn real(dir: &std::path::Path, args: &Args) -> Result<Study> {
        let index =
            load_index(dir).with_context(|| format!("reading {}/index.json", dir.display()))?;
        let mut train = Vec::new();
        let mut test = Vec::new();
        for e in index {
            let path = dir.join(&e.file);
            let mut cell =
                load_cell(&path).with_context(|| format!("reading {}", path.display()))?;
            cell.clean(&CleanConfig::default())
                .and_then(|_| cell.validate())
                .with_context(|| format!("cell {}", path.display()))?;
            match e.split.as_deref() {
                Some("train") => train.push(cell),
                Some("primary_test") if cell.id() != OUTLIER => test.push(cell),
                _ => {}
            }
        }
        let public_cells = args.public_cells.unwrap_or(10);
        anyhow::ensure!(
            public_cells >= 1 && public_cells < train.len(),
            "--public-cells must leave private training cells: {public_cells} of {} train cells",
            train.len()
        );
        anyhow::ensure!(
            !test.is_empty(),
            "no primary_test cells in {}",
            dir.display()
        );
        train.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(PUBLIC_SEED));
        let private = train.split_off(public_cells);
        let featurizer_cfg = FeaturizerConfig::default()
            .with_first_cycle(2)
            .with_cycles(99)
            .with_interp_dim(200);
        let featurizer = Featurizer::new(featurizer_cfg.clone())?;
        let base = BatLiNetConfig::default()
            .with_input_channels(vec![1])
            .with_batch_size(16)
            .with_epochs(args.epochs.unwrap_or(600))
            .with_inference_references(32)
            .with_inter_features(InterFeatures::CycleDifference)
            .with_progress(false);
        let ds = |c: &[Cell]| Dataset::for_config(c, &featurizer, &base, &LabelConfig::default());
        let (public, private, test) = (ds(&train)?, ds(&private)?, ds(&test)?);
        Ok(Study {
            featurizer_cfg,
            featurizer,
            base,
            cells: Vec::new(),
            fixed: Some((private, test)),
            public,
        })
    }
}

/// The MATR cell left out of every evaluation (cycle life 148; as `eval_matr`).
const OUTLIER: &str = "MATR_2017-06-30_EL150800460605";
