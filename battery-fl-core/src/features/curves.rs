//! Interpolation of the six channels (see the module docs of [`crate::features`]).
//!
//! One call of [`featurize_into`] handles one cell: it owns a [`Scratch`] of point buffers and
//! f64 rows that every cycle reuses, and writes each cycle straight into the preallocated
//! output. Nothing is allocated per grid point.

use std::cmp::Ordering;

use super::FeaturizerConfig;
use crate::data::{Cell, Cycle};
use crate::error::{Error, Result};

/// Added to the current difference in the denominator of R(Q).
const R_EPS: f64 = 1e-3;

/// `n` points evenly spaced from `start` to `stop` inclusive, computed as `numpy.linspace`
/// does (`i * step + start`, last point set to `stop`), so grids agree bit for bit.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    out[n - 1] = stop;
    out
}

/// A sample kept for a curve: (normalized capacity, voltage, current).
type Point = [f64; 3];
const X: usize = 0;
const V: usize = 1;
const I: usize = 2;

/// Reused buffers of one featurization call.
struct Scratch {
    charge: Vec<Point>,
    discharge: Vec<Point>,
    /// f64 curves ch0..ch3 of the current cycle.
    rows: [Vec<f64>; 4],
}

/// Which curves of a cycle come from recorded signals.
#[derive(Clone, Copy)]
struct Present {
    /// Current and charge capacity: ch0, ch2.
    charge: bool,
    /// Discharge capacity: ch1.
    discharge: bool,
    /// Discharge capacity and current: ch3.
    discharge_current: bool,
}

/// Featurize `cell` into `out` (length `6 * cycles * interp_dim`, C order). Every element is
/// written (rows of missing cycles are zeroed), so `out` need not be initialized to zero.
pub(crate) fn featurize_into(
    cell: &Cell,
    config: &FeaturizerConfig,
    grid: &[f64],
    out: &mut [f32],
) -> Result<()> {
    let nominal = cell.meta.nominal_capacity_ah;
    if !(nominal.is_finite() && nominal > 0.0) {
        return Err(Error::InvalidData {
            cell_id: cell.id().to_string(),
            cycle: None,
            field: "nominal_capacity_ah".into(),
            reason: format!("must be positive and finite, got {nominal}"),
        });
    }
    let (n_rows, dim, got) = (config.cycles, grid.len(), out.len());
    let shape_err = || Error::Shape {
        what: "featurizer output buffer".into(),
        expected: vec![super::CHANNELS * n_rows * dim],
        got: vec![got],
    };
    if dim == 0 || got != super::CHANNELS * n_rows * dim {
        return Err(shape_err());
    }

    // row -> index into cell.cycles (first occurrence of each cycle number)
    let mut row_of: Vec<Option<usize>> = vec![None; n_rows];
    for (idx, cycle) in cell.cycles.iter().enumerate() {
        if let Some(r) = cycle.cycle.checked_sub(config.first_cycle) {
            if let Some(slot) = row_of.get_mut(r as usize) {
                slot.get_or_insert(idx);
            }
        }
    }

    if config.fill_missing_cycles {
        let present: Vec<(usize, usize)> = row_of
            .iter()
            .enumerate()
            .filter_map(|(r, i)| i.map(|i| (r, i)))
            .collect();
        for (r, slot) in row_of.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = present
                    .iter()
                    .min_by_key(|(p, _)| (p.abs_diff(r), *p))
                    .map(|&(_, i)| i);
            }
        }
    }

    let mut scratch = Scratch {
        charge: Vec::new(),
        discharge: Vec::new(),
        rows: std::array::from_fn(|_| vec![0.0; dim]),
    };
    for (r, idx) in row_of.iter().enumerate() {
        let mut rows = out
            .chunks_exact_mut(n_rows * dim)
            .filter_map(|block| block.get_mut(r * dim..(r + 1) * dim));
        let mut next = || rows.next().ok_or_else(shape_err);
        let outs = [next()?, next()?, next()?, next()?, next()?, next()?];
        let Some(cycle) = idx.and_then(|i| cell.cycles.get(i)) else {
            outs.into_iter().for_each(|o| o.fill(0.0));
            continue;
        };
        check_lengths(cell, cycle)?;
        let present = cycle_curves(cycle, nominal, config, grid, &mut scratch);
        write_cycle(&scratch.rows, present, outs);
    }
    Ok(())
}

fn nan_to_zero(v: f64) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v as f32
    }
}

/// Store ch0..ch3 and compute ch4, ch5 (in f64) straight into the six output rows.
fn write_cycle(curves: &[Vec<f64>; 4], present: Present, outs: [&mut [f32]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = outs;
    let n = o0.len();
    let [c0, c1, c2, c3] = curves;
    let (c0, c1, c2, c3) = (&c0[..n], &c1[..n], &c2[..n], &c3[..n]);
    for (o, c) in [(o0, c0), (o1, c1), (o2, c2), (o3, c3)] {
        for (d, &s) in o[..n].iter_mut().zip(c) {
            *d = nan_to_zero(s);
        }
    }
    let o4 = &mut o4[..n];
    if present.charge && present.discharge {
        for k in 0..n {
            o4[k] = nan_to_zero(c0[k] - c1[n - 1 - k]);
        }
    } else {
        o4.fill(0.0);
    }
    let o5 = &mut o5[..n];
    if present.charge && present.discharge_current {
        for k in 0..n {
            o5[k] = nan_to_zero((c0[k] - c1[n - 1 - k]) / (c2[k] - c3[n - 1 - k] + R_EPS));
        }
    } else {
        o5.fill(0.0);
    }
}

fn check_lengths(cell: &Cell, cycle: &Cycle) -> Result<()> {
    let n = cycle.voltage_v.len();
    for (name, series) in [
        ("current_a", cycle.current_a.as_deref()),
        ("charge_capacity_ah", cycle.charge_capacity_ah.as_deref()),
        (
            "discharge_capacity_ah",
            cycle.discharge_capacity_ah.as_deref(),
        ),
    ] {
        if let Some(s) = series {
            if s.len() != n {
                return Err(Error::InvalidData {
                    cell_id: cell.id().to_string(),
                    cycle: Some(cycle.cycle),
                    field: name.into(),
                    reason: format!("{} samples but voltage_v has {n}", s.len()),
                });
            }
        }
    }
    Ok(())
}

/// Compute the f64 curves ch0..ch3 of one cycle into `scratch.rows` (absent ones are 0).
fn cycle_curves(
    cycle: &Cycle,
    nominal: f64,
    config: &FeaturizerConfig,
    grid: &[f64],
    scratch: &mut Scratch,
) -> Present {
    let (q_min, q_max, thr) = (config.q_min, config.q_max, config.current_threshold_a);
    let v = &cycle.voltage_v;
    let current = cycle.current_a.as_deref();
    let qc = cycle.charge_capacity_ah.as_deref();
    let qd = cycle.discharge_capacity_ah.as_deref();
    let in_range = |x: f64| x >= q_min && x <= q_max;

    let Scratch {
        charge,
        discharge,
        rows,
    } = scratch;
    let [ch0, ch1, ch2, ch3] = rows;

    // kept points go to the front of buffers at least as long as the cycle (grown, never
    // shrunk, so no per-cycle reallocation or push bookkeeping)
    let n = v.len();
    for buf in [&mut *charge, &mut *discharge] {
        if buf.len() < n {
            buf.resize(n, [0.0; 3]);
        }
    }
    let (mut nc, mut nd) = (0usize, 0usize);
    let has_charge = current.is_some() && qc.is_some();
    match (current, qc, qd) {
        // full record: one pass over the samples
        (Some(i), Some(qc), Some(qd)) => {
            for (((&vk, &ik), &qck), &qdk) in v.iter().zip(i).zip(qc).zip(qd) {
                if ik > thr {
                    let x = qck / nominal;
                    if in_range(x) {
                        if let Some(p) = charge.get_mut(nc) {
                            *p = [x, vk, ik];
                            nc += 1;
                        }
                    }
                } else if ik < -thr {
                    let x = qdk / nominal;
                    if in_range(x) {
                        if let Some(p) = discharge.get_mut(nd) {
                            *p = [x, vk, ik];
                            nd += 1;
                        }
                    }
                }
            }
        }
        // charge points need current and charge capacity
        (Some(i), Some(q), None) => {
            for ((&vk, &ik), &qk) in v.iter().zip(i).zip(q) {
                let x = qk / nominal;
                if ik > thr && in_range(x) {
                    if let Some(p) = charge.get_mut(nc) {
                        *p = [x, vk, ik];
                        nc += 1;
                    }
                }
            }
        }
        // discharge points need discharge capacity
        (Some(i), None, Some(q)) => {
            for ((&vk, &ik), &qk) in v.iter().zip(i).zip(q) {
                let x = qk / nominal;
                if ik < -thr && in_range(x) {
                    if let Some(p) = discharge.get_mut(nd) {
                        *p = [x, vk, ik];
                        nd += 1;
                    }
                }
            }
        }
        // without current every sample is a discharge point
        (None, _, Some(q)) => {
            for (&vk, &qk) in v.iter().zip(q) {
                let x = qk / nominal;
                if in_range(x) {
                    if let Some(p) = discharge.get_mut(nd) {
                        *p = [x, vk, f64::NAN];
                        nd += 1;
                    }
                }
            }
        }
        (_, _, None) => {}
    }
    let charge = &mut charge[..nc];
    let discharge = &mut discharge[..nd];
    let present = Present {
        charge: has_charge,
        discharge: qd.is_some(),
        discharge_current: qd.is_some() && current.is_some(),
    };

    if has_charge {
        sort_stable(charge);
        let (lo, hi) = min_max(charge, V);
        interp_cols(charge, [V, I], grid, [(lo, hi), (0.0, 0.0)], [ch0, ch2]);
    } else {
        ch0.fill(0.0);
        ch2.fill(0.0);
    }
    if present.discharge {
        sort_stable(discharge);
        let (lo, hi) = min_max(discharge, V);
        if present.discharge_current {
            interp_cols(discharge, [V, I], grid, [(hi, lo), (0.0, 0.0)], [ch1, ch3]);
        } else {
            interp_cols(discharge, [V], grid, [(hi, lo)], [ch1]);
            ch3.fill(0.0);
        }
    } else {
        ch1.fill(0.0);
        ch3.fill(0.0);
    }
    present
}

/// Stable sort by capacity, skipped when already sorted (the usual case). Capacities are
/// finite here (NaN fails the range test), so `partial_cmp` is total and treats -0.0 == 0.0
/// as numpy's mergesort does.
fn sort_stable(points: &mut [Point]) {
    if points.windows(2).all(|w| w[0][X] <= w[1][X]) {
        return;
    }
    points.sort_by(|a, b| a[X].partial_cmp(&b[X]).unwrap_or(Ordering::Equal));
}

/// numpy-style min and max of one column: NaN when any value is NaN.
fn min_max(points: &[Point], col: usize) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        let y = p[col];
        if y.is_nan() {
            return (f64::NAN, f64::NAN);
        }
        lo = lo.min(y);
        hi = hi.max(y);
    }
    (lo, hi)
}

/// `interp1d(x, y_c, kind="linear", bounds_error=False, fill_value=fills[c])(grid)` for `N`
/// columns `y_c` sharing the sorted x of `points`, on an ascending grid; all zeros when there
/// are `<= 2` points (method.md). Inside `[x_first, x_last]` this is `numpy.interp`: the
/// interval is found by the last point with `x <= g`, an exact hit takes that point's value,
/// and the slope form `slope * (g - x_j) + y_j` (with numpy's NaN fallbacks) is used, so
/// results agree to the last bit. Slopes are computed once per interval.
fn interp_cols<const N: usize>(
    points: &[Point],
    cols: [usize; N],
    grid: &[f64],
    fills: [(f64, f64); N],
    outs: [&mut Vec<f64>; N],
) {
    let n = points.len();
    let dim = grid.len();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        outs.into_iter().for_each(|o| o.fill(0.0));
        return;
    };
    if n <= 2 || outs.iter().any(|o| o.len() != dim) {
        outs.into_iter().for_each(|o| o.fill(0.0));
        return;
    }
    let (x_first, x_last) = (first[X], last[X]);
    // left of the samples
    let mut k = grid.partition_point(|&g| g < x_first);
    for c in 0..N {
        outs[c][..k].fill(fills[c].0);
    }
    // inside: one interval [x_j, x_j+1) at a time
    let mut j = 0usize;
    while k < dim && grid[k] <= x_last {
        let g = grid[k];
        while j + 1 < n && points[j + 1][X] <= g {
            j += 1;
        }
        let pj = &points[j];
        if j + 1 == n {
            // g == x_last
            for c in 0..N {
                outs[c][k] = pj[cols[c]];
            }
            k += 1;
            continue;
        }
        let pk = &points[j + 1];
        let (xj, xk) = (pj[X], pk[X]);
        let mut end = k + 1;
        while end < dim && grid[end] < xk {
            end += 1;
        }
        for c in 0..N {
            let (yj, yk) = (pj[cols[c]], pk[cols[c]]);
            let slope = (yk - yj) / (xk - xj);
            let (out, gs) = (&mut outs[c][k..end], &grid[k..end]);
            if slope.is_finite() && yj.is_finite() {
                // no NaN possible; an exact hit g == x_j gives slope * 0 + y_j == y_j
                for (o, &g) in out.iter_mut().zip(gs) {
                    *o = slope * (g - xj) + yj;
                }
            } else {
                for (o, &g) in out.iter_mut().zip(gs) {
                    *o = if g == xj {
                        yj
                    } else {
                        let y = slope * (g - xj) + yj;
                        if !y.is_nan() {
                            y
                        } else {
                            let y = slope * (g - xk) + yk;
                            if y.is_nan() && yj == yk {
                                yj
                            } else {
                                y
                            }
                        }
                    };
                }
            }
        }
        k = end;
    }
    // right of the samples
    for c in 0..N {
        outs[c][k..].fill(fills[c].1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn pts(xy: &[(f64, f64)]) -> Vec<Point> {
        xy.iter().map(|&(x, y)| [x, y, 0.0]).collect()
    }

    fn run(p: &[Point], grid: &[f64], fill: (f64, f64)) -> Vec<f64> {
        let mut out = vec![f64::NAN; grid.len()];
        interp_cols(p, [V], grid, [fill], [&mut out]);
        out
    }

    #[test]
    fn linspace_matches_numpy_rule() {
        let g = linspace(0.0, 1.2, 1000);
        assert_eq!(g.len(), 1000);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[999], 1.2);
        assert_eq!(g[500], 500.0 * (1.2 / 999.0));
        assert_eq!(linspace(2.0, 3.0, 1), vec![2.0]);
        assert!(linspace(0.0, 1.0, 0).is_empty());
    }

    #[test]
    fn interpolates_inside_and_fills_outside() {
        let p = pts(&[(0.2, 1.0), (0.4, 3.0), (0.6, 2.0)]);
        let grid = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8];
        let out = run(&p, &grid, (-1.0, -2.0));
        let want = [-1.0, 1.0, 2.0, 3.0, 2.5, 2.0, -2.0];
        for (a, b) in out.iter().zip(want) {
            assert_relative_eq!(*a, b, epsilon = 1e-12);
        }
    }

    #[test]
    fn duplicates_follow_numpy_interp() {
        // x = 0.5 appears twice: left interval ends at its first value, right starts at its last
        let p = pts(&[(0.0, 0.0), (0.5, 1.0), (0.5, 3.0), (1.0, 5.0)]);
        let out = run(&p, &[0.25, 0.5, 0.75], (0.0, 0.0));
        assert_relative_eq!(out[0], 0.5, epsilon = 1e-12);
        assert_eq!(out[1], 3.0);
        assert_relative_eq!(out[2], 4.0, epsilon = 1e-12);
    }

    #[test]
    fn stable_sort_keeps_duplicate_order() {
        let mut p = pts(&[(0.5, 1.0), (0.1, 0.0), (0.5, 2.0), (0.3, 9.0)]);
        sort_stable(&mut p);
        let ys: Vec<f64> = p.iter().map(|q| q[V]).collect();
        assert_eq!(ys, vec![0.0, 9.0, 1.0, 2.0]);
    }

    #[test]
    fn nan_propagates_like_numpy() {
        let p = pts(&[(0.0, 1.0), (0.5, f64::NAN), (1.0, 2.0)]);
        assert!(min_max(&p, V).0.is_nan());
        let out = run(&p, &[0.0, 0.25, 0.75, 1.0], (0.0, 0.0));
        assert_eq!(out[0], 1.0);
        assert!(out[1].is_nan() && out[2].is_nan());
        assert_eq!(out[3], 2.0);
    }
}
