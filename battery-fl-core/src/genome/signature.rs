//! The electrochemical signature: a cell's own early discharge curve, made comparable.

use serde::{Deserialize, Serialize};

use crate::data::{Cell, Cycle};
use crate::error::{Error, Result};

/// How a signature is computed from a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignatureConfig {
    /// Recorded number of the cycle to use; the first cycle at or after it is taken
    /// (default 10: past formation effects, still early life).
    pub cycle: u32,
    /// Points of the discharge V(Q) curve over normalized capacity [0, 1] (default 64).
    pub curve_points: usize,
    /// Bins of the dQ/dV curve over the absolute voltage grid (default 48).
    pub dqdv_points: usize,
    /// Absolute voltage grid of dQ/dV, V (default 2.0 to 4.4, covering LFP to NMC/NCA/LCO).
    pub voltage_grid: (f64, f64),
    /// Discharge samples are those with current below `-current_threshold_a` (default 0.1 A);
    /// cells without a current channel use every sample (discharge-only sources).
    pub current_threshold_a: f64,
    /// dQ/dV local maxima below this fraction of the highest one are not reported as
    /// peaks (default 0.1).
    pub peak_fraction: f64,
}

impl Default for SignatureConfig {
    fn default() -> Self {
        SignatureConfig {
            cycle: 10,
            curve_points: 64,
            dqdv_points: 48,
            voltage_grid: (2.0, 4.4),
            current_threshold_a: 0.1,
            peak_fraction: 0.1,
        }
    }
}

impl SignatureConfig {
    /// Check the values.
    pub fn validate(&self) -> Result<()> {
        if self.curve_points < 2 {
            return Err(Error::config("curve_points", "must be >= 2"));
        }
        if self.dqdv_points < 2 {
            return Err(Error::config("dqdv_points", "must be >= 2"));
        }
        let (lo, hi) = self.voltage_grid;
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(Error::config(
                "voltage_grid",
                format!("need lo < hi, got ({lo}, {hi})"),
            ));
        }
        if self.current_threshold_a.is_nan() || self.current_threshold_a < 0.0 {
            return Err(Error::config("current_threshold_a", "must be >= 0"));
        }
        if !(0.0..1.0).contains(&self.peak_fraction) {
            return Err(Error::config("peak_fraction", "must be in [0, 1)"));
        }
        Ok(())
    }
}

/// A dQ/dV peak: where it sits and how high it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// Voltage at the bin centre, V.
    pub voltage_v: f64,
    /// Normalized dQ/dV (fraction of the cycle's capacity per volt), 1/V.
    pub height: f64,
}

/// The electrochemical signature of a cell, computed from one early discharge.
///
/// All vectors have fixed lengths (set by [`SignatureConfig`]), so signatures of cells from
/// different sources compare point by point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Recorded number of the cycle used.
    pub cycle: u32,
    /// Discharge capacity of that cycle over nominal capacity.
    pub capacity_ratio: f64,
    /// Discharge voltage (V) at evenly spaced normalized capacities 0..=1 (Q / Q_max of the
    /// cycle).
    pub v_of_q: Vec<f64>,
    /// Normalized dQ/dV (1/V) on evenly spaced bins of the absolute voltage grid.
    pub dqdv: Vec<f64>,
    /// Local maxima of `dqdv`, highest first.
    pub peaks: Vec<Peak>,
}

impl Signature {
    /// Compute the signature of `cell` (full-signal or discharge-only).
    pub fn from_cell(cell: &Cell, config: &SignatureConfig) -> Result<Self> {
        config.validate()?;
        let cycle = cell
            .cycles
            .iter()
            .filter(|c| c.cycle >= config.cycle)
            .min_by_key(|c| c.cycle)
            .or_else(|| cell.cycles.iter().max_by_key(|c| c.cycle))
            .ok_or_else(|| Error::InvalidData {
                cell_id: cell.id().to_string(),
                cycle: None,
                field: "cycles".into(),
                reason: "no cycle to compute a signature from".into(),
            })?;
        let mut pts = discharge_points(cycle, config.current_threshold_a);
        if pts.len() < 3 {
            return Err(Error::InvalidData {
                cell_id: cell.id().to_string(),
                cycle: Some(cycle.cycle),
                field: "discharge_capacity_ah".into(),
                reason: format!("{} discharge samples, need at least 3", pts.len()),
            });
        }
        // (Q, V) sorted by capacity
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let q_min = pts[0].0;
        let q_max = pts[pts.len() - 1].0;
        let span = q_max - q_min;
        if span.is_nan() || span <= 0.0 {
            return Err(Error::InvalidData {
                cell_id: cell.id().to_string(),
                cycle: Some(cycle.cycle),
                field: "discharge_capacity_ah".into(),
                reason: "discharge capacity does not change".into(),
            });
        }
        let norm: Vec<(f64, f64)> = pts.iter().map(|&(q, v)| ((q - q_min) / span, v)).collect();
        let v_of_q = resample(&norm, config.curve_points, 0.0, 1.0);

        // normalized Q as a function of V on the absolute grid, then its (negative) slope
        let mut by_v: Vec<(f64, f64)> = norm.iter().map(|&(q, v)| (v, q)).collect();
        by_v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (lo, hi) = config.voltage_grid;
        let edges = resample(&by_v, config.dqdv_points + 1, lo, hi);
        let dv = (hi - lo) / config.dqdv_points as f64;
        let dqdv: Vec<f64> = edges
            .windows(2)
            .map(|w| ((w[0] - w[1]) / dv).max(0.0))
            .collect();
        let peaks = find_peaks(&dqdv, lo, dv, config.peak_fraction);
        Ok(Signature {
            cycle: cycle.cycle,
            capacity_ratio: q_max / cell.meta.nominal_capacity_ah,
            v_of_q,
            dqdv,
            peaks,
        })
    }
}

/// (capacity, voltage) of the discharge samples of a cycle.
fn discharge_points(cycle: &Cycle, threshold: f64) -> Vec<(f64, f64)> {
    let Some(q) = cycle.discharge_capacity_ah.as_deref() else {
        return Vec::new();
    };
    let v = &cycle.voltage_v;
    match cycle.current_a.as_deref() {
        Some(i) => (0..v.len().min(q.len()).min(i.len()))
            .filter(|&k| i[k] < -threshold)
            .map(|k| (q[k], v[k]))
            .collect(),
        None => q.iter().copied().zip(v.iter().copied()).collect(),
    }
}

/// Linear interpolation of sorted `(x, y)` onto `n` evenly spaced points over `[lo, hi]`,
/// holding the end values outside the data.
fn resample(xy: &[(f64, f64)], n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let step = (hi - lo) / (n - 1) as f64;
    let mut j = 0;
    (0..n)
        .map(|k| {
            let x = lo + step * k as f64;
            if x <= xy[0].0 {
                return xy[0].1;
            }
            if x >= xy[xy.len() - 1].0 {
                return xy[xy.len() - 1].1;
            }
            while j + 1 < xy.len() && xy[j + 1].0 < x {
                j += 1;
            }
            let (x0, y0) = xy[j];
            let (x1, y1) = xy[j + 1];
            if x1 > x0 {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            } else {
                y0
            }
        })
        .collect()
}

fn find_peaks(dqdv: &[f64], lo: f64, dv: f64, fraction: f64) -> Vec<Peak> {
    let top = dqdv.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    let n = dqdv.len();
    let mut peaks: Vec<Peak> = (0..n)
        .filter(|&k| {
            let left = if k == 0 {
                f64::NEG_INFINITY
            } else {
                dqdv[k - 1]
            };
            let right = if k + 1 == n {
                f64::NEG_INFINITY
            } else {
                dqdv[k + 1]
            };
            dqdv[k] >= fraction * top && dqdv[k] > left && dqdv[k] >= right
        })
        .map(|k| Peak {
            voltage_v: lo + dv * (k as f64 + 0.5),
            height: dqdv[k],
        })
        .collect();
    peaks.sort_by(|a, b| b.height.total_cmp(&a.height));
    peaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn resample_is_linear_and_clamps() {
        let xy = [(0.0, 0.0), (1.0, 2.0)];
        let r = resample(&xy, 5, -1.0, 2.0);
        assert_relative_eq!(r[0], 0.0);
        assert_relative_eq!(r[2], 1.0);
        assert_relative_eq!(r[4], 2.0);
    }

    #[test]
    fn plateau_gives_one_dominant_peak_at_the_plateau() {
        // a flat plateau at 3.3 V holding most of the capacity
        let v: Vec<f64> = (0..200)
            .map(|k| {
                let q = k as f64 / 199.0;
                if q < 0.05 {
                    3.5 - 4.0 * q
                } else if q < 0.95 {
                    3.32 - 0.05 * (q - 0.05)
                } else {
                    3.27 - 20.0 * (q - 0.95)
                }
            })
            .collect();
        let q: Vec<f64> = (0..200).map(|k| 1.1 * k as f64 / 199.0).collect();
        let mut c = Cycle::new(10, v);
        c.discharge_capacity_ah = Some(q);
        let cell = Cell::new(crate::data::CellMeta::new("p", 1.1), vec![c]);
        let s = Signature::from_cell(&cell, &SignatureConfig::default()).unwrap();
        assert_eq!(s.v_of_q.len(), 64);
        assert!((s.peaks[0].voltage_v - 3.3).abs() < 0.06, "{:?}", s.peaks);
        assert_relative_eq!(s.capacity_ratio, 1.0, epsilon = 1e-12);
        // dQ/dV integrates to the normalized capacity inside the grid
        let total: f64 = s.dqdv.iter().sum::<f64>() * 2.4 / 48.0;
        assert_relative_eq!(total, 1.0, epsilon = 1e-9);
    }
}
