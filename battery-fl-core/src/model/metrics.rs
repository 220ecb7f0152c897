//! Error metrics on cycle life, in cycles.

use crate::error::{Error, Result};

/// RMSE, MAE and MAPE of predicted against true cycle lives.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Root mean squared error, cycles.
    pub rmse: f64,
    /// Mean absolute error, cycles.
    pub mae: f64,
    /// Mean absolute percentage error, percent.
    pub mape: f64,
    /// Number of cells.
    pub n: usize,
}

impl Metrics {
    /// Compute the metrics; lengths must match, be non-zero, and true values positive.
    ///
    /// ```
    /// use battery_fl_core::model::Metrics;
    /// let m = Metrics::compute(&[110.0, 90.0], &[100.0, 100.0])?;
    /// assert!((m.rmse - 10.0).abs() < 1e-12 && (m.mape - 10.0).abs() < 1e-12);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn compute(predicted: &[f64], truth: &[f64]) -> Result<Self> {
        if predicted.len() != truth.len() {
            return Err(Error::Shape {
                what: "predictions vs labels".into(),
                expected: vec![truth.len()],
                got: vec![predicted.len()],
            });
        }
        if truth.is_empty() {
            return Err(Error::NotEnoughData {
                what: "metrics".into(),
                needed: 1,
                got: 0,
            });
        }
        if let Some(t) = truth.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            return Err(Error::config(
                "truth",
                format!("cycle lives must be positive, got {t}"),
            ));
        }
        let n = truth.len() as f64;
        let (mut se, mut ae, mut pe) = (0.0, 0.0, 0.0);
        for (p, t) in predicted.iter().zip(truth) {
            let e = p - t;
            se += e * e;
            ae += e.abs();
            pe += (e / t).abs();
        }
        Ok(Metrics {
            rmse: (se / n).sqrt(),
            mae: ae / n,
            mape: 100.0 * pe / n,
            n: truth.len(),
        })
    }
}
