//! `--cells-out` of `eval_matr` and `eval_synthetic`: every test cell's prediction by every
//! model as JSON lines, for studying a rule per cell without retraining
//! (`scripts/gate_study.py`).

use anyhow::{Context, Result};
use battery_fl_core::model::{Calibration, Dataset, LinearModel, LinearRow};

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
        self.write_flagged(model, split, seed, ds, pred, None, &[])
    }

    /// As [`write`](Self::write), each line with the cell's out-of-distribution flag (`ood`)
    /// and further per-cell numbers (`extra`: key, one value per cell).
    #[allow(clippy::too_many_arguments)]
    pub fn write_flagged(
        &mut self,
        model: &str,
        split: &str,
        seed: u64,
        ds: &Dataset,
        pred: &[f64],
        ood: Option<&[bool]>,
        extra: &[(&str, Vec<f64>)],
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
            for (key, values) in extra {
                if let Some(v) = values.get(i) {
                    line[*key] = serde_json::json!(v);
                }
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        Ok(())
    }

    /// The linear model's lines: its predictions `pred` of the cells `rows` hold, each with
    /// its out-of-distribution flag (`ood`) and its 90 % and widest intervals (`lower_90`,
    /// `upper_90`, `lower_max`, `upper_max`; the widest is the calibration's largest
    /// leave-one-out score).
    pub fn write_linear(
        &mut self,
        split: &str,
        ds: &Dataset,
        pred: &[f64],
        (linear, rows, calibration): (&LinearModel, &[LinearRow], &Calibration),
    ) -> Result<()> {
        let iv = linear.intervals(rows, calibration, 0.9)?;
        let n = calibration.scores.len() as f64;
        let widest = linear.intervals(rows, calibration, (n - 0.5) / (n + 1.0))?;
        let ood: Vec<bool> = iv.iter().map(|i| i.out_of_distribution).collect();
        let bounds = [
            ("lower_90", iv.iter().map(|i| i.lower).collect()),
            ("upper_90", iv.iter().map(|i| i.upper).collect()),
            ("lower_max", widest.iter().map(|i| i.lower).collect()),
            ("upper_max", widest.iter().map(|i| i.upper).collect()),
        ];
        self.write_flagged("linear", split, 0, ds, pred, Some(&ood), &bounds)
    }
}
