//! `eval_matr`'s loading and reporting: the cells of a folder, per-cell predictions
//! (`--cells-out`), interval coverage lines and the mean ± spread summary over seeds.

use anyhow::{Context, Result};
use battery_fl_core::data::{load_cell, load_index, Cell, CleanConfig};
use battery_fl_core::model::{BatLiNet, Dataset, IntervalCalibration, Metrics, Prediction};

pub mod args;
mod cell_log;
pub use cell_log::CellLog;

/// The cells of a MATR-style folder, cleaned and validated, each with its split (`test`
/// when unnamed) and batch date.
pub fn load(dir: &std::path::Path) -> Result<Vec<(Cell, String, String)>> {
    let index = load_index(dir).with_context(|| format!("reading {}/index.json", dir.display()))?;
    index
        .into_iter()
        .map(|e| {
            let mut cell = load_cell(dir.join(&e.file))?;
            cell.clean(&CleanConfig::default())?;
            cell.validate()?;
            let batch = e
                .extra
                .get("batch_date")
                .and_then(|b| b.as_str())
                .unwrap_or("unknown")
                .to_string();
            Ok((cell, e.split.unwrap_or_else(|| "test".into()), batch))
        })
        .collect()
}

/// One result: model, split, seed, metrics.
pub type Row = (String, String, u64, Metrics);

/// CV+ intervals of `ds` at 80 % and 90 % from `folds` fold models: coverage, mean width, and
/// how often the final model's prediction lies inside.
pub fn report_cv_plus(
    model: &BatLiNet,
    ds: &Dataset,
    train: &Dataset,
    folds: usize,
    split: &str,
    seed: u64,
) -> Result<()> {
    let truth = ds.require_labels()?;
    let point = model.predict(ds, train)?;
    let cv = model.cross_conformal_intervals(train, ds, folds, &[0.8, 0.9])?;
    let n = truth.len().max(1) as f64;
    for (coverage, bounds) in cv.coverages.iter().zip(&cv.bounds) {
        let inside = |values: &[f64]| {
            values
                .iter()
                .zip(bounds)
                .filter(|(v, (lo, hi))| (*lo..=*hi).contains(*v))
                .count() as f64
                / n
        };
        println!(
            "{{\"model\": \"batlinet\", \"split\": \"{split}\", \"seed\": {seed}, \"calibration\": \"cv_plus\", \"cells\": {}, \"coverage\": {coverage}, \"covered\": {:.3}, \"mean_width\": {:.1}, \"point_inside\": {:.3}}}",
            truth.len(),
            inside(&truth),
            bounds.iter().map(|(lo, hi)| hi - lo).sum::<f64>() / n,
            inside(&point),
        );
    }
    Ok(())
}

/// Coverage and mean width of BatLiNet's conformal intervals at 80 % and 90 % on `ds`, next
/// to the naive interval (min-max over the per-reference predictions), as JSON lines; and a
/// line that says why a coverage is off: the 50/80/90 % quantiles of the plain errors
/// |ln y − ln ŷ| of the calibration cells and of `ds`, and the median spread of `ds`'s
/// per-reference predictions beside the calibration's `β` (its median spread).
pub fn report_intervals(
    model: &BatLiNet,
    ds: &Dataset,
    references: &Dataset,
    calibration: &IntervalCalibration,
    split: &str,
    seed: u64,
) -> Result<()> {
    let truth = ds.require_labels()?;
    let n = truth.len().max(1) as f64;
    let share = |inside: usize| inside as f64 / n;
    let mut at_90 = Vec::new();
    for coverage in [0.8, 0.9] {
        let p = model.predict_intervals(ds, references, calibration, coverage)?;
        let inside = |lo: fn(&Prediction) -> f64, hi: fn(&Prediction) -> f64| {
            p.iter()
                .zip(&truth)
                .filter(|(p, y)| (lo(p)..=hi(p)).contains(*y))
                .count()
        };
        let width = |lo: fn(&Prediction) -> f64, hi: fn(&Prediction) -> f64| {
            p.iter().map(|p| hi(p) - lo(p)).sum::<f64>() / n
        };
        println!(
            "{{\"model\": \"batlinet\", \"split\": \"{split}\", \"seed\": {seed}, \"calibration\": \"cross_fitted\", \"cells\": {}, \"coverage\": {coverage}, \"covered\": {:.3}, \"mean_width\": {:.1}, \"naive_covered\": {:.3}, \"naive_mean_width\": {:.1}, \"out_of_distribution\": {}}}",
            truth.len(),
            share(inside(|p| p.lower, |p| p.upper)),
            width(|p| p.lower, |p| p.upper),
            share(inside(|p| p.reference_low, |p| p.reference_high)),
            width(|p| p.reference_low, |p| p.reference_high),
            p.iter().filter(|p| p.out_of_distribution).count(),
        );
        at_90 = p;
    }
    // the point predictions and spreads do not depend on the coverage
    let errors: Vec<f64> = at_90
        .iter()
        .zip(&truth)
        .map(|(p, y)| (y.ln() - p.life.ln()).abs())
        .collect();
    let mut spreads: Vec<f64> = at_90.iter().map(|p| p.spread).collect();
    // the ceil(q n)-th smallest value
    let quantiles = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        [0.5, 0.8, 0.9].map(|q| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
            v.get(rank - 1).copied().unwrap_or(f64::NAN)
        })
    };
    spreads.sort_by(f64::total_cmp);
    let m = spreads.len();
    let median_spread = match m {
        0 => f64::NAN,
        _ if m % 2 == 1 => spreads[m / 2],
        _ => (spreads[m / 2 - 1] + spreads[m / 2]) / 2.0,
    };
    println!(
        "{}",
        serde_json::json!({"model": "batlinet", "split": split, "seed": seed, "calibration": "cross_fitted_errors", "quantiles": [0.5, 0.8, 0.9], "calibration_errors": quantiles(&calibration.errors), "test_errors": quantiles(&errors), "calibration_scale": calibration.scale, "test_median_spread": median_spread})
    );
    Ok(())
}

/// The table: mean and spread over seeds per model and split.
pub fn summarize(rows: &[Row]) -> Result<()> {
    println!();
    println!("| model | split | seeds | RMSE mean | RMSE std | MAPE mean (%) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut keys: Vec<(String, String)> = rows.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    let mut seen = Vec::new();
    keys.retain(|k| {
        let new = !seen.contains(k);
        seen.push(k.clone());
        new
    });
    for (model, split) in keys {
        let ms: Vec<&Metrics> = rows
            .iter()
            .filter(|r| r.0 == model && r.1 == split)
            .map(|r| &r.3)
            .collect();
        let n = ms.len() as f64;
        let mean = ms.iter().map(|m| m.rmse).sum::<f64>() / n;
        let std = (ms.iter().map(|m| (m.rmse - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mape = ms.iter().map(|m| m.mape).sum::<f64>() / n;
        println!(
            "| {model} | {split} | {} | {mean:.1} | {std:.1} | {mape:.1} |",
            ms.len()
        );
    }
    Ok(())
}
