//! `eval_matr`'s reporting: per-cell predictions (`--cells-out`), interval coverage lines and
//! the mean ± spread summary over seeds.

use anyhow::{Context, Result};
use battery_fl_core::model::{BatLiNet, Dataset, IntervalCalibration, Metrics, Prediction};

/// One result: model, split, seed, metrics.
pub type Row = (String, String, u64, Metrics);

/// `--cells-out`: every test cell's prediction, appended as JSON lines (a LOBO run appends
/// one block per batch), with the range of the lives the models were trained on.
pub struct CellLog {
    out: Option<std::io::BufWriter<std::fs::File>>,
    train_range: (f64, f64),
}

impl CellLog {
    pub fn open(path: Option<&std::path::Path>, train_lives: &[f64]) -> Result<Self> {
        let out = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))
            })
            .transpose()?
            .map(std::io::BufWriter::new);
        let lo = train_lives.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = train_lives
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        Ok(CellLog {
            out,
            train_range: (lo, hi),
        })
    }

    pub fn write(
        &mut self,
        model: &str,
        split: &str,
        seed: u64,
        ds: &Dataset,
        pred: &[f64],
    ) -> Result<()> {
        self.write_flagged(model, split, seed, ds, pred, None)
    }

    /// As [`write`](Self::write), each line with the cell's out-of-distribution flag (`ood`).
    pub fn write_flagged(
        &mut self,
        model: &str,
        split: &str,
        seed: u64,
        ds: &Dataset,
        pred: &[f64],
        ood: Option<&[bool]>,
    ) -> Result<()> {
        use std::io::Write;
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let (lo, hi) = self.train_range;
        let lives = ds.require_labels()?;
        for (i, ((cell, life), p)) in ds.cell_ids().iter().zip(lives).zip(pred).enumerate() {
            let mut line = serde_json::json!({"model": model, "split": split, "seed": seed,
                "cell": cell, "life": life, "pred": p, "train_min": lo, "train_max": hi});
            if let Some(flag) = ood.and_then(|f| f.get(i)) {
                line["ood"] = serde_json::json!(flag);
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        Ok(())
    }
}

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
/// to the naive interval (min-max over the per-reference predictions), as JSON lines.
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
    }
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
