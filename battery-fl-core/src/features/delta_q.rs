//! Discharge capacity as a function of voltage, Qd(V), and the Severson ΔQ(V) feature.
//!
//! Severson et al. (2019) showed that the variance over voltage of
//! ΔQ(V) = Qd(V, cycle 100) − Qd(V, cycle 10) predicts cycle life (log10 var vs log10 life is
//! nearly linear on LFP). This module computes Qd(V) on a fixed voltage grid from either raw
//! discharge samples (current < −threshold) or, for discharge-only sources without a current
//! channel (MATR), from every sample of the cycle.

use crate::data::{Cell, Cycle};
use crate::error::{Error, Result};

/// Voltage grid points used by default (as in Severson et al.).
pub const DEFAULT_VOLTAGE_POINTS: usize = 1000;

/// Discharge capacity (Ah) of `cycle` on `points` voltages evenly spaced from `v_hi` down to
/// `v_lo`, by linear interpolation of Q over V. Outside the measured voltage span, Q is held
/// at the nearest measured value (0-side above, full-discharge side below).
pub fn qd_of_v(
    cycle: &Cycle,
    v_lo: f64,
    v_hi: f64,
    points: usize,
    current_threshold_a: f64,
) -> Result<Vec<f64>> {
    let q = cycle
        .discharge_capacity_ah
        .as_deref()
        .ok_or_else(|| Error::NotEnoughData {
            what: format!("Qd(V) of cycle {}: no discharge capacity", cycle.cycle),
            needed: 1,
            got: 0,
        })?;
    let mut pts: Vec<(f64, f64)> = match cycle.current_a.as_deref() {
        Some(i) => cycle
            .voltage_v
            .iter()
            .zip(q)
            .zip(i)
            .filter(|&(_, &i)| i < -current_threshold_a)
            .map(|((&v, &q), _)| (v, q))
            .collect(),
        None => cycle
            .voltage_v
            .iter()
            .copied()
            .zip(q.iter().copied())
            .collect(),
    };
    if pts.len() < 2 {
        return Err(Error::NotEnoughData {
            what: format!("Qd(V) of cycle {}: discharge samples", cycle.cycle),
            needed: 2,
            got: pts.len(),
        });
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let step = if points > 1 {
        (v_hi - v_lo) / (points - 1) as f64
    } else {
        0.0
    };
    let mut out = Vec::with_capacity(points);
    let mut j = 0;
    // walk the grid upward in voltage, then reverse so that index 0 is v_hi
    for k in (0..points).rev() {
        let v = v_hi - step * k as f64;
        while j + 1 < pts.len() && pts[j + 1].0 < v {
            j += 1;
        }
        let (v0, q0) = pts[j];
        let value = if v <= pts[0].0 {
            pts[0].1
        } else if v >= pts[pts.len() - 1].0 {
            pts[pts.len() - 1].1
        } else {
            let (v1, q1) = pts[j + 1];
            if v1 > v0 {
                q0 + (q1 - q0) * (v - v0) / (v1 - v0)
            } else {
                q0
            }
        };
        out.push(value);
    }
    out.reverse();
    Ok(out)
}

/// ΔQ(V) = Qd(V, `late`) − Qd(V, `early`) for the cycles with the given recorded numbers, on a
/// grid over the cell's voltage window (`voltage_min_v`..`voltage_max_v`, else the data range).
pub fn delta_q(cell: &Cell, early: u32, late: u32, current_threshold_a: f64) -> Result<Vec<f64>> {
    let get = |n: u32| {
        cell.cycle(n).ok_or_else(|| Error::InvalidData {
            cell_id: cell.id().to_string(),
            cycle: Some(n),
            field: "cycles".into(),
            reason: "cycle needed for ΔQ(V) is missing".into(),
        })
    };
    let (a, b) = (get(early)?, get(late)?);
    let (lo, hi) = match (cell.meta.voltage_min_v, cell.meta.voltage_max_v) {
        (Some(lo), Some(hi)) if hi > lo => (lo, hi),
        _ => {
            let vs = a.voltage_v.iter().chain(&b.voltage_v).copied();
            let (lo, hi) = vs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            (lo, hi)
        }
    };
    let qa = qd_of_v(a, lo, hi, DEFAULT_VOLTAGE_POINTS, current_threshold_a)?;
    let qb = qd_of_v(b, lo, hi, DEFAULT_VOLTAGE_POINTS, current_threshold_a)?;
    Ok(qb.iter().zip(&qa).map(|(b, a)| b - a).collect())
}

/// log10 of the variance (population, ddof = 0) of ΔQ(V) between cycles `early` and `late`:
/// the single feature of Severson's "variance" model.
pub fn log10_variance_delta_q(
    cell: &Cell,
    early: u32,
    late: u32,
    current_threshold_a: f64,
) -> Result<f64> {
    let d = delta_q(cell, early, late, current_threshold_a)?;
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    if var.is_nan() || var <= 0.0 {
        return Err(Error::InvalidData {
            cell_id: cell.id().to_string(),
            cycle: Some(late),
            field: "discharge_capacity_ah".into(),
            reason: "ΔQ(V) has zero variance".into(),
        });
    }
    Ok(var.log10())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{CellMeta, Cycle};
    use approx::assert_relative_eq;

    fn linear_cycle(n: u32, cap: f64) -> Cycle {
        // V falls linearly from 3.6 to 2.0 as Q rises from 0 to cap
        let v: Vec<f64> = (0..50).map(|i| 3.6 - 1.6 * i as f64 / 49.0).collect();
        let q: Vec<f64> = (0..50).map(|i| cap * i as f64 / 49.0).collect();
        let mut c = Cycle::new(n, v);
        c.discharge_capacity_ah = Some(q);
        c
    }

    #[test]
    fn qd_of_v_inverts_a_linear_curve() {
        let q = qd_of_v(&linear_cycle(1, 1.0), 2.0, 3.6, 5, 0.1).unwrap();
        // grid 3.6, 3.2, 2.8, 2.4, 2.0 -> Q = 0, .25, .5, .75, 1
        for (got, want) in q.iter().zip([0.0, 0.25, 0.5, 0.75, 1.0]) {
            assert_relative_eq!(*got, want, epsilon = 1e-12);
        }
    }

    #[test]
    fn delta_q_variance_grows_with_fade() {
        let mut meta = CellMeta::new("c", 1.1);
        meta.voltage_min_v = Some(2.0);
        meta.voltage_max_v = Some(3.6);
        let mild = Cell::new(
            meta.clone(),
            vec![linear_cycle(10, 1.0), linear_cycle(100, 0.99)],
        );
        let strong = Cell::new(meta, vec![linear_cycle(10, 1.0), linear_cycle(100, 0.9)]);
        let a = log10_variance_delta_q(&mild, 10, 100, 0.1).unwrap();
        let b = log10_variance_delta_q(&strong, 10, 100, 0.1).unwrap();
        // variance scales with the square of the fade: 10x fade -> +2 decades
        assert_relative_eq!(b - a, 2.0, epsilon = 1e-9);
    }
}
