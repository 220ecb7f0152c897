//! Genome-clustered aggregation against plain FedAvg on the built-in synthetic fleets: does a
//! model per genome group (fleets grouped by chemistry mix and signature centroid) predict the
//! minority chemistries of a fleet better than one global FedAvg model?
//!
//! ```text
//! cargo run --release -p battery-fl-core --features tch --example cluster_study -- \
//!     [--rounds 10] [--epochs 3] [--seeds 2] [--fleets 6] [--cells 30] [--threshold 0.5] \
//!     [--lr 1e-3] [--batch 16]
//! ```
//!
//! For every seed `s` (data seed `42 + s`, model and federation seed `s`): the six built-in
//! fleet archetypes are generated, each fleet's cells are split per chemistry, two thirds
//! train and one third test, and three models are evaluated on the test cells:
//! - plain FedAvg (`Strategy::FedAvg`, no clustering);
//! - clustered FedAvg: each fleet trains from and is evaluated with its genome group's model
//!   (`clustering: Some(ClusterConfig { threshold })`);
//! - the global model the clustered run keeps beside the group models.
//!
//! Each fleet's test cells are predicted with references drawn from that fleet's own training
//! cells (as in the simulation's evaluation, with the same seeds, so a seed's all-cells RMSE
//! for plain FedAvg and for the group models equals that run's last-round RMSE). A test cell is a *minority* cell when its cathode
//! is not its fleet's dominant (most common) cathode. RMSEs are pooled over the seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Result};
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::federation::{
    cluster_fleets, job_seed, ClusterConfig, CoordinatorState, FederationConfig, FleetData,
    FleetSummary, Simulation, Strategy,
};
use battery_fl_core::model::{BatLiNet, BatLiNetConfig, Dataset, InputScales, ReferenceSelection};
use clap::Parser;

/// Genome-clustered aggregation against plain FedAvg on the built-in synthetic fleets: does a
/// model per genome group (fleets grouped by chemistry mix and signature centroid) predict the
/// minority chemistries of a fleet better than one global FedAvg model?
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Federation rounds per run.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Local epochs per fleet and round.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Number of seeds s = 0, 1, ... (data seed 42 + s, model and federation seed s).
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Synthetic fleets per seed.
    #[arg(long, default_value_t = 6)]
    fleets: usize,
    /// Cells per fleet.
    #[arg(long, default_value_t = 30)]
    cells: usize,
    /// Average-linkage threshold on fleet distance (chemistry-mix TV + centroid RMS, V).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Learning rate of local training.
    #[arg(long = "lr", value_name = "LR", default_value_t = 1e-3)]
    learning_rate: f64,
    /// Local training batch size (cells).
    #[arg(long, default_value_t = 16)]
    batch: usize,
}

/// A fleet's data plus what the study needs to label its test cells.
struct StudyFleet {
    data: FleetData,
    /// Most common cathode among the fleet's cells.
    dominant: String,
    /// Cathode mix as `LFP 80% / NMC 20%`, for printing.
    mix: String,
}

/// Cathode of cell `i` of `ds` (`?` when unknown).
fn cathode(ds: &Dataset, i: usize) -> String {
    ds.fingerprints()[i]
        .cathode
        .clone()
        .unwrap_or_else(|| "?".into())
}

/// Generate and featurize the fleets; per fleet and chemistry, every third cell is a test cell
/// (so each chemistry of each fleet has cells on both sides).
fn build_fleets(
    seed: u64,
    fleets: usize,
    cells: usize,
    featurizer: &Featurizer,
) -> Result<Vec<StudyFleet>> {
    let generated = FleetConfig::default()
        .with_fleets(fleets)
        .with_cells_per_fleet(cells)
        .with_seed(seed);
    generated
        .generate()?
        .into_iter()
        .map(|f| {
            let ds = Dataset::from_cells(
                &f.cells,
                featurizer,
                &[0, 1, 2, 3, 4, 5],
                &LabelConfig::default(),
            )?;
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let (mut train, mut test) = (Vec::new(), Vec::new());
            for i in 0..ds.len() {
                let k = seen.entry(cathode(&ds, i)).or_insert(0);
                if *k % 3 == 2 {
                    test.push(i);
                } else {
                    train.push(i);
                }
                *k += 1;
            }
            let mut counts: Vec<(String, usize)> = seen.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let dominant = counts.first().map(|c| c.0.clone()).unwrap_or_default();
            let mix = counts
                .iter()
                .map(|(c, n)| format!("{c} {:.0}%", 100.0 * *n as f64 / ds.len() as f64))
                .collect::<Vec<_>>()
                .join(" / ");
            let data = FleetData {
                id: format!("{} ({})", f.id, f.climate),
                train: ds.subset(&train)?,
                test: ds.subset(&test)?,
            };
            Ok(StudyFleet {
                data,
                dominant,
                mix,
            })
        })
        .collect()
}

/// One predicted test cell.
#[derive(Debug, Clone)]
struct Prediction {
    chemistry: String,
    minority: bool,
    predicted: f64,
    truth: f64,
}

/// Predict every fleet's test cells with the final weights of a run: the fleet's group model
/// when `groups` is set and the run was clustered, the global model otherwise. References are
/// the fleet's own training cells, drawn as the simulation draws them in its last round; the
/// inputs are scaled with the run's shared input scales.
fn predict(
    (state, scales): &(CoordinatorState, Option<InputScales>),
    groups: bool,
    fleets: &[StudyFleet],
    model: &BatLiNetConfig,
    featurizer: &FeaturizerConfig,
    fed: &FederationConfig,
) -> Result<Vec<Prediction>> {
    let mut net = BatLiNet::new(model.clone().with_progress(false), featurizer.clone())?;
    net.set_label_transform(state.labels);
    if let Some(s) = scales {
        net.set_input_scales(s.clone())?;
    }
    let mut out = Vec::new();
    for (f, fleet) in fleets.iter().enumerate() {
        let params = match state.fleet_group.get(f) {
            Some(&g) if groups => &state.groups[g],
            _ => &state.global,
        };
        net.set_params(params)?;
        let (train, test) = (&fleet.data.train, &fleet.data.test);
        let k = fed.inference_references.min(train.len());
        let seed = job_seed(fed.seed, state.round, f);
        let predicted = net.predict_with(test, train, k, ReferenceSelection::Random, seed)?;
        for (i, (p, t)) in predicted
            .into_iter()
            .zip(test.require_labels()?)
            .enumerate()
        {
            let chemistry = cathode(test, i);
            out.push(Prediction {
                minority: chemistry != fleet.dominant,
                chemistry,
                predicted: p,
                truth: t,
            });
        }
    }
    Ok(out)
}

/// RMSE (cycles) and count of the predictions that pass `keep`.
fn rmse(preds: &[Prediction], keep: impl Fn(&Prediction) -> bool) -> (f64, usize) {
    let sq: Vec<f64> = preds
        .iter()
        .filter(|p| keep(p))
        .map(|p| (p.predicted - p.truth).powi(2))
        .collect();
    let n = sq.len();
    let value = if n == 0 {
        f64::NAN
    } else {
        (sq.iter().sum::<f64>() / n as f64).sqrt()
    };
    (value, n)
}

/// Run one federation to the end, printing each round's RMSE; returns its final state and the
/// input scales its fleets agreed on.
fn run(
    label: &str,
    fed: FederationConfig,
    model: &BatLiNetConfig,
    featurizer: &FeaturizerConfig,
    fleets: &[StudyFleet],
) -> Result<(CoordinatorState, Option<InputScales>)> {
    let data: Vec<FleetData> = fleets.iter().map(|f| f.data.clone()).collect();
    let t0 = Instant::now();
    let mut sim = Simulation::new(fed, model.clone(), featurizer.clone(), data)?;
    let mut line = format!("  {label:<10} RMSE per round:");
    sim.run(|r| line.push_str(&format!(" {:.0}", r.global_rmse)))?;
    println!("{line} ({:.0} s)", t0.elapsed().as_secs_f64());
    let scales = sim.global_model()?.input_scales().cloned();
    Ok((sim.state().clone(), scales))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let featurizer_cfg = FeaturizerConfig::default().with_interp_dim(64);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let methods = [
        "FedAvg",
        "clustered: group models",
        "clustered: its global model",
    ];
    let mut pooled: Vec<Vec<Prediction>> = vec![Vec::new(); methods.len()];
    let mut per_seed: Vec<(u64, Vec<(f64, f64)>)> = Vec::new();
    let t_all = Instant::now();

    for s in 0..args.seeds {
        let fleets = build_fleets(42 + s, args.fleets, args.cells, &featurizer)?;
        println!("\nseed {s}: data seed {}, {} fleets", 42 + s, fleets.len());
        // the grouping the clustered run will use, with the distances behind it
        let summaries = fleets
            .iter()
            .map(|f| FleetSummary::from_fingerprints(f.data.train.fingerprints()))
            .collect::<battery_fl_core::Result<Vec<_>>>()?;
        let groups = cluster_fleets(&summaries, args.threshold);
        println!("  FleetSummary distances (chemistry-mix total variation + centroid RMS, V):");
        for (i, a) in summaries.iter().enumerate() {
            let row: Vec<String> = summaries
                .iter()
                .map(|b| format!("{:.3}", a.distance(b)))
                .collect();
            println!("    fleet{i}: {}", row.join(" "));
        }
        println!("  average-linkage threshold {} gives:", args.threshold);
        for (f, g) in fleets.iter().zip(&groups) {
            println!(
                "    {:<28} group {g}  {} train / {} test  [{}]",
                f.data.id,
                f.data.train.len(),
                f.data.test.len(),
                f.mix
            );
        }

        let model = BatLiNetConfig::default()
            .with_conv_channels(16)
            .with_batch_size(args.batch)
            .with_learning_rate(args.learning_rate)
            .with_inference_references(16)
            .with_seed(s);
        let plain = FederationConfig {
            rounds: args.rounds,
            local_epochs: args.epochs,
            strategy: Strategy::FedAvg,
            seed: s,
            inference_references: 16,
            ..Default::default()
        };
        let clustered = FederationConfig {
            clustering: Some(ClusterConfig {
                threshold: args.threshold,
            }),
            ..plain.clone()
        };
        let plain_state = run("FedAvg", plain.clone(), &model, &featurizer_cfg, &fleets)?;
        let cl_state = run(
            "clustered",
            clustered.clone(),
            &model,
            &featurizer_cfg,
            &fleets,
        )?;
        if cl_state.0.fleet_group != groups {
            bail!(
                "the simulation grouped the fleets as {:?}",
                cl_state.0.fleet_group
            );
        }
        let preds = [
            predict(
                &plain_state,
                false,
                &fleets,
                &model,
                &featurizer_cfg,
                &plain,
            )?,
            predict(
                &cl_state,
                true,
                &fleets,
                &model,
                &featurizer_cfg,
                &clustered,
            )?,
            predict(
                &cl_state,
                false,
                &fleets,
                &model,
                &featurizer_cfg,
                &clustered,
            )?,
        ];
        // the per-cell predictions must reproduce each run's own last-round evaluation
        for (state, p) in [(&plain_state, &preds[0]), (&cl_state, &preds[1])] {
            let own = state.0.history.last().map_or(f64::NAN, |r| r.global_rmse);
            let ours = rmse(p, |_| true).0;
            if (own - ours).abs() > 1e-6 * own.abs().max(1.0) {
                bail!("re-evaluation gives RMSE {ours}, the simulation reported {own}");
            }
        }
        let mut seed_rows = Vec::new();
        for (m, p) in preds.into_iter().enumerate() {
            seed_rows.push((rmse(&p, |_| true).0, rmse(&p, |q| q.minority).0));
            pooled[m].extend(p);
        }
        per_seed.push((s, seed_rows));
    }

    println!(
        "\n{} seeds x {} rounds x {} local epochs, {} fleets x {} cells, threshold {} ({:.0} s)",
        args.seeds,
        args.rounds,
        args.epochs,
        args.fleets,
        args.cells,
        args.threshold,
        t_all.elapsed().as_secs_f64()
    );
    println!("\nRMSE (cycles) on the test cells, pooled over seeds:\n");
    println!("| test cells | n | {} |", methods.join(" | "));
    println!("| --- | --- |{}", " --- |".repeat(methods.len()));
    let row = |name: &str, keep: &dyn Fn(&Prediction) -> bool| {
        let cols: Vec<(f64, usize)> = pooled.iter().map(|p| rmse(p, keep)).collect();
        if cols[0].1 > 0 {
            let vals: Vec<String> = cols.iter().map(|c| format!("{:.1}", c.0)).collect();
            println!("| {name} | {} | {} |", cols[0].1, vals.join(" | "));
        }
    };
    row("all", &|_| true);
    row("dominant chemistry of their fleet", &|p| !p.minority);
    row("minority chemistry of their fleet", &|p| p.minority);
    let chemistries: BTreeSet<String> = pooled[0].iter().map(|p| p.chemistry.clone()).collect();
    for c in &chemistries {
        row(&format!("{c}, all"), &|p| &p.chemistry == c);
        row(&format!("{c}, as minority"), &|p| {
            &p.chemistry == c && p.minority
        });
        row(&format!("{c}, as dominant"), &|p| {
            &p.chemistry == c && !p.minority
        });
    }
    println!("\nper seed (all cells / minority cells):\n");
    for (s, rows) in &per_seed {
        let cols: Vec<String> = rows
            .iter()
            .map(|(a, m)| format!("{a:.1} / {m:.1}"))
            .collect();
        println!("  seed {s}: {}", cols.join(" | "));
    }
    Ok(())
}
