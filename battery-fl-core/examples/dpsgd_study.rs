//! What record-level DP-SGD costs BatLiNet: RMSE at ε = 1, 4, 8 per cell against
//! non-private training, on synthetic multi-chemistry fleets large enough for per-cell DP to
//! make sense (`BatLiNet::train_private`).
//!
//! The fleets' cells (5 fleets x `--cells-per-fleet`, data seed 42) are pooled and split 80/20
//! into private training and test cells (seeded). Public references: `--public-cells` cells
//! generated from a public seed (9000), named apart. Rows:
//!
//! - `plain`: ordinary training (statistics and branch-B references from the private cells);
//! - `plain, public start`: the same from the weights trained on the public cells;
//! - `public, clipped, no noise`: DP-SGD's recipe (public statistics and references, per-cell
//!   clipping, a start trained on the public cells) with a negligible noise multiplier: what
//!   the design costs before any noise;
//! - `public cells only`: the start trained on the public cells, before any private cell;
//! - `epsilon E`: DP-SGD at ε = E per cell (δ = 1e-5), the noise multiplier found for it.
//!
//! `--no-public-pretraining` starts the DP-SGD models from random weights (and drops the two
//! public-start rows).
//!
//! Every model predicts the test cells with the private training cells as references
//! (inference stays at home). Each row also audits the model: the loss-threshold
//! membership attack's AUC (`model::membership_auc`) of the private training cells against
//! the test cells, predicted with the public cells (what an attacker holding the released
//! model can use); 0.5 is chance. With `--shadows N` (synthetic cells only) each row is also
//! attacked by the offline likelihood-ratio attack (`model::membership_lira_auc`): N shadow
//! models of the row's own recipe, each trained on as many cells of its own independent draw
//! of the fleets (data seeds 7042, 7043, ...), tell the attacker how well a model that never
//! saw a cell fits it. The main job's settings: 16 channels, batch 16, 16 references.
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
//!     [--dp-batch B] [--no-public-pretraining] [--conv-channels N] [--clipping-norm C]
//!     [--shadows N] [--data-seed S] [--weight-averaging F] [--cosine]
//!     [--seeds N] [--first-seed S] [--threads T]
//! ```

#[path = "cli/mod.rs"]
mod cli;

use std::time::Instant;

use anyhow::{Context, Result};
use battery_fl_core::data::synthetic::{FleetConfig, PUBLIC_SEED};
use battery_fl_core::data::{load_cell, load_index, Cell, CleanConfig, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    membership_auc, membership_lira_auc, BatLiNet, BatLiNetConfig, Dataset, DpSgdConfig,
    InterFeatures, LrSchedule, Metrics, TrainOptions,
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
    /// Fleets of the public set (synthetic; default 1: the rows before session 21; the
    /// library's own set is `PUBLIC_FLEETS` = 5 fleets, one per default profile). The
    /// `--public-cells` are spread over them.
    #[arg(long, value_name = "K", default_value_t = 1, conflicts_with = "data")]
    public_fleets: usize,
    /// Shadow models per trained model for the likelihood-ratio membership attack (0: only
    /// the loss-threshold attack; else at least 2). Shadow `s` is trained with the row's recipe
    /// on as many cells of its own draw of the fleets (same profiles, data seed 7042 + s), so
    /// the attack costs `N` extra trainings per row.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "data",
          value_parser = shadow_count)]
    shadows: usize,
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
    /// Epochs of the DP-SGD models' private training (default: every model's `--epochs`; the
    /// start on the public cells keeps those).
    #[arg(long, value_name = "E")]
    dp_epochs: Option<usize>,
    /// Factor on the recipe's learning rate (1e-3) in the DP-SGD models' private training
    /// (`DpSgdConfig::learning_rate_scale`; default: the core's, 3).
    #[arg(long, value_name = "F")]
    learning_rate_scale: Option<f64>,
    /// Only the DP-SGD rows (skip the plain, noiseless and public-only rows; for sweeps of
    /// the private recipe against plain rows already measured).
    #[arg(long)]
    dp_only: bool,
    /// Data seed of the synthetic fleets (default 42, the benchmark's fleets; choose
    /// settings on another draw, then measure on 42).
    #[arg(long, value_name = "S", default_value_t = 42, conflicts_with = "data")]
    data_seed: u64,
    /// Fraction of the final epochs whose weights every model averages
    /// (`BatLiNetConfig::weight_averaging`; default 0).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    weight_averaging: f64,
    /// Cosine learning-rate schedule for every model (default constant).
    #[arg(long)]
    cosine: bool,
    /// Convolution channels of every synthetic-fleet model (default 16, the main job's).
    #[arg(long, value_name = "N", default_value_t = 16, conflicts_with = "data")]
    conv_channels: usize,
    /// References each training cell is paired with in branch B, for every model (default:
    /// the model's, 2). Under DP-SGD a cell's gradient over more references is a less noisy
    /// direction to clip (augmentation multiplicity) at no privacy cost.
    #[arg(long, value_name = "S")]
    train_references: Option<usize>,
    /// DP-SGD models start from random weights, not from weights trained on the public cells
    /// (`DpSgdConfig::public_pretraining`, on by default).
    #[arg(long)]
    no_public_pretraining: bool,
    /// Per-cell clipping norm of the DP-SGD models (default: the core's, 1).
    #[arg(long, value_name = "C")]
    clipping_norm: Option<f64>,
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

/// `--shadows`: 0, or 2 to 1000 (one shadow model gives no variance).
fn shadow_count(v: &str) -> std::result::Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n == 0 || (2..=1000).contains(&n) => Ok(n),
        _ => Err(format!("expected 0 or 2 to 1000 shadow models, got {v}")),
    }
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
        attacker,
    } = study;
    let mut rows: Vec<Row> = Vec::new();
    let private = DpSgdConfig {
        clipping_norm: args
            .clipping_norm
            .unwrap_or(DpSgdConfig::default().clipping_norm),
        public_pretraining: !args.no_public_pretraining,
        learning_rate_scale: args
            .learning_rate_scale
            .unwrap_or(DpSgdConfig::default().learning_rate_scale),
        ..Default::default()
    };
    let mut recipes: Vec<(String, Recipe)> = vec![
        ("plain".into(), Recipe::Plain),
        (
            "public, clipped, no noise".into(),
            Recipe::Private(DpSgdConfig {
                noise_multiplier: Some(1e-3),
                epsilon: None,
                ..private.clone()
            }),
        ),
    ];
    if args.dp_only {
        recipes.clear();
    } else if private.public_pretraining {
        recipes.insert(1, ("plain, public start".into(), Recipe::PlainPublicStart));
        recipes.push(("public cells only".into(), Recipe::PublicOnly));
    }
    for &e in &args.epsilons {
        recipes.push((
            format!("epsilon {e}"),
            Recipe::Private(DpSgdConfig {
                epsilon: Some(e),
                ..private.clone()
            }),
        ));
    }
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
        let trainer = Trainer {
            config: base
                .clone()
                .with_weight_averaging(args.weight_averaging)
                .with_train_references(args.train_references.unwrap_or(base.train_references))
                .with_lr_schedule(if args.cosine {
                    LrSchedule::Cosine
                } else {
                    LrSchedule::Constant
                }),
            featurizer: &featurizer_cfg,
            dp_batch: args.dp_batch,
            dp_options: TrainOptions {
                epochs: args.dp_epochs,
                ..Default::default()
            },
            public: &public,
        };
        for (name, recipe) in &recipes {
            let t0 = Instant::now();
            let (model, epsilon, z, clipped) = trainer.train(recipe, &train, seed)?;
            let secs = t0.elapsed().as_secs_f64();
            let rmse = Metrics::compute(&model.predict(&test, &train)?, &truth)?.rmse;
            // the attacker holds the released model and the public cells, never the fleet's
            let attack = membership_auc(&model, &train, &test, &public)?;
            // the likelihood-ratio attack: shadow models of the same recipe, each trained on
            // as many cells of its own draw of the population
            let lira = match &attacker {
                Some(pools) if !pools.is_empty() => {
                    let mut shadows = Vec::with_capacity(pools.len());
                    for (s, pool) in (0u64..).zip(pools) {
                        // apart from every target seed below a million
                        let shadow_seed = 1_000_000 * (seed + 1) + s;
                        let mut order: Vec<usize> = (0..pool.len()).collect();
                        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(shadow_seed));
                        let cells = pool.subset(&order[..train.len().min(pool.len())])?;
                        shadows.push(trainer.train(recipe, &cells, shadow_seed)?.0);
                    }
                    Some(membership_lira_auc(
                        &model, &shadows, &train, &test, &public,
                    )?)
                }
                _ => None,
            };
            // JSON has no infinity: plain training's ε is `null`
            let json = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v}"));
            let eps = json(Some(epsilon).filter(|e| e.is_finite()));
            println!(
                "{{\"model\": \"{name}\", \"seed\": {seed}, \"epsilon\": {eps}, \"noise_multiplier\": {z:.4}, \"rmse\": {rmse:.1}, \"attack_auc\": {attack:.3}, \"lira_auc\": {}, \"clipped_fraction\": {}, \"seconds\": {secs:.0}}}",
                json(lira.map(|a| (a * 1000.0).round() / 1000.0)),
                json(clipped.map(|c| (c * 1000.0).round() / 1000.0))
            );
            rows.push(Row {
                name: name.clone(),
                epsilon,
                noise_multiplier: z,
                rmse,
                attack_auc: attack,
                lira_auc: lira,
            });
        }
    }
    println!();
    println!(
        "| training | seeds | epsilon per cell | noise multiplier | RMSE (mean ± sample sd) | loss-threshold attack AUC | likelihood-ratio attack AUC |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // one line per training, in the order of the first seed
    let mut names: Vec<&str> = Vec::new();
    for r in &rows {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let mean_sd = |values: Vec<f64>, digits: usize| {
        let (mean, sd) = cli::mean_sd(&values);
        format!("{mean:.digits$} ± {sd:.digits$}")
    };
    for name in names {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.name == name).collect();
        let eps = mine.iter().map(|r| r.epsilon).fold(0.0, f64::max);
        let z = mine.iter().map(|r| r.noise_multiplier).sum::<f64>() / mine.len() as f64;
        let lira: Option<Vec<f64>> = mine.iter().map(|r| r.lira_auc).collect();
        println!(
            "| {name} | {} | {} | {z:.2} | {} | {} | {} |",
            mine.len(),
            match eps {
                e if !e.is_finite() => "∞".into(),
                // a guarantee this weak protects nothing (the clipped row with negligible noise)
                e if e >= 1e4 => format!("not private ({e:.1e})"),
                e => format!("{e:.2}"),
            },
            mean_sd(mine.iter().map(|r| r.rmse).collect(), 1),
            mean_sd(mine.iter().map(|r| r.attack_auc).collect(), 3),
            lira.map_or("-".into(), |v| mean_sd(v, 3)),
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
    /// The likelihood-ratio attack's AUC on the same cells (with `--shadows`).
    lira_auc: Option<f64>,
}

/// How a model is trained: plainly, or with DP-SGD on public statistics and references.
enum Recipe {
    Plain,
    /// Plain training from the weights trained on the public cells.
    PlainPublicStart,
    /// The weights trained on the public cells alone: no private cell trains them.
    PublicOnly,
    Private(DpSgdConfig),
}

/// Trains the study's models: the target models and the attacker's shadow models alike.
struct Trainer<'a> {
    config: BatLiNetConfig,
    featurizer: &'a FeaturizerConfig,
    /// The DP-SGD models' expected batch (`--dp-batch`).
    dp_batch: Option<usize>,
    /// The DP-SGD models' private epochs (`--dp-epochs`).
    dp_options: TrainOptions,
    public: &'a Dataset,
}

impl Trainer<'_> {
    /// `recipe` trained on `cells` with model (and noise) seed `seed`: the model, the ε per
    /// cell it spent (infinite for plain training), its noise multiplier and the share of
    /// clipped per-cell gradients (none for plain training).
    fn train(
        &self,
        recipe: &Recipe,
        cells: &Dataset,
        seed: u64,
    ) -> Result<(BatLiNet, f64, f64, Option<f64>)> {
        let config = self.config.clone().with_seed(seed);
        match recipe {
            Recipe::Plain | Recipe::PlainPublicStart => {
                let mut model = BatLiNet::new(config, self.featurizer.clone())?;
                if matches!(recipe, Recipe::PlainPublicStart) {
                    model.start_private(self.public, &DpSgdConfig::default())?;
                }
                model.fit(cells)?;
                Ok((model, f64::INFINITY, 0.0, None))
            }
            Recipe::PublicOnly => {
                // the DP-SGD rows' start: their batch
                let config = match self.dp_batch {
                    Some(b) => config.with_batch_size(b),
                    None => config,
                };
                let mut model = BatLiNet::new(config, self.featurizer.clone())?;
                model.start_private(self.public, &DpSgdConfig::default())?;
                Ok((model, 0.0, 0.0, None))
            }
            Recipe::Private(dp) => {
                let config = match self.dp_batch {
                    Some(b) => config.with_batch_size(b),
                    None => config,
                };
                let dp = DpSgdConfig {
                    seed: Some(seed),
                    ..dp.clone()
                };
                let mut model = BatLiNet::new(config, self.featurizer.clone())?;
                model.start_private(self.public, &dp)?;
                let r = model.train_private(cells, self.public, &dp, &self.dp_options)?;
                Ok((
                    model,
                    r.epsilon,
                    r.noise_multiplier,
                    Some(r.clipped_fraction),
                ))
            }
        }
    }
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
    /// The attacker's own populations, one per shadow model (synthetic: fleets drawn from
    /// the same profiles with other data seeds; none with real cells).
    attacker: Option<Vec<Dataset>>,
}

impl Study {
    /// Five synthetic fleets pooled; public cells generated from the public seed.
    fn synthetic(args: &Args) -> Result<Study> {
        let cells: Vec<Cell> = FleetConfig::default()
            .with_fleets(5)
            .with_cells_per_fleet(args.cells_per_fleet)
            .with_seed(args.data_seed)
            .generate()?
            .into_iter()
            .flat_map(|f| f.cells)
            .collect();
        let public_cells = FleetConfig::default()
            .with_fleets(args.public_fleets)
            .with_cells_per_fleet(args.public_cells.unwrap_or(60) / args.public_fleets.max(1))
            .with_seed(PUBLIC_SEED)
            .generate_public()?;
        let featurizer_cfg = FeaturizerConfig::default().with_interp_dim(64);
        let featurizer = Featurizer::new(featurizer_cfg.clone())?;
        let base = BatLiNetConfig::default()
            .with_conv_channels(args.conv_channels)
            .with_batch_size(16)
            .with_epochs(args.epochs.unwrap_or(60))
            .with_inference_references(16)
            .with_progress(false);
        let public =
            Dataset::for_config(&public_cells, &featurizer, &base, &LabelConfig::default())?;
        // the attacker's populations: the same five profiles, other cells, one draw per shadow
        let mut attacker = Vec::with_capacity(args.shadows);
        for s in 0..args.shadows as u64 {
            let cells: Vec<Cell> = FleetConfig::default()
                .with_fleets(5)
                .with_cells_per_fleet(args.cells_per_fleet)
                .with_seed(ATTACKER_SEED + s)
                .generate()?
                .into_iter()
                .flat_map(|f| f.cells)
                .map(|mut c| {
                    c.meta.cell_id = format!("shadow{s}-{}", c.meta.cell_id);
                    c
                })
                .collect();
            attacker.push(Dataset::for_config(
                &cells,
                &featurizer,
                &base,
                &LabelConfig::default(),
            )?);
        }
        Ok(Study {
            featurizer_cfg,
            featurizer,
            base,
            cells,
            fixed: None,
            public,
            attacker: Some(attacker),
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
            attacker: None,
        })
    }
}

/// The data seed of the attacker's first synthetic population (shadow model `s` draws its
/// cells from seed `ATTACKER_SEED + s`).
const ATTACKER_SEED: u64 = 7042;

/// The MATR cell left out of every evaluation (cycle life 148; as `eval_matr`).
const OUTLIER: &str = battery_fl_core::data::MATR_OUTLIER;
