//! The end of the main job: the linear recipe's targets, plots and JSON line, BatLiNet's
//! intervals per fleet, and the JSON line's record-level privacy block.

pub mod args;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use battery_fl_core::dp::DpMode;
use battery_fl_core::federation::{FleetData, Simulation};
use battery_fl_core::model::{IntervalSummary, Metrics, ReferenceSelection};
use battery_fl_core::Error;

use super::linear::LinearReport;
use super::{plot, svg_plot};

/// One fleet's record-level mechanism and what it spent.
pub struct Mechanism {
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub steps: u64,
    pub epsilon: f64,
}

/// The JSON line's `privacy` block: the mechanism, so that anyone can recompute ε with an
/// RDP accountant (scalars when every fleet shares them, per fleet otherwise).
pub fn privacy_block(
    delta: f64,
    per_fleet: &BTreeMap<String, Mechanism>,
    noise_seed: Option<u64>,
) -> serde_json::Value {
    let field = |get: fn(&Mechanism) -> serde_json::Value| {
        let values: BTreeMap<&String, serde_json::Value> =
            per_fleet.iter().map(|(k, m)| (k, get(m))).collect();
        let mut distinct: Vec<&serde_json::Value> = values.values().collect();
        distinct.dedup();
        match distinct.as_slice() {
            [one] => (*one).clone(),
            _ => serde_json::json!(values),
        }
    };
    serde_json::json!({
        "unit": "cell",
        "delta": delta,
        "noise_multiplier": field(|m| serde_json::json!(m.noise_multiplier)),
        "sample_rate": field(|m| serde_json::json!(m.sample_rate)),
        "steps": field(|m| serde_json::json!(m.steps)),
        "epsilon": per_fleet.iter().map(|(k, m)| (k.clone(), m.epsilon)).collect::<BTreeMap<_, _>>(),
        // a seed anyone knows lets them subtract the noise: a demo's, never a deployment's
        "noise_seed": noise_seed,
    })
}

/// RMSE over every fleet's test cells (each predicted with its own training cells as
/// references) of the model the federation starts from, before any round: under record-level
/// DP-SGD the weights trained on the public cells alone, the baseline that says what the
/// private rounds add.
pub fn start_rmse(
    sim: &mut Simulation,
    fleets: &[FleetData],
    references: usize,
    selection: ReferenceSelection,
) -> Result<f64> {
    let global = sim.global_model()?;
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    for (i, f) in fleets.iter().enumerate() {
        let k = references.min(f.train.len());
        pred.extend(global.predict_with(&f.test, &f.train, k, selection, i as u64)?);
        truth.extend(f.test.require_labels()?);
    }
    Ok(Metrics::compute(&pred, &truth)?.rmse)
}

/// The end of a `--model linear` run: targets, plot and the JSON line.
pub fn finish_linear(
    out: &Path,
    matr: bool,
    lin: &LinearReport,
    noise_seed: Option<u64>,
    settings: serde_json::Value,
) -> Result<()> {
    let worst_ratio = lin
        .per_fleet
        .values()
        .map(|v| {
            v["personalized"].as_f64().unwrap_or(f64::NAN) / v["local"].as_f64().unwrap_or(f64::NAN)
        })
        .fold(0.0f64, f64::max);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let best = lin.personalized.min(lin.federated);
    if matr {
        println!(
            "targets: personalized or global federated <= 85 RMSE: {}; at least 20% better than the best fleet alone: {}; every fleet at least as good as alone: {}",
            met(best <= 85.0),
            met(best <= 0.8 * lin.best_local),
            met(worst_ratio <= 1.0),
        );
    } else {
        let (cells, ml, mp) = lin.minority;
        let minority = if cells == 0 {
            "n/a (no cell of a minority chemistry)".to_string()
        } else {
            format!("{} ({:.2})", met(mp <= 0.75 * ml), mp / ml)
        };
        println!(
            "targets: personalized <= 0.85 x local-only: {} ({:.2}); no fleet above 1.05 x its local-only RMSE: {} (worst {:.2}); minority chemistries >= 25% better than local-only: {minority}",
            met(lin.personalized <= 0.85 * lin.local),
            lin.personalized / lin.local,
            met(worst_ratio <= 1.05),
            worst_ratio,
        );
    }
    plot::plot(
        &out.join("predicted_vs_true.png"),
        &lin.scatter,
        false,
        true,
    )?;
    let series: Vec<(String, Vec<svg_plot::IntervalPoint>)> = lin
        .intervals
        .iter()
        .map(|(name, cells)| {
            let points = cells
                .iter()
                .map(|c| svg_plot::IntervalPoint {
                    truth: c.truth,
                    life: c.life,
                    lower: c.lower,
                    upper: c.upper,
                    flagged: c.flagged,
                })
                .collect();
            (name.clone(), points)
        })
        .collect();
    svg_plot::predicted_vs_true(
        &out.join("predicted_vs_true.svg"),
        "Each fleet's personalized linear model on its test cells (90 % intervals)",
        &series,
    )?;
    std::fs::write(
        out.join("linear_federation.json"),
        serde_json::to_string_pretty(&lin.federation)?,
    )?;
    println!(
        "wrote {0}/predicted_vs_true.svg (each fleet's personal model on its test cells with 90 % intervals, flagged cells crossed; .png without intervals), {0}/linear_federation.json (every fleet's models)",
        out.display()
    );
    let summary = serde_json::json!({
        "model": "linear",
        "local_rmse": lin.local,
        "federated_rmse": lin.federated,
        "personalized_rmse": lin.personalized,
        "centralized_rmse": lin.centralized,
        "best_local_rmse": lin.best_local,
        "coverage_90": lin.coverage_90,
        "width_90": lin.width_90,
        "minority_rmse": (lin.minority.0 > 0).then(|| serde_json::json!({"cells": lin.minority.0, "local": lin.minority.1, "personalized": lin.minority.2})),
        "epsilon": lin.federation.privacy.as_ref().map(|p| p.epsilon),
        "personalization": "auto",
        "settings": settings,
        "per_fleet": lin.per_fleet,
    });
    let mut summary = summary;
    if let Some(p) = &lin.federation.privacy {
        // every fleet runs the same mechanism: the Gaussian mechanism on its summed
        // statistics, `releases` releases, no subsampling; the multiplier printed is the one
        // the accountant composes: with distributed noise, what a curious fleet (which knows
        // its own share) faces, z * sqrt((m - 1) / m)
        let m = lin.per_fleet.len() as f64;
        let faced = match p.mode {
            DpMode::Distributed => p.noise_multiplier * ((m - 1.0) / m).sqrt(),
            _ => p.noise_multiplier,
        };
        let per_fleet = lin
            .per_fleet
            .keys()
            .map(|k| {
                let mechanism = Mechanism {
                    noise_multiplier: faced,
                    sample_rate: 1.0,
                    steps: p.releases,
                    epsilon: p.epsilon,
                };
                (k.clone(), mechanism)
            })
            .collect();
        summary["privacy"] = privacy_block(p.delta, &per_fleet, noise_seed);
        // the mechanism as run: the multiplier each fleet draws its share with, and where
        summary["privacy"]["noise_mode"] = serde_json::json!(p.mode);
        summary["privacy"]["drawn_noise_multiplier"] = serde_json::json!(p.noise_multiplier);
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Each fleet's 90 % intervals on its own test cells with the BatLiNet model it ended with,
/// calibrated on the cells each fleet held out (`auto`, `auto_head` or `calibration_holdout`;
/// pooled across fleets through a secure sum when a
/// fleet has fewer than `MONDRIAN_MIN_CELLS`): a table, `coverage_90` / `width_90` per fleet
/// in `per_fleet`, the plot, and the pooled (coverage, mean width) over all test cells;
/// `None`, with the reason printed, when the fleets cannot calibrate (the run stands).
pub fn batlinet_intervals(
    sim: &mut Simulation,
    fleets: &[FleetData],
    per_fleet: &mut BTreeMap<String, serde_json::Value>,
    out: &Path,
) -> Result<Option<(f64, f64)>> {
    let calibrations = match sim.calibrate_fleets() {
        Ok(c) => c,
        Err(e) => {
            println!("no intervals: {e}");
            return Ok(None);
        }
    };
    // a simulation's output: in a deployment each calibration stays with its fleet
    std::fs::write(
        out.join("calibrations.json"),
        serde_json::to_string_pretty(&calibrations)?,
    )?;
    println!();
    println!("| fleet (own test cells) | 90 % interval covers | mean width (cycles) | flagged out of distribution | calibration |");
    println!("| --- | --- | --- | --- | --- |");
    let mut summaries = Vec::new();
    let mut series = Vec::new();
    for f in fleets {
        let cal = &calibrations[&f.id];
        let p = match sim.fleet_intervals(&f.id, &f.test, cal, 0.9) {
            Err(Error::NotEnoughData { needed, got, .. }) => {
                println!("| {} | - (a 90 % interval needs {needed} calibration cells, {got} available) | | | |", f.id);
                continue;
            }
            other => other?,
        };
        let truth = f.test.require_labels()?;
        let known: Vec<Option<f64>> = truth.iter().copied().map(Some).collect();
        let s = IntervalSummary::of_predictions(&p, &known)?;
        println!(
            "| {} | {:.0}/{} | {:.0} | {} | {} ({} scores) |",
            f.id,
            s.covered * s.labelled as f64,
            s.labelled,
            s.mean_width,
            s.flagged,
            if cal.pooled {
                "pooled over fleets"
            } else {
                "own held-out cells"
            },
            cal.scores.len()
        );
        if let Some(v) = per_fleet.get_mut(&f.id) {
            v["coverage_90"] = serde_json::json!(s.covered);
            v["width_90"] = serde_json::json!(s.mean_width);
            v["out_of_distribution"] = serde_json::json!(s.flagged);
        }
        summaries.push(s);
        let points = p
            .iter()
            .zip(&truth)
            .map(|(p, &truth)| svg_plot::IntervalPoint {
                truth,
                life: p.life,
                lower: p.lower,
                upper: p.upper,
                flagged: p.out_of_distribution,
            })
            .collect();
        series.push((f.id.clone(), points));
    }
    let all = IntervalSummary::pooled(&summaries);
    println!(
        "all test cells: {:.0}/{} inside their 90 % interval, mean width {:.0} cycles",
        all.covered * all.labelled as f64,
        all.labelled,
        all.mean_width
    );
    svg_plot::predicted_vs_true(
        &out.join("intervals.svg"),
        "Each fleet's own BatLiNet model on its test cells (90 % intervals)",
        &series,
    )?;
    println!(
        "wrote {}/intervals.svg (each fleet's model on its test cells with 90 % intervals, flagged cells crossed)",
        out.display()
    );
    Ok(Some((all.covered, all.mean_width)))
}
