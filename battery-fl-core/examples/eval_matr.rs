//! Real-data evaluation on MATR (Severson et al. 2019): the variance baseline, the linear
//! model, the gated model (by default: BatLiNet, and the hybrid where the linear model
//! extrapolates) and the single-branch CNN, trained on the `train` split and evaluated on
//! `primary_test` (without the known 148-cycle outlier) and, when given, on every cell of
//! `--test-data`. `--models batlinet` scores BatLiNet alone.
//!
//! ```text
//! cargo run --release --features tch --example eval_matr -- --data data/matr_severson_qv \
//!     [--test-data DIR2] [--seeds N] [--first-seed S] [--epochs E] [--dim D] [--validate] [--selection random|genome]
//!     [--models gated,cnn] [--members M] [--protocol split|lobo] [--cells-out FILE]
//! ```
//!
//! With `--models batlinet`, BatLiNet is scored with both reference selections from the same
//! trained model: `batlinet` with `--selection` (default random, as published) and
//! `batlinet_genome` (or `batlinet_random`) with the other one.
//!
//! `--branches` (with `--models batlinet`) also prints, per BatLiNet test cell, each branch's own prediction
//! (`{"cell": ..., "life": ..., "a": ..., "b": ...}` lines) to see which branch misses where;
//! with `--validate` it also reports on the cells trained on (split `fit`).
//!
//! `--k N` sets the inference references per target (default 32, as published; with
//! `--selection genome` training also draws from each cell's N genome-nearest cells).
//!
//! `--clean-pairs` cleans every target-minus-reference difference (edges, glitches, cycle
//! filter) before branch B, as the published code does (`BatLiNetConfig::clean_pairs`).
//!
//! `--inter raw|cycle_difference` sets what branch B differences (`BatLiNetConfig::inter_features`;
//! default `cycle_difference`, chosen by 4-fold cross-validation on `train`, see BENCHMARKS.md;
//! `raw` is the published route),
//! `--train-refs N` the references per training target (default 2), `--schedule
//! constant|cosine` the learning-rate schedule and `--averaging F` the fraction of final epochs
//! whose weights are averaged (default 0).
//!
//! Every run also scores `linear` (the linear early-life model, settings by leave-one-out on
//! the training cells); `--models hybrid` (beside `batlinet`, `cnn`) trains BatLiNet on the
//! residuals of that model (ln life minus its cross-fitted prediction) and predicts the linear
//! prediction times the network's correction. `--models gated` (the default) trains both and
//! takes the hybrid's prediction for cells the linear model extrapolates (its prediction
//! outside the training lives, or the cell out of its distribution by leverage or cathode),
//! BatLiNet's for the others (`model::GatedModel`); each half is the geometric mean of
//! `--members` networks (default 3; the gated model's seed S trains model seeds S·M to
//! S·M + M − 1, so a run's seeds are disjoint ensembles).
//!
//! `--calibration-folds N` (with `--models batlinet`) gives BatLiNet conformal intervals (`BatLiNet::cross_calibrate`:
//! N fold models on the training cells, no test cell involved) and prints their coverage and
//! mean width at 80 % and 90 % beside the naive min-max interval over the references, and
//! the plain-error quantiles of calibration and test cells (`cross_fitted_errors`). With
//! `--cv-plus` the same N fold models give CV+ intervals instead
//! (`BatLiNet::cross_conformal_intervals`: each fold's errors around its own predictions).
//!
//! `--protocol lobo` replaces the split by leave-one-batch-out: every cell (the outlier left
//! out) is grouped by its `batch_date`; for each batch a model trains on all other batches and
//! is scored on that batch (splits named `lobo <batch>`). It measures what the primary-test
//! split cannot: a shift between batches made and cycled months apart.
//!
//! `--validate` carves a validation split out of `train` (every fourth cell, starting at cell
//! `--fold K`, default 3; folds 0-3 together are a 4-fold cross-validation) and reports on it
//! instead of the test splits: settings are chosen there, never on a test split.
//!
//! `--cells-out FILE` appends every test cell's prediction by every model (JSON lines with the
//! training lives' range), to study per cell which model misses where.
//!
//! MATR files hold only discharge Q(V) curves for cycles 2..100 (no current, no charge
//! branch), so the network sees the one honest BatLiNet channel: V(Qd), channel 1.

#[path = "cli/mod.rs"]
mod cli;
#[path = "eval/mod.rs"]
mod eval;

use std::time::Instant;

use anyhow::{bail, Result};
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    select_linear, BatLiNet, BatLiNetConfig, Dataset, GatedModel, HybridModel, LinearConfig,
    Metrics, ReferenceSelection, VarianceModel,
};
use eval::args::{parse, Args, Protocol};
use eval::{load, report_cv_plus, report_intervals, summarize, CellLog, Row};

/// Primary-test cell that Severson et al. and Attia et al. leave out (cycle life 148).
const OUTLIER: &str = battery_fl_core::data::MATR_OUTLIER;

fn main() -> Result<()> {
    let args = parse();
    let cells = load(&args.data)?;
    if args.protocol == Protocol::Lobo {
        let mut batches: Vec<&String> = cells.iter().map(|c| &c.2).collect();
        batches.sort();
        batches.dedup();
        if batches.len() < 2 {
            bail!("--protocol lobo needs cells of at least two batches, got {batches:?}");
        }
        let kept = |c: &Cell| c.id() != OUTLIER;
        let mut rows = Vec::new();
        for batch in batches {
            let pick = |inside: bool| -> Vec<Cell> {
                cells
                    .iter()
                    .filter(|(c, _, b)| kept(c) && (b == batch) == inside)
                    .map(|(c, _, _)| c.clone())
                    .collect()
            };
            let test = pick(true);
            eprintln!(
                "lobo {batch}: {} test cells (the outlier left out)",
                test.len()
            );
            rows.extend(evaluate(
                &args,
                pick(false),
                vec![(format!("lobo {batch}"), test)],
            )?);
        }
        return summarize(&rows);
    }
    let mut train: Vec<Cell> = cells
        .iter()
        .filter(|(_, s, _)| s == "train")
        .map(|(c, _, _)| c.clone())
        .collect();
    let mut splits: Vec<(String, Vec<Cell>)> = Vec::new();
    if args.validate {
        let (fit, val): (Vec<_>, Vec<_>) = train
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 4 != args.fold);
        train = fit.into_iter().map(|(_, c)| c).collect();
        if args.branches {
            splits.push(("fit".into(), train.clone()));
        }
        splits.push((
            "validation".into(),
            val.into_iter().map(|(_, c)| c).collect(),
        ));
    } else {
        let primary: Vec<Cell> = cells
            .iter()
            .filter(|(c, s, _)| s == "primary_test" && c.id() != OUTLIER)
            .map(|(c, _, _)| c.clone())
            .collect();
        eprintln!(
            "primary_test: {} cells (left out the known outlier {OUTLIER}, cycle life 148)",
            primary.len()
        );
        splits.push(("primary_test".into(), primary));
        if let Some(dir) = &args.test_data {
            for (cell, split, _) in load(dir)? {
                let name = if split == "train" || split == "primary_test" {
                    "test_data".to_string()
                } else {
                    split
                };
                match splits.iter_mut().find(|(s, _)| *s == name) {
                    Some((_, v)) => v.push(cell),
                    None => splits.push((name, vec![cell])),
                }
            }
        }
    }
    let rows = evaluate(&args, train, splits)?;
    summarize(&rows)
}

/// Train the variance model once and BatLiNet / the CNN once per seed on `train`; score each
/// on every split.
fn evaluate(args: &Args, train: Vec<Cell>, splits: Vec<(String, Vec<Cell>)>) -> Result<Vec<Row>> {
    eprintln!(
        "train: {} cells; settings: dim {}, epochs {}, lr {}, batch {}",
        train.len(),
        args.dim,
        args.epochs,
        args.lr,
        args.batch
    );

    let label = LabelConfig::default();
    let featurizer_cfg = FeaturizerConfig::default()
        .with_first_cycle(2)
        .with_cycles(99)
        .with_interp_dim(args.dim);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let base = BatLiNetConfig::default()
        .with_input_channels(vec![1])
        .with_epochs(args.epochs)
        .with_conv_channels(args.conv)
        .with_learning_rate(args.lr)
        .with_batch_size(args.batch)
        .with_selection(args.selection)
        .with_clean_pairs(args.clean_pairs)
        .with_inference_references(args.k)
        .with_train_references(args.train_refs)
        .with_inter_features(args.inter)
        .with_lr_schedule(args.schedule)
        .with_weight_averaging(args.averaging);
    let build = |cells: &[Cell]| Dataset::for_config(cells, &featurizer, &base, &label);
    let train_ds = build(&train)?;
    let test_ds: Vec<(String, Vec<Cell>, Dataset)> = splits
        .into_iter()
        .map(|(name, cells)| {
            let ds = build(&cells)?;
            Ok((name, cells, ds))
        })
        .collect::<Result<_>>()?;

    let train_lives = train_ds.require_labels()?;
    let mut cells_out = CellLog::open(args.cells_out.as_deref(), &train_lives)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut report = |model: &str, split: &str, seed: u64, m: Metrics| {
        println!(
            "{{\"model\": \"{model}\", \"split\": \"{split}\", \"seed\": {seed}, \"rmse\": {:.2}, \"mae\": {:.2}, \"mape\": {:.2}}}",
            m.rmse, m.mae, m.mape
        );
        rows.push((model.into(), split.into(), seed, m));
    };

    // the linear early-life model (features and lambda by leave-one-out on `train`)
    let linear_config = LinearConfig::default();
    let train_rows = linear_config.rows(&train, &label)?;
    let (linear, _) = select_linear(&train_rows, &linear_config)?;
    let mut linear_pred = Vec::new();
    // intervals calibrated by leave-one-out, and by leave-one-batch-out when the training
    // cells come from several batches (the batch date is the second part of a MATR cell id)
    let batches: Vec<&str> = train
        .iter()
        .map(|c| c.id().split('_').nth(1).unwrap_or(""))
        .collect();
    let mut names = batches.clone();
    names.sort_unstable();
    names.dedup();
    let groups: Vec<usize> = batches
        .iter()
        .map(|b| names.iter().position(|n| n == b).unwrap_or(0))
        .collect();
    let mut calibrations = vec![("loo", linear.calibrate(&train_rows, true)?)];
    if names.len() > 1 {
        calibrations.push(("batch", linear.calibrate_by_group(&train_rows, &groups)?));
    }
    for (name, cells, ds) in &test_ds {
        let p = linear.predict(cells)?;
        let rows = linear_config.rows(cells, &label)?;
        // the linear model's out-of-distribution flags (leave-one-out calibration: half of
        // GatedModel's rule) and intervals
        cells_out.write_linear(name, ds, &p, (&linear, &rows, &calibrations[0].1))?;
        report(
            "linear",
            name,
            0,
            Metrics::compute(&p, &ds.require_labels()?)?,
        );
        // conformal intervals calibrated by leave-one-out on the training cells
        let truth = ds.require_labels()?;
        for ((how, calibration), coverage) in calibrations.iter().flat_map(|c| [(c, 0.8), (c, 0.9)])
        {
            let iv = linear.intervals(&rows, calibration, coverage)?;
            let inside = iv
                .iter()
                .zip(&truth)
                .filter(|(i, t)| (i.lower..=i.upper).contains(*t))
                .count();
            let width = iv.iter().map(|i| i.upper - i.lower).sum::<f64>() / iv.len().max(1) as f64;
            let flagged = iv.iter().filter(|i| i.out_of_distribution).count();
            println!(
                "{{\"model\": \"linear\", \"split\": \"{name}\", \"calibration\": \"{how}\", \"coverage\": {coverage}, \"covered\": {:.3}, \"mean_width\": {width:.1}, \"out_of_distribution\": {flagged}, \"cells\": {}}}",
                inside as f64 / truth.len().max(1) as f64,
                truth.len()
            );
        }
        linear_pred.push(p);
    }
    eprintln!(
        "linear: {} features, lambda {}",
        linear.feature_set.name(),
        linear.lambda
    );

    let variance = VarianceModel::fit(&train, &Default::default(), &label)?;
    let mut variance_pred = Vec::new();
    for (name, cells, ds) in &test_ds {
        let p = variance.predict(cells)?;
        cells_out.write("variance", name, 0, ds, &p)?;
        report(
            "variance",
            name,
            0,
            Metrics::compute(&p, &ds.require_labels()?)?,
        );
        variance_pred.push(p);
    }
    for seed in args.first_seed..args.first_seed + args.seeds {
        for single in [false, true] {
            if !args
                .models
                .iter()
                .any(|m| m == if single { "cnn" } else { "batlinet" })
            {
                continue;
            }
            let config = base.clone().with_single_branch(single).with_seed(seed);
            let t0 = Instant::now();
            let mut model = BatLiNet::new(config, featurizer_cfg.clone())?;
            model.fit(&train_ds)?;
            let name = if single { "cnn" } else { "batlinet" };
            eprintln!(
                "{name} seed {seed}: trained in {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            let calibration = (!single && args.calibration_folds > 0 && !args.cv_plus)
                .then(|| model.cross_calibrate(&train_ds, args.calibration_folds))
                .transpose()?;
            if !single && args.calibration_folds > 0 && args.cv_plus {
                for (split, _, ds) in &test_ds {
                    report_cv_plus(&model, ds, &train_ds, args.calibration_folds, split, seed)?;
                }
            }
            for (t, (split, _, ds)) in test_ds.iter().enumerate() {
                let pred = model.predict(ds, &train_ds)?;
                if let Some(calibration) = &calibration {
                    report_intervals(&model, ds, &train_ds, calibration, split, seed)?;
                }
                if !single {
                    // the same trained model with the other reference selection
                    let (other, label) = match args.selection {
                        ReferenceSelection::Random => {
                            (ReferenceSelection::Genome, "batlinet_genome")
                        }
                        ReferenceSelection::Genome => {
                            (ReferenceSelection::Random, "batlinet_random")
                        }
                    };
                    let cfg = model.config();
                    let p =
                        model.predict_with(ds, &train_ds, cfg.inference_references, other, seed)?;
                    report(
                        label,
                        split,
                        seed,
                        Metrics::compute(&p, &ds.require_labels()?)?,
                    );
                }
                if args.branches && !single {
                    let cfg = model.config();
                    let br = model.predict_branches(
                        ds,
                        &train_ds,
                        cfg.inference_references,
                        cfg.selection,
                        cfg.seed,
                    )?;
                    let b = br.b.unwrap_or_default();
                    for (i, life) in ds.require_labels()?.iter().enumerate() {
                        println!(
                            "{{\"split\": \"{split}\", \"seed\": {seed}, \"cell\": \"{}\", \"life\": {life:.0}, \"a\": {:.1}, \"b\": {:.1}, \"pred\": {:.1}}}",
                            ds.cell_ids()[i], br.a[i], b[i], pred[i]
                        );
                    }
                }
                // a post-hoc hybrid: the log-space mean with the variance model
                let base = &variance_pred[t];
                let both: Vec<f64> = pred.iter().zip(base).map(|(a, b)| (a * b).sqrt()).collect();
                report(
                    &format!("{name}+variance"),
                    split,
                    seed,
                    Metrics::compute(&both, &ds.require_labels()?)?,
                );
                cells_out.write(name, split, seed, ds, &pred)?;
                report(
                    name,
                    split,
                    seed,
                    Metrics::compute(&pred, &ds.require_labels()?)?,
                );
            }
        }
    }

    if args.models.iter().any(|m| m == "hybrid") {
        for seed in args.first_seed..args.first_seed + args.seeds {
            let config = base.clone().with_seed(seed);
            let t0 = Instant::now();
            // BatLiNet on the linear model's leave-one-out residuals (model::HybridModel)
            let model = HybridModel::fit(
                &train,
                &train_ds,
                config,
                featurizer_cfg.clone(),
                &linear_config,
                &label,
            )?;
            eprintln!(
                "hybrid seed {seed}: trained in {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            for (split, cells, ds) in &test_ds {
                let pred = model.predict(cells, ds)?;
                cells_out.write("hybrid", split, seed, ds, &pred)?;
                report(
                    "hybrid",
                    split,
                    seed,
                    Metrics::compute(&pred, &ds.require_labels()?)?,
                );
            }
        }
    }

    if args.models.iter().any(|m| m == "gated") {
        for seed in args.first_seed..args.first_seed + args.seeds {
            let t0 = Instant::now();
            // BatLiNet, and the hybrid where the linear model extrapolates (model::GatedModel)
            let model = GatedModel::fit(
                &train,
                &train_ds,
                base.clone().with_seed(seed * args.members as u64),
                featurizer_cfg.clone(),
                &linear_config,
                &label,
                args.members,
            )?;
            eprintln!(
                "gated seed {seed} (model seeds {}-{}): trained in {:.0} s",
                seed * args.members as u64,
                (seed + 1) * args.members as u64 - 1,
                t0.elapsed().as_secs_f64()
            );
            for (split, cells, ds) in &test_ds {
                let p = model.predict(cells, ds)?;
                let pred: Vec<f64> = p.iter().map(|g| g.life).collect();
                let sent = p.iter().filter(|g| g.extrapolated).count();
                eprintln!("gated seed {seed}, {split}: {sent} of {} cells extrapolated, predicted by the hybrid", p.len());
                cells_out.write("gated", split, seed, ds, &pred)?;
                report(
                    "gated",
                    split,
                    seed,
                    Metrics::compute(&pred, &ds.require_labels()?)?,
                );
            }
        }
    }
    Ok(rows)
}
