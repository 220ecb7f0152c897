//! The main job: a federated multi-fleet run, compared with local-only and centralized
//! training, each fleet ending with a model of its own.
//!
//! ```text
//! cargo run --release --features tch --example federated -- \
//!     [--data DIR --fleets-by protocol|fleet|batch --fleets N] [--model linear|batlinet] [--out DIR] [--no-secagg]
//!     [--rounds R] [--no-dp] [--threads N] [--personalization none|fine_tune|head|ditto|auto|auto_head]
//!     [--calibration-holdout]
//!     [--label-scope shared|fleet] [--label-grouping pooled|cathode] [--selection random|genome] [--seed S]
//!     [--privacy none|cell] [--target-epsilon E] [--noise-seed S] [--no-public-pretraining]
//!     [--choice-margin K] [--cells-per-fleet N] [--data-seed S]
//! ```
//!
//! `--model linear` (default; seconds): the linear early-life model, fitted exactly from
//! statistics summed with secure aggregation, settings by leave-one-fleet-out, each fleet
//! keeping the global model unless its local or personalized fit validates below it on its own
//! cells by a paired t-test at `--choice-margin` (`federation::federate_linear`; under
//! `--privacy cell` the default is its local model), with 90 % conformal intervals and out-of-distribution
//! flags. `--privacy cell --target-epsilon E` (`--epsilon E` for short) makes what each fleet
//! sends record-level differentially private, ε = E per cell (δ = 1e-5; `dp::RecordPrivacy`,
//! distributed noise under secure aggregation, local without), and `epsilon` in the JSON line
//! reports it; with `--model batlinet` every fleet trains with per-cell DP-SGD on public cells
//! (`epsilon` there is the fleet-level DP's, the per-cell one is in `privacy`). The noise is
//! keyed from the OS unless `--noise-seed S` pins it. `--model batlinet`: BatLiNet over federated rounds with FedProx, secure aggregation
//! and differential privacy (the linear rows are printed first); the remaining flags apply to
//! it. `--seed S` (default 0) seeds the model (S) and the federation (7 + S): sampling, local
//! training, masks and noise.
//!
//! With BatLiNet every fleet ends with its own model (`--personalization`, default `auto`:
//! each fleet picks its own, the global, the fine-tuned or its Ditto model on a quarter of its
//! own training cells; `auto_head`: the encoders federated with every head at home, each fleet
//! picking its own model or its own-head one). The last line is one JSON object: `model`,
//! `local_rmse`, `federated_rmse`, `personalized_rmse`, `centralized_rmse`, `best_local_rmse`, `epsilon`
//! and `per_fleet` (with the linear model also `minority_rmse` and `settings`: the choice
//! margin, the data seed (`null` with `--data`), `--fleets-by` and `--fleets`, and whether
//! sums were secure; with the linear model and
//! BatLiNet's `auto` and `auto_head` (or any mode with `--calibration-holdout`), `coverage_90`
//! and `width_90` of 90 % intervals, overall and per fleet, and per fleet
//! `out_of_distribution`, its flagged test cells: BatLiNet's calibrated on the cells each
//! fleet holds out, `intervals.svg`).
//!
//! Default: the built-in synthetic fleets (5 non-IID fleets). With `--data` (a folder of cells
//! with an `index.json`, e.g. MATR), fleets and their test cells come from the index
//! (`data::index_fleets`: charging protocols, a `fleet` key or batches; each entry's `split`),
//! every cell cleaned (`CleanConfig::default()`, MATR's 148-cycle outlier left out), read with
//! MATR's BatLiNet recipe (V(Qd), cycles 2-100); MATR's protocol fleets print its absolute
//! targets, other data the relative ones.

#[path = "linear/mod.rs"]
mod linear;
#[path = "plot/mod.rs"]
mod plot;
#[path = "plot/svg.rs"]
mod svg_plot;

#[path = "cli/mod.rs"]
mod cli;

#[path = "fleets/mod.rs"]
mod fleets;
#[path = "job/mod.rs"]
mod job;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{Context, Result};
use battery_fl_core::data::{FleetGrouping, DEFAULT_PROTOCOL_GROUPS};
use battery_fl_core::dp::{DpConfig, DpMode, RecordPrivacy};
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{
    centralized_baseline, local_only_baseline, FederationConfig, FleetData, SecureAggregation,
    Simulation,
};
use battery_fl_core::model::{DpSgdConfig, LinearConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use job::args::{Args, Recipe};
use linear::FleetCells;

fn main() -> Result<()> {
    let matches = <Args as clap::CommandFactory>::command().get_matches();
    let mut args = <Args as clap::FromArgMatches>::from_arg_matches(&matches)?;
    args.privacy_given =
        matches.value_source("privacy") == Some(clap::parser::ValueSource::CommandLine);
    let cell_epsilon = args.cell_epsilon()?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    std::fs::create_dir_all(&args.out)?;
    let real = args.data.is_some();
    let (featurizer_cfg, model) = fleets::batlinet_recipe(real);
    let model = model
        .with_label_grouping(args.label_grouping)
        .with_selection(args.selection)
        .with_seed(args.seed);
    // federated: as many epochs as the central recipe (MATR: 30 rounds x 20 local epochs)
    let (rounds, local_epochs) = if real { (30, 20) } else { (15, 4) };
    let rounds = args.rounds.filter(|&r| r > 0).unwrap_or(rounds);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let t0 = Instant::now();
    let (fleets, fleet_cells): (Vec<FleetData>, Vec<FleetCells>) = match &args.data {
        Some(dir) => fleets::real_fleets(dir, args.fleets_by, args.fleets, &featurizer, &model)
            .with_context(|| {
                // (protocols are MATR's stand-in for fleets: name real ones with a key)
                let hint = match args.fleets_by {
                    FleetGrouping::Protocol => {
                        " (an index with a `fleet` key per cell: --fleets-by fleet)"
                    }
                    _ => "",
                };
                format!(
                    "fleets of {} grouped by {}{hint}",
                    dir.display(),
                    args.fleets_by.name()
                )
            })?,
        None => {
            fleets::synthetic_fleets(&featurizer, &model, args.cells_per_fleet, args.data_seed)?
        }
    }
    .into_iter()
    .unzip();
    println!(
        "{} fleets prepared in {:.1} s (data stays in each fleet):",
        fleets.len(),
        t0.elapsed().as_secs_f64()
    );
    for f in &fleets {
        println!(
            "  {:<24} {:>3} train / {:>3} test cells",
            f.id,
            f.train.len(),
            f.test.len()
        );
    }

    println!();
    println!(
        "linear recipe (early-life features; statistics summed with SecAgg {}):",
        if args.secagg { "on" } else { "off" }
    );
    let secure = args.secagg.then(SecureAggregation::default);
    // record-level DP (per cell) of what each fleet sends, if asked for; the noise is keyed
    // from the OS unless --noise-seed makes the run reproducible
    let privacy = cell_epsilon.map(|e| {
        RecordPrivacy {
            seed: args.noise_seed,
            ..RecordPrivacy::with_epsilon(e)
        }
        .for_aggregation(args.secagg)
    });
    let lin = linear::run(
        &LinearConfig {
            privacy,
            choice_margin: args.choice_margin,
            ..LinearConfig::default()
        },
        &fleet_cells,
        secure.as_ref(),
        7 + args.seed,
    )?;
    if args.recipe == Recipe::Linear {
        // what reproduces the run beside the flags' defaults
        let settings = serde_json::json!({
            "choice_margin": args.choice_margin,
            "data_seed": (!real).then_some(args.data_seed),
            "fleets_by": real.then_some(args.fleets_by),
            "fleets": (real && args.fleets_by == FleetGrouping::Protocol)
                .then(|| args.fleets.unwrap_or(DEFAULT_PROTOCOL_GROUPS)),
            "secure_aggregation": args.secagg,
        });
        // MATR's absolute targets for its protocol fleets, the relative ones otherwise
        let matr = real
            && args.fleets_by == FleetGrouping::Protocol
            && fleet_cells
                .iter()
                .flat_map(|f| f.train.iter().chain(&f.test))
                .all(|c| c.id().starts_with("MATR_"));
        return job::finish_linear(&args.out, matr, &lin, args.noise_seed, settings);
    }
    // BatLiNet reads the featurized datasets only: the raw cycling records go
    drop(fleet_cells);
    println!();

    // With five fleets and ~40k weights, noise that buys a small epsilon (z >= 1) is larger
    // than any update: the mean carries z*C/m per coordinate, z*C/m*sqrt(d) in norm. The demo
    // runs the DP machinery at a low noise multiplier and prints the (large) epsilon it really
    // spends; meaningful fleet-level DP needs hundreds of clients.
    let dp = args.dp.then(|| DpConfig {
        // reproducible with --noise-seed; keyed from the OS otherwise
        seed: args.noise_seed,
        ..DpConfig::new(0.02, 1.0)
            .with_mode(DpMode::Distributed)
            .with_target_delta(1e-5)
    });
    // record-level DP-SGD: statistics and branch B's training references from public cells
    let record_privacy = cell_epsilon.map(|e| DpSgdConfig {
        epsilon: Some(e),
        seed: args.noise_seed,
        public_pretraining: !args.no_public_pretraining,
        learning_rate_scale: args
            .learning_rate_scale
            .unwrap_or(DpSgdConfig::default().learning_rate_scale),
        ..Default::default()
    });
    let public = match (&record_privacy, real) {
        (None, _) => None,
        (Some(_), false) => Some(fleets::public_cells(&featurizer, &model, args.public_fleets, args.public_cells)?),
        (Some(_), true) => anyhow::bail!(
            "--privacy cell with --model batlinet needs public cells of the --data kind; only the synthetic fleets ship them"
        ),
    };
    let sim_record_privacy = record_privacy.clone();
    let config = FederationConfig {
        rounds,
        local_epochs,
        record_privacy,
        secure_aggregation: args.secagg.then(SecureAggregation::default),
        dp: dp.clone(),
        seed: 7 + args.seed,
        personalization: args.personalization,
        calibration_holdout: args.calibration_holdout,
        choice_margin: args.choice_margin,
        label_scope: args.label_scope,
        inference_references: model.inference_references,
        ..Default::default()
    };
    let holds_out = config.holds_out_validation_cells();
    match &dp {
        Some(d) => println!(
            "privacy: SecAgg {}, DP {:?} mode, noise multiplier {}, clipping norm {}, delta {}, sampling 1.0 (all fleets every round)",
            if args.secagg { "on (complete graph, 32-bit masks)" } else { "off" },
            d.mode,
            d.noise_multiplier,
            d.clipping_norm,
            d.target_delta
        ),
        None => println!("privacy: SecAgg {}, DP off", if args.secagg { "on" } else { "off" }),
    }
    let mut sim = match public {
        Some(public) => Simulation::with_public_cells(
            config,
            model.clone(),
            featurizer_cfg.clone(),
            fleets.clone(),
            public,
        )?,
        None => Simulation::new(
            config,
            model.clone(),
            featurizer_cfg.clone(),
            fleets.clone(),
        )?,
    }
    .with_checkpoint(args.out.join("coordinator.json"));
    if sim_record_privacy.is_some() {
        let rmse = job::start_rmse(
            &mut sim,
            &fleets,
            model.inference_references,
            model.selection,
        )?;
        println!("the start alone (public cells only, before any round): RMSE {rmse:.1}");
    }
    let bar = ProgressBar::new(rounds as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(ProgressStyle::with_template(
            "{bar:30} round {pos}/{len} [{elapsed}<{eta}]",
        )?);
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let t0 = Instant::now();
    sim.run(|r| {
        let fleets: Vec<String> = r
            .fleet_rmse
            .iter()
            .map(|(k, v)| format!("{}={v:.0}", k.split(' ').next().unwrap_or(k)))
            .collect();
        let mut eps = r.epsilon.map_or(String::from("-"), |e| format!("{e:.2}"));
        if let Some(max) = r.fleet_epsilon.values().copied().reduce(f64::max) {
            eps.push_str(&format!(", per cell {max:.2}"));
        }
        let line = format!(
            "round {:>2}: global RMSE {:>6.1}, personalized {:>6.1} | {} | epsilon {eps}",
            r.round,
            r.global_rmse,
            r.personalized_rmse,
            fleets.join(" ")
        );
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!("federated training: {:.0} s", t0.elapsed().as_secs_f64());

    let history = sim.state().history.clone();
    let last = history.last().cloned().context("no round ran")?;
    let federated = last.global_rmse;
    let personalized = last.personalized_rmse;
    let epsilon = history.last().and_then(|r| r.epsilon);
    let central_model = model.clone().with_epochs(model.epochs);
    let (central, _) = centralized_baseline(&fleets, &central_model, &featurizer_cfg)?;
    let local = local_only_baseline(&fleets, &model, &featurizer_cfg)?;
    let best_local = local.best_on_all_tests();
    println!();
    println!("| training | RMSE (cycles, all test cells) |");
    println!("| --- | --- |");
    for (fleet, rmse) in &local.on_all_tests {
        println!(
            "| local only: {fleet}'s model (own cells {:.1}) | {rmse:.1} |",
            local.on_own_test[fleet]
        );
    }
    println!(
        "| local only: each cell by its own fleet's model | {:.1} |",
        local.own_fleets_rmse
    );
    println!(
        "| federated (FedProx{}{}) | {federated:.1} |",
        if args.secagg { " + SecAgg" } else { "" },
        if args.dp { " + DP" } else { "" }
    );
    println!(
        "| federated, personalized ({}) | {personalized:.1} |",
        args.personalization.name()
    );
    println!("| centralized (pooled data) | {central:.1} |");
    println!();
    println!("| fleet (own test cells) | local only | federated | personalized | choice |");
    println!("| --- | --- | --- | --- | --- |");
    let mut per_fleet = BTreeMap::new();
    for (fleet, own) in &local.on_own_test {
        let fed = last.fleet_rmse.get(fleet).copied().unwrap_or(f64::NAN);
        let pers = last
            .fleet_personalized_rmse
            .get(fleet)
            .copied()
            .unwrap_or(fed);
        let choice = last.choices.get(fleet).map_or("-", String::as_str);
        println!("| {fleet} | {own:.1} | {fed:.1} | {pers:.1} | {choice} |");
        per_fleet.insert(
            fleet.clone(),
            serde_json::json!({"local": own, "federated": fed, "personalized": pers}),
        );
    }

    // 90 % intervals: each fleet calibrates its own model on the cells it held out (`auto`,
    // `auto_head` or `--calibration-holdout`; not under record-level DP-SGD: its guarantee does
    // not cover the summed errors)
    let intervals = match &sim_record_privacy {
        None if holds_out => job::batlinet_intervals(&mut sim, &fleets, &mut per_fleet, &args.out)?,
        _ => None,
    };

    // plots and the trained model
    let mut per_round: Vec<Vec<(f64, f64)>> = vec![history
        .iter()
        .map(|r| (r.round as f64, r.global_rmse))
        .collect()];
    let names: Vec<String> = history
        .first()
        .map(|r| r.fleet_rmse.keys().cloned().collect())
        .unwrap_or_default();
    for name in &names {
        per_round.push(
            history
                .iter()
                .map(|r| (r.round as f64, r.fleet_rmse[name]))
                .collect(),
        );
    }
    plot::plot(
        &args.out.join("rmse_per_round.png"),
        &per_round,
        true,
        false,
    )?;
    let fleet_lines: Vec<svg_plot::FleetLine> = names
        .iter()
        .zip(&per_round[1..])
        .map(|(name, series)| svg_plot::FleetLine {
            name: name.clone(),
            rmse: series.clone(),
            local: local.on_own_test.get(name).copied(),
        })
        .collect();
    svg_plot::rmse_per_round(
        &args.out.join("rmse_per_round.svg"),
        "RMSE per round: each fleet's test cells, its local-only level dashed",
        &per_round[0],
        &fleet_lines,
    )?;
    let global = sim.global_model()?;
    let mut scatter = Vec::new();
    for (i, f) in fleets.iter().enumerate() {
        let k = 16.min(f.train.len());
        let pred = global.predict_with(&f.test, &f.train, k, model.selection, i as u64)?;
        scatter.push(
            f.test
                .require_labels()?
                .into_iter()
                .zip(pred)
                .collect::<Vec<_>>(),
        );
    }
    plot::plot(
        &args.out.join("predicted_vs_true.png"),
        &scatter,
        false,
        true,
    )?;
    global.save(args.out.join("model"))?;
    println!("wrote {0}/rmse_per_round.svg (global and per fleet, each fleet's local-only level dashed; .png plain), {0}/predicted_vs_true.png (one colour per fleet), {0}/model/", args.out.display());
    let worst_ratio = per_fleet
        .values()
        .map(|v| {
            v["personalized"].as_f64().unwrap_or(f64::NAN) / v["local"].as_f64().unwrap_or(f64::NAN)
        })
        .fold(0.0f64, f64::max);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    if real {
        println!(
            "targets: personalized or global federated <= 85 RMSE: {}; at least 20% better than the best fleet alone: {}; every fleet at least as good as alone: {}",
            met(personalized.min(federated) <= 85.0),
            met(personalized.min(federated) <= 0.8 * best_local),
            met(worst_ratio <= 1.0),
        );
    } else {
        println!(
            "targets: personalized <= 0.85 x local-only: {} ({:.2}); no fleet above 1.05 x its local-only RMSE: {} (worst {:.2})",
            met(personalized <= 0.85 * local.own_fleets_rmse),
            personalized / local.own_fleets_rmse,
            met(worst_ratio <= 1.05),
            worst_ratio,
        );
    }
    let summary = serde_json::json!({
        "local_rmse": local.own_fleets_rmse,
        "federated_rmse": federated,
        "personalized_rmse": personalized,
        "centralized_rmse": central,
        "best_local_rmse": best_local,
        "epsilon": epsilon,
        "model": "batlinet",
        "personalization": args.personalization.name(),
        "calibration_holdout": args.calibration_holdout,
        "per_fleet": per_fleet,
    });
    let mut summary = summary;
    if let Some((coverage, width)) = intervals {
        summary["coverage_90"] = serde_json::json!(coverage);
        summary["width_90"] = serde_json::json!(width);
    }
    if let Some(dp) = &sim_record_privacy {
        let mechanisms = sim.record_mechanisms();
        let per_fleet: BTreeMap<String, job::Mechanism> = fleets
            .iter()
            .zip(&sim.state().fleets)
            .filter_map(|(f, state)| {
                let &(noise_multiplier, sample_rate) = mechanisms.get(&f.id)?;
                let mechanism = job::Mechanism {
                    noise_multiplier,
                    sample_rate,
                    steps: state.private_spent.as_ref().map_or(0, |a| a.steps()),
                    epsilon: *last.fleet_epsilon.get(&f.id)?,
                };
                Some((f.id.clone(), mechanism))
            })
            .collect();
        summary["privacy"] = job::privacy_block(dp.delta, &per_fleet, args.noise_seed);
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
