//! Early-life summary features of a cell, the inputs of the linear lifetime model
//! ([`LinearModel`](crate::model::LinearModel)): Severson's discharge features (ΔQ(V) between
//! two early cycles, the slope of capacity fade, the early capacity) and, where the cell
//! carries current and temperature, its operating conditions.
//!
//! | feature | definition |
//! | --- | --- |
//! | `log_variance_delta_q` | log10 var ΔQ(V), ΔQ = Qd(V, late) − Qd(V, early) |
//! | `log_min_delta_q` | log10 \|min ΔQ(V)\| |
//! | `log_fade_slope` | log10 of minus the least-squares slope of Qd / nominal over the cycles `early..=late` (floored at 1e-7 per cycle) |
//! | `capacity_2` | Qd / nominal of the second recorded cycle |
//! | `fade` | (Qd(late) − Qd(early)) / nominal |
//! | `temperature_c` | mean measured temperature of the first five recorded cycles |
//! | `charge_c_rate` | largest charge current of the early cycle / nominal |
//! | `discharge_c_rate` | largest discharge current of the early cycle / nominal |
//! | `log_linear_fade_rate` | log10 `r` of the fit `Qd / nominal = a − s √n − r n` over every recorded cycle `n <= late` (floored at 1e-7 per cycle) |
//! | `log_sqrt_fade` | log10 `s` of the same fit (floored at 1e-7) |
//!
//! The last two split the early fade into its two usual mechanisms: a square-root term (SEI
//! growth, which slows down) and a linear term (loss of lithium inventory and active material,
//! which goes on and sets where the knee falls). A straight-line slope over the early cycles
//! mixes them, and the mix depends on where the window starts.
//!
//! A feature the cell cannot give (no temperature or current signal, as in the MATR files)
//! is `None`; a model uses only the features every one of its cells has.

use serde::{Deserialize, Serialize};

use super::delta_q::delta_q;
use crate::data::Cell;
use crate::error::{Error, Result};

/// Number of early-life features ([`EARLY_LIFE_FEATURES`]).
pub const EARLY_LIFE_FEATURE_COUNT: usize = 10;

/// Names of the early-life features, in the order of [`EarlyLifeFeatures::values`].
pub const EARLY_LIFE_FEATURES: [&str; EARLY_LIFE_FEATURE_COUNT] = [
    "log_variance_delta_q",
    "log_min_delta_q",
    "log_fade_slope",
    "capacity_2",
    "fade",
    "temperature_c",
    "charge_c_rate",
    "discharge_c_rate",
    "log_linear_fade_rate",
    "log_sqrt_fade",
];

/// Smallest fade slope (per cycle, fraction of nominal) before the logarithm: a cell whose
/// capacity did not fall reads as this slope.
const MIN_FADE_SLOPE: f64 = 1e-7;

/// Which cycles the early-life features read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyLifeConfig {
    /// Early cycle of ΔQ(V) and start of the fade fit (default 10).
    pub early_cycle: u32,
    /// Late cycle of ΔQ(V) and end of the fade fit (default 100).
    pub late_cycle: u32,
    /// Discharge samples have current below −threshold (default 0.1 A).
    pub current_threshold_a: f64,
}

impl Default for EarlyLifeConfig {
    fn default() -> Self {
        EarlyLifeConfig {
            early_cycle: 10,
            late_cycle: 100,
            current_threshold_a: 0.1,
        }
    }
}

impl EarlyLifeConfig {
    /// Reject an empty or reversed cycle window and a negative threshold.
    pub fn validate(&self) -> Result<()> {
        if self.early_cycle == 0 || self.late_cycle <= self.early_cycle {
            return Err(Error::InvalidConfig {
                field: "early_life.late_cycle".into(),
                reason: format!(
                    "need 0 < early_cycle < late_cycle, got {} and {}",
                    self.early_cycle, self.late_cycle
                ),
            });
        }
        if !(self.current_threshold_a.is_finite() && self.current_threshold_a >= 0.0) {
            return Err(Error::InvalidConfig {
                field: "early_life.current_threshold_a".into(),
                reason: format!("must be finite and >= 0, got {}", self.current_threshold_a),
            });
        }
        Ok(())
    }
}

/// The early-life features of one cell ([`EARLY_LIFE_FEATURES`] order; `None` where the
/// cell's signals cannot give one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyLifeFeatures {
    /// Feature values.
    pub values: [Option<f64>; EARLY_LIFE_FEATURE_COUNT],
}

impl EarlyLifeFeatures {
    /// Compute the features of `cell`. The discharge features are required (an error names
    /// the cell when they cannot be computed); the condition features are optional.
    ///
    /// ```
    /// use battery_fl_core::data::synthetic::{CellSpec, Chemistry};
    /// use battery_fl_core::features::{EarlyLifeConfig, EarlyLifeFeatures};
    ///
    /// let cool = CellSpec::new(Chemistry::Nmc).with_temperature_c(15.0).generate("a", 1)?;
    /// let hot = CellSpec::new(Chemistry::Nmc).with_temperature_c(45.0).generate("b", 1)?;
    /// let (a, b) = (
    ///     EarlyLifeFeatures::of(&cool, &EarlyLifeConfig::default())?,
    ///     EarlyLifeFeatures::of(&hot, &EarlyLifeConfig::default())?,
    /// );
    /// // the hot cell fades faster and runs hotter
    /// assert!(b.values[2].unwrap() > a.values[2].unwrap());
    /// assert!(b.values[5].unwrap() > a.values[5].unwrap() + 20.0);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn of(cell: &Cell, config: &EarlyLifeConfig) -> Result<Self> {
        config.validate()?;
        let nominal = cell.meta.nominal_capacity_ah;
        let invalid = |field: &str, reason: String| Error::InvalidData {
            cell_id: cell.id().to_string(),
            cycle: None,
            field: field.into(),
            reason,
        };
        if !(nominal.is_finite() && nominal > 0.0) {
            return Err(invalid(
                "nominal_capacity_ah",
                format!("must be > 0, got {nominal}"),
            ));
        }
        let (early, late) = (config.early_cycle, config.late_cycle);
        let dq = delta_q(cell, early, late, config.current_threshold_a)?;
        let n = dq.len() as f64;
        let mean = dq.iter().sum::<f64>() / n;
        let var = dq.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let min = dq.iter().copied().fold(f64::INFINITY, f64::min);
        if !(var.is_finite() && var > 0.0 && min.is_finite() && min != 0.0) {
            return Err(invalid(
                "discharge_capacity_ah",
                format!("ΔQ(V) between cycles {early} and {late} is flat or not finite"),
            ));
        }
        let capacities = cell.capacity_series();
        let series: Vec<(f64, f64)> = capacities
            .iter()
            .copied()
            .filter(|&(c, q)| (early..=late).contains(&c) && q.is_finite())
            .map(|(c, q)| (f64::from(c), q / nominal))
            .collect();
        let capacity_at = |cycle: u32| {
            cell.cycle(cycle)
                .and_then(|c| c.max_discharge_capacity())
                .map(|q| q / nominal)
                .ok_or_else(|| invalid("cycles", format!("no discharge capacity at cycle {cycle}")))
        };
        let slope = least_squares_slope(&series).ok_or_else(|| {
            invalid(
                "capacity_trajectory",
                format!("fewer than two capacities in cycles {early}..={late}"),
            )
        })?;
        let (sqrt_fade, linear_rate) =
            fade_mechanisms(&capacities, nominal, late).map_or((None, None), |(s, r)| {
                (
                    Some(s.max(MIN_FADE_SLOPE).log10()),
                    Some(r.max(MIN_FADE_SLOPE).log10()),
                )
            });
        let second = cell
            .cycles
            .iter()
            .filter_map(|c| c.max_discharge_capacity())
            .nth(1)
            .map(|q| q / nominal);
        let temperature = mean_temperature(cell);
        let (charge, discharge) = c_rates(cell, early, nominal);
        Ok(EarlyLifeFeatures {
            values: [
                Some(var.log10()),
                Some(min.abs().log10()),
                Some((-slope).max(MIN_FADE_SLOPE).log10()),
                second,
                Some(capacity_at(late)? - capacity_at(early)?),
                temperature,
                charge,
                discharge,
                linear_rate,
                sqrt_fade,
            ],
        })
    }
}

/// `(s, r)` of the least-squares fit `q / nominal = a − s √n − r n` over the finite capacities
/// of cycles `1..=late`; `None` with fewer than four of them or a singular fit.
fn fade_mechanisms(series: &[(u32, f64)], nominal: f64, late: u32) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = series
        .iter()
        .filter(|&&(c, q)| c >= 1 && c <= late && q.is_finite())
        .map(|&(c, q)| (f64::from(c), q / nominal))
        .collect();
    if points.len() < 4 {
        return None;
    }
    // normal equations of [1, -√n, -n] in centred form: solve the 2x2 system for (s, r)
    let m = points.len() as f64;
    let mean = |f: &dyn Fn(&(f64, f64)) -> f64| points.iter().map(f).sum::<f64>() / m;
    let (mu, mv, my) = (mean(&|p| -p.0.sqrt()), mean(&|p| -p.0), mean(&|p| p.1));
    let (mut suu, mut suv, mut svv, mut suy, mut svy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(n, y) in &points {
        let (u, v, y) = (-n.sqrt() - mu, -n - mv, y - my);
        suu += u * u;
        suv += u * v;
        svv += v * v;
        suy += u * y;
        svy += v * y;
    }
    let det = suu * svv - suv * suv;
    if !(det.is_finite() && det > 1e-12 * suu * svv) {
        return None;
    }
    let s = (svv * suy - suv * svy) / det;
    let r = (suu * svy - suv * suy) / det;
    (s.is_finite() && r.is_finite()).then_some((s, r))
}

fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mean_temperature(cell: &Cell) -> Option<f64> {
    let (sum, count) = cell
        .cycles
        .iter()
        .take(5)
        .filter_map(|c| c.temperature_c.as_deref())
        .flatten()
        .filter(|t| t.is_finite())
        .fold((0.0, 0usize), |(s, n), t| (s + t, n + 1));
    (count > 0).then(|| sum / count as f64)
}

fn c_rates(cell: &Cell, cycle: u32, nominal: f64) -> (Option<f64>, Option<f64>) {
    let Some(current) = cell.cycle(cycle).and_then(|c| c.current_a.as_deref()) else {
        return (None, None);
    };
    let finite = current.iter().copied().filter(|i| i.is_finite());
    let max = finite.clone().fold(f64::NEG_INFINITY, f64::max);
    let min = finite.fold(f64::INFINITY, f64::min);
    (
        (max > 0.0).then_some(max / nominal),
        (min < 0.0).then_some(-min / nominal),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{CellSpec, Chemistry};

    #[test]
    fn faster_aging_reads_as_a_steeper_fade() {
        let config = EarlyLifeConfig::default();
        let slow = CellSpec::new(Chemistry::Lfp)
            .with_charge_c_rate(0.5)
            .generate("slow", 3)
            .unwrap();
        let fast = CellSpec::new(Chemistry::Lfp)
            .with_charge_c_rate(4.0)
            .generate("fast", 3)
            .unwrap();
        let a = EarlyLifeFeatures::of(&slow, &config).unwrap().values;
        let b = EarlyLifeFeatures::of(&fast, &config).unwrap().values;
        assert!(b[2].unwrap() > a[2].unwrap(), "{a:?} {b:?}");
        assert!(b[0].unwrap() > a[0].unwrap());
        assert!((b[6].unwrap() - 4.0).abs() < 0.2, "{b:?}");
        assert!((a[6].unwrap() - 0.5).abs() < 0.1, "{a:?}");
        assert!(b[4].unwrap() < a[4].unwrap() && b[4].unwrap() < 0.0);
    }

    #[test]
    fn the_fade_split_recovers_a_square_root_and_a_linear_term() {
        let (s, r) = (2e-3, 1.5e-4);
        let series: Vec<(u32, f64)> = (1..=120u32)
            .map(|n| {
                let wobble = 1e-5 * (f64::from(n) * 1.7).sin();
                (
                    n,
                    2.0 * (0.99 - s * f64::from(n).sqrt() - r * f64::from(n) + wobble),
                )
            })
            .collect();
        let (fs, fr) = fade_mechanisms(&series, 2.0, 100).unwrap();
        assert!((fs - s).abs() < 2e-5, "{fs}");
        assert!((fr - r).abs() < 2e-6, "{fr}");
        // too few cycles, or every capacity at one cycle count: no split
        assert!(fade_mechanisms(&series[..3], 2.0, 100).is_none());
        assert!(fade_mechanisms(&[(5, 1.0); 10], 2.0, 100).is_none());
        // on a generated cell the split is finite and the hot cell's linear rate is higher
        let config = EarlyLifeConfig::default();
        let rate = |t: f64| {
            let cell = CellSpec::new(Chemistry::Nmc)
                .with_temperature_c(t)
                .generate("c", 5)
                .unwrap();
            EarlyLifeFeatures::of(&cell, &config).unwrap().values[8].unwrap()
        };
        assert!(rate(45.0) > rate(15.0) + 0.1);
    }

    #[test]
    fn discharge_only_cells_lack_the_conditions_and_missing_cycles_are_errors() {
        let mut cell = CellSpec::new(Chemistry::Nmc).generate("c", 1).unwrap();
        for c in &mut cell.cycles {
            c.current_a = None;
            c.temperature_c = None;
        }
        let f = EarlyLifeFeatures::of(&cell, &EarlyLifeConfig::default()).unwrap();
        assert!(f.values[..5].iter().all(Option::is_some));
        assert!(f.values[5..8].iter().all(Option::is_none));
        assert!(f.values[8..].iter().all(Option::is_some));
        cell.cycles.retain(|c| c.cycle != 100);
        assert!(matches!(
            EarlyLifeFeatures::of(&cell, &EarlyLifeConfig::default()),
            Err(Error::InvalidData { .. })
        ));
        let bad = EarlyLifeConfig {
            early_cycle: 50,
            late_cycle: 20,
            ..Default::default()
        };
        assert!(matches!(
            EarlyLifeFeatures::of(&cell, &bad),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
