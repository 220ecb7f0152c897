//! BatLiNet's conformal intervals and out-of-distribution flags on synthetic multi-chemistry
//! fleets (`BatLiNet::calibrate`, `BatLiNet::predict_intervals`).
//!
//! - **In distribution**: every cell of the fleets pooled and split at random (seeded) into
//!   training (50 %), calibration (20 %) and test (30 %) cells. The model trains on the first,
//!   is calibrated on the second (split conformal) and predicts the third with 80 % and 90 %
//!   intervals, with one pooled conformal quantile and with the default, one per chemistry
//!   where the chemistry has at least `MONDRIAN_MIN_CELLS` calibration cells (Mondrian):
//!   coverage overall and per cathode chemistry, mean width, the naive interval
//!   (min-max over the per-reference predictions) for comparison, and the share of test cells
//!   flagged out of distribution.
//! - **Leave one chemistry out**: the cells of the other chemistries split 70/30 into training
//!   and calibration; every cell of the held-out chemistry is a test cell, and each should be
//!   flagged.
//!
//! The main job's BatLiNet settings (16 channels, batch 16, 60 epochs, 16 references,
//! six channels, 64 grid points). JSON lines per seed, then a table.
//!
//! ```text
//! cargo run --release -p battery-fl-core --features tch --example interval_study -- \
//!     [--cells-per-fleet N] [--seeds N] [--first-seed S] [--data-seed S] [--threads T] [--skip-loco]
//! ```

use std::collections::BTreeMap;

use anyhow::Result;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{BatLiNet, BatLiNetConfig, Dataset, IntervalCalibration, Prediction};
use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// BatLiNet's conformal intervals and out-of-distribution flags on synthetic
/// multi-chemistry fleets.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Cells per fleet (five fleets).
    #[arg(long, value_name = "N", default_value_t = 60)]
    cells_per_fleet: usize,
    /// Seeds (model and split), from `--first-seed`.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    first_seed: u64,
    /// Data seed of the synthetic fleets.
    #[arg(long, value_name = "S", default_value_t = 42)]
    data_seed: u64,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "T")]
    threads: Option<i32>,
    /// Skip the leave-one-chemistry-out runs (one training per chemistry and seed).
    #[arg(long)]
    skip_loco: bool,
}

/// Coverage, mean width and naive coverage/width of `p` against `truth`.
fn score(p: &[Prediction], truth: &[f64]) -> (f64, f64, f64, f64) {
    let n = truth.len().max(1) as f64;
    let inside = |lo: fn(&Prediction) -> f64, hi: fn(&Prediction) -> f64| {
        p.iter()
            .zip(truth)
            .filter(|(p, y)| (lo(p)..=hi(p)).contains(*y))
            .count() as f64
            / n
    };
    let width = |lo: fn(&Prediction) -> f64, hi: fn(&Prediction) -> f64| {
        p.iter().map(|p| hi(p) - lo(p)).sum::<f64>() / n
    };
    (
        inside(|p| p.lower, |p| p.upper),
        width(|p| p.lower, |p| p.upper),
        inside(|p| p.reference_low, |p| p.reference_high),
        width(|p| p.reference_low, |p| p.reference_high),
    )
}

fn split(cells: &[Cell], seed: u64, shares: &[f64]) -> Vec<Vec<Cell>> {
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut out = Vec::new();
    let mut at = 0;
    for (i, share) in shares.iter().enumerate() {
        let end = if i + 1 == shares.len() {
            cells.len()
        } else {
            at + (share * cells.len() as f64).round() as usize
        };
        out.push(order[at..end].iter().map(|&k| cells[k].clone()).collect());
        at = end;
    }
    out
}

fn cathode(cell: &Cell) -> String {
    cell.meta
        .cathode
        .clone()
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let cells: Vec<Cell> = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(args.cells_per_fleet)
        .with_seed(args.data_seed)
        .generate()?
        .into_iter()
        .flat_map(|f| f.cells)
        .collect();
    let featurizer_cfg = FeaturizerConfig::default().with_interp_dim(64);
    let featurizer = Featurizer::new(featurizer_cfg.clone())?;
    let base = BatLiNetConfig::default()
        .with_conv_channels(16)
        .with_batch_size(16)
        .with_epochs(60)
        .with_inference_references(16)
        .with_progress(false);
    let label = LabelConfig::default();
    let ds = |c: &[Cell]| Dataset::for_config(c, &featurizer, &base, &label);
    // (quantile, coverage, chemistry or "all") -> per seed (covered, width, naive covered,
    // naive width)
    type Key = (String, String, String);
    let mut table: BTreeMap<Key, Vec<(f64, f64, f64, f64)>> = BTreeMap::new();
    let mut flagged_in = Vec::new();
    let mut flagged_out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        let parts = split(&cells, 1000 + seed, &[0.5, 0.2, 0.3]);
        let (train, cal, test) = (ds(&parts[0])?, ds(&parts[1])?, ds(&parts[2])?);
        let mut model = BatLiNet::new(base.clone().with_seed(seed), featurizer_cfg.clone())?;
        model.fit(&train)?;
        // the default: each chemistry with enough calibration cells its own quantile (Mondrian)
        let by_chemistry = model.calibrate(&train, &cal, &train)?;
        // the same scores with one pooled quantile
        let pooled = IntervalCalibration {
            by_chemistry: false,
            ..by_chemistry.clone()
        };
        let truth = test.require_labels()?;
        let chemistries: Vec<String> = parts[2].iter().map(cathode).collect();
        for (quantile, calibration) in [("pooled", &pooled), ("by_chemistry", &by_chemistry)] {
            for coverage in [0.8, 0.9] {
                let p = model.predict_intervals(&test, &train, calibration, coverage)?;
                let mut groups: Vec<String> = chemistries.clone();
                groups.sort();
                groups.dedup();
                groups.insert(0, "all".into());
                for g in groups {
                    let keep: Vec<usize> = (0..p.len())
                        .filter(|&i| g == "all" || chemistries[i] == g)
                        .collect();
                    let pick_p: Vec<Prediction> = keep.iter().map(|&i| p[i]).collect();
                    let pick_t: Vec<f64> = keep.iter().map(|&i| truth[i]).collect();
                    let s = score(&pick_p, &pick_t);
                    println!(
                    "{{\"protocol\": \"in_distribution\", \"quantile\": \"{quantile}\", \"seed\": {seed}, \"coverage\": {coverage}, \"chemistry\": \"{g}\", \"cells\": {}, \"covered\": {:.3}, \"mean_width\": {:.1}, \"naive_covered\": {:.3}, \"naive_mean_width\": {:.1}}}",
                    keep.len(), s.0, s.1, s.2, s.3
                );
                    table
                        .entry((quantile.into(), format!("{coverage}"), g))
                        .or_default()
                        .push(s);
                }
                if coverage == 0.9 && quantile == "pooled" {
                    let f =
                        p.iter().filter(|p| p.out_of_distribution).count() as f64 / p.len() as f64;
                    flagged_in.push(f);
                }
            }
        }
        if args.skip_loco {
            continue;
        }
        let mut names: Vec<String> = cells.iter().map(cathode).collect();
        names.sort();
        names.dedup();
        for held in names {
            let others: Vec<Cell> = cells
                .iter()
                .filter(|c| cathode(c) != held)
                .cloned()
                .collect();
            let held_cells: Vec<Cell> = cells
                .iter()
                .filter(|c| cathode(c) == held)
                .cloned()
                .collect();
            let parts = split(&others, 2000 + seed, &[0.7, 0.3]);
            let (train, cal, test) = (ds(&parts[0])?, ds(&parts[1])?, ds(&held_cells)?);
            let mut model = BatLiNet::new(base.clone().with_seed(seed), featurizer_cfg.clone())?;
            model.fit(&train)?;
            let calibration = model.calibrate(&train, &cal, &train)?;
            let p = model.predict_intervals(&test, &train, &calibration, 0.9)?;
            let truth = test.require_labels()?;
            let f = p.iter().filter(|p| p.out_of_distribution).count() as f64 / p.len() as f64;
            let s = score(&p, &truth);
            println!(
                "{{\"protocol\": \"leave_one_chemistry_out\", \"seed\": {seed}, \"held_out\": \"{held}\", \"cells\": {}, \"flagged\": {f:.3}, \"covered_90\": {:.3}, \"mean_width_90\": {:.1}}}",
                p.len(), s.0, s.1
            );
            flagged_out.entry(held).or_default().push(f);
        }
    }
    let mean_sd = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (
            m,
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
        )
    };
    println!();
    println!("| quantile | nominal | chemistry | seeds | covered (mean ± sd) | mean width | naive covered | naive width |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((quantile, coverage, g), rows) in &table {
        let pick = |f: fn(&(f64, f64, f64, f64)) -> f64| rows.iter().map(f).collect::<Vec<_>>();
        let (c, sd) = mean_sd(&pick(|r| r.0));
        println!(
            "| {quantile} | {coverage} | {g} | {} | {:.1} % ± {:.1} | {:.0} | {:.1} % | {:.0} |",
            rows.len(),
            100.0 * c,
            100.0 * sd,
            mean_sd(&pick(|r| r.1)).0,
            100.0 * mean_sd(&pick(|r| r.2)).0,
            mean_sd(&pick(|r| r.3)).0
        );
    }
    let (f, sd) = mean_sd(&flagged_in);
    println!(
        "\nin-distribution test cells flagged out of distribution: {:.1} % ± {:.1}",
        100.0 * f,
        100.0 * sd
    );
    for (held, f) in &flagged_out {
        let (m, sd) = mean_sd(f);
        println!(
            "held-out chemistry {held}: {:.1} % ± {:.1} of its cells flagged",
            100.0 * m,
            100.0 * sd
        );
    }
    Ok(())
}
