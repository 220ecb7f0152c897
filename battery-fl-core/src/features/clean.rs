//! Cleaning of difference features (method.md section 2, steps a, b, c).
//!
//! - (a) [`smooth_edges`]: on the first and the last `edge_points` grid points of each row,
//!   values whose absolute deviation from that window's median exceeds `edge_std` times the
//!   standard deviation of those deviations become 0.
//! - (b) [`remove_glitches`]: a point whose jump to its left neighbour and a point whose jump
//!   to its right neighbour exceed `glitch_std` times the row's standard deviation of jumps
//!   mark the two sides of a glitch; every point that has a left mark at most `glitch_width`
//!   points before it (or at it) and a right mark at most `glitch_width` points after it (or
//!   at it) becomes 0. A one-point spike, or a plateau of up to `glitch_width + 1` points,
//!   is zeroed; a lone step is not.
//! - (c) [`filter_cycles`]: per channel, over cycle rows, rows whose max-abs value or whose
//!   mean deviates from the median over rows by more than `cycle_std` times the standard
//!   deviation of those deviations become all 0.
//!
//! Statistics are computed in f64. As in the published (torch) code, "median" is the lower
//! median for an even count and "standard deviation" is the sample one (n − 1); with fewer
//! than 2 values a step does nothing. Deliberate differences from the published code: jumps
//! in (b) are between real neighbours only (torch's `roll` also compares the first and last
//! point of a row), and (b) does nothing on a row whose jump threshold is 0 (the published
//! code would zero a row of identical nonzero jumps, e.g. a straight line, entirely).

use serde::{Deserialize, Serialize};

use super::Features;
use crate::error::{Error, Result};

/// Parameters of the three cleaning steps. Defaults are method.md's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureCleanConfig {
    /// Grid points at each end of a row examined by edge smoothing. Default 50.
    pub edge_points: usize,
    /// Edge smoothing threshold, in standard deviations. Default 3.
    pub edge_std: f64,
    /// Points a glitch mark is widened by on each side. Default 25.
    pub glitch_width: usize,
    /// Glitch threshold, in standard deviations of the row's jumps. Default 3.
    pub glitch_std: f64,
    /// Cycle filter threshold, in standard deviations. Default 5.
    pub cycle_std: f64,
}

impl Default for FeatureCleanConfig {
    fn default() -> Self {
        FeatureCleanConfig {
            edge_points: 50,
            edge_std: 3.0,
            glitch_width: 25,
            glitch_std: 3.0,
            cycle_std: 5.0,
        }
    }
}

impl FeatureCleanConfig {
    /// Set the edge window length.
    pub fn with_edge_points(mut self, n: usize) -> Self {
        self.edge_points = n;
        self
    }
    /// Set the edge smoothing threshold.
    pub fn with_edge_std(mut self, k: f64) -> Self {
        self.edge_std = k;
        self
    }
    /// Set the glitch widening.
    pub fn with_glitch_width(mut self, n: usize) -> Self {
        self.glitch_width = n;
        self
    }
    /// Set the glitch threshold.
    pub fn with_glitch_std(mut self, k: f64) -> Self {
        self.glitch_std = k;
        self
    }
    /// Set the cycle filter threshold.
    pub fn with_cycle_std(mut self, k: f64) -> Self {
        self.cycle_std = k;
        self
    }

    /// Thresholds must be finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("clean.edge_std", self.edge_std),
            ("clean.glitch_std", self.glitch_std),
            ("clean.cycle_std", self.cycle_std),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(
                    field,
                    format!("need a finite value >= 0, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Lower median (torch's `median`) of `buf`, reordering it. `None` when empty.
fn lower_median(buf: &mut [f64]) -> Option<f64> {
    if buf.is_empty() {
        return None;
    }
    let k = (buf.len() - 1) / 2;
    let (_, m, _) = buf.select_nth_unstable_by(k, f64::total_cmp);
    Some(*m)
}

/// Sample standard deviation (n − 1). `None` for fewer than 2 values.
fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ss = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>();
    Some((ss / (n - 1.0)).sqrt())
}

/// Zero the values of `window` whose |x − median| exceeds `n_std` × std of those deviations.
fn smooth_window(window: &mut [f32], n_std: f64, buf: &mut Vec<f64>) {
    buf.clear();
    buf.extend(window.iter().map(|&v| f64::from(v)));
    let Some(med) = lower_median(buf) else { return };
    buf.clear();
    buf.extend(window.iter().map(|&v| (f64::from(v) - med).abs()));
    let Some(std) = sample_std(buf) else { return };
    let th = std * n_std;
    for (v, &d) in window.iter_mut().zip(buf.iter()) {
        if d > th {
            *v = 0.0;
        }
    }
}

/// Step (a) on one row: the first `edge_points` values, then the last `edge_points` values
/// (windows are clipped to the row; when they overlap the second sees the first's result).
pub fn smooth_edges_row(row: &mut [f32], edge_points: usize, n_std: f64) {
    let mut buf = Vec::with_capacity(edge_points.min(row.len()));
    smooth_edges_with(row, edge_points, n_std, &mut buf);
}

fn smooth_edges_with(row: &mut [f32], edge_points: usize, n_std: f64, buf: &mut Vec<f64>) {
    let e = edge_points.min(row.len());
    if e == 0 {
        return;
    }
    smooth_window(&mut row[..e], n_std, buf);
    let n = row.len();
    smooth_window(&mut row[n - e..], n_std, buf);
}

/// Step (a), edge smoothing, on every row.
pub fn smooth_edges(features: &mut Features, config: &FeatureCleanConfig) {
    let mut buf = Vec::with_capacity(config.edge_points.min(features.interp_dim()));
    for row in features.rows_mut() {
        smooth_edges_with(row, config.edge_points, config.edge_std, &mut buf);
    }
}

/// Step (b) on one row; see the module docs for the exact rule.
pub fn remove_glitches_row(row: &mut [f32], width: usize, n_std: f64) {
    let mut jumps = Vec::with_capacity(row.len());
    let mut next_right = Vec::with_capacity(row.len());
    remove_glitches_with(row, width, n_std, &mut jumps, &mut next_right);
}

fn remove_glitches_with(
    row: &mut [f32],
    width: usize,
    n_std: f64,
    jumps: &mut Vec<f64>,
    next_right: &mut Vec<usize>,
) {
    let n = row.len();
    jumps.clear();
    jumps.extend(
        row.windows(2)
            .map(|w| (f64::from(w[1]) - f64::from(w[0])).abs()),
    );
    let Some(std) = sample_std(jumps) else { return };
    let th = std * n_std;
    if th.is_nan() || th <= 0.0 {
        return;
    }
    // jumps[k] is between points k and k + 1: a right mark at k and a left mark at k + 1.
    // next_right[i] = nearest k >= i with a right mark (usize::MAX if none)
    next_right.clear();
    next_right.resize(n, usize::MAX);
    let mut next = usize::MAX;
    for i in (0..n).rev() {
        if jumps.get(i).is_some_and(|&d| d > th) {
            next = i;
        }
        next_right[i] = next;
    }
    let mut last_left: Option<usize> = None;
    for i in 0..n {
        if i >= 1 && jumps[i - 1] > th {
            last_left = Some(i);
        }
        let left_ok = last_left.is_some_and(|l| i - l <= width);
        let right_ok = next_right[i] != usize::MAX && next_right[i] - i <= width;
        if left_ok && right_ok {
            row[i] = 0.0;
        }
    }
}

/// Step (b), glitch removal, on every row.
pub fn remove_glitches(features: &mut Features, config: &FeatureCleanConfig) {
    let n = features.interp_dim();
    let (mut jumps, mut next_right) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for row in features.rows_mut() {
        remove_glitches_with(
            row,
            config.glitch_width,
            config.glitch_std,
            &mut jumps,
            &mut next_right,
        );
    }
}

/// Mark rows whose statistic deviates from the median by more than `n_std` × std.
fn mark_outliers(stat: &[f64], n_std: f64, buf: &mut Vec<f64>, mask: &mut [bool]) {
    buf.clear();
    buf.extend_from_slice(stat);
    let Some(med) = lower_median(buf) else { return };
    buf.clear();
    buf.extend(stat.iter().map(|s| (s - med).abs()));
    let Some(std) = sample_std(buf) else { return };
    for (m, &d) in mask.iter_mut().zip(buf.iter()) {
        if d > std * n_std {
            *m = true;
        }
    }
}

/// Step (c), cycle filter: per channel, zero whole cycle rows whose max-abs value or mean is
/// an outlier over the channel's rows.
pub fn filter_cycles(features: &mut Features, config: &FeatureCleanConfig) {
    for_each_outlier_mask(features, config, |features, c, mask| {
        for (r, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
            if let Some(row) = features.get_row_mut(c, r) {
                row.fill(0.0);
            }
        }
    });
}

/// Step (c) for raw curves (the inputs of inter-cell differences): the rows the cycle filter
/// flags are replaced by the nearest kept row of the same channel (the earlier one on a tie),
/// as the featurizer fills a missing cycle, instead of zero.
///
/// A zero row is right for a difference feature (no change) but not for a raw curve: a
/// zeroed raw row turns `target - reference` into `-reference` (volts instead of
/// millivolts) for that cycle, and branch B then reads one corrupted cycle as a cell far
/// outside anything it was trained on. The published code avoids this by cleaning every
/// target-minus-reference difference again; replacing the row keeps branch B's input
/// `f(target) - f(reference)` (so the first convolution can still be shared across pairs).
/// When every row of a channel is flagged the channel is zeroed.
pub fn filter_cycles_fill(features: &mut Features, config: &FeatureCleanConfig) {
    for_each_outlier_mask(features, config, |features, c, mask| {
        let kept: Vec<usize> = (0..mask.len()).filter(|&r| !mask[r]).collect();
        for r in (0..mask.len()).filter(|&r| mask[r]) {
            let nearest = kept.iter().copied().min_by_key(|&k| (k.abs_diff(r), k));
            let source = nearest
                .and_then(|k| features.get_row(c, k))
                .map(<[f32]>::to_vec);
            if let Some(row) = features.get_row_mut(c, r) {
                match source {
                    Some(src) => row.copy_from_slice(&src),
                    None => row.fill(0.0),
                }
            }
        }
    });
}

/// Run the cycle filter's outlier test per channel and hand each channel's row mask to `act`.
fn for_each_outlier_mask(
    features: &mut Features,
    config: &FeatureCleanConfig,
    mut act: impl FnMut(&mut Features, usize, &[bool]),
) {
    let [channels, cycles, dim] = features.shape();
    if cycles < 2 || dim == 0 {
        return;
    }
    let (mut max_abs, mut mean) = (vec![0.0; cycles], vec![0.0; cycles]);
    let mut buf = Vec::with_capacity(cycles);
    let mut mask = vec![false; cycles];
    for c in 0..channels {
        for r in 0..cycles {
            let Some(row) = features.get_row(c, r) else {
                continue;
            };
            max_abs[r] = row.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
            mean[r] = row.iter().map(|&v| f64::from(v)).sum::<f64>() / dim as f64;
        }
        mask.fill(false);
        mark_outliers(&max_abs, config.cycle_std, &mut buf, &mut mask);
        mark_outliers(&mean, config.cycle_std, &mut buf, &mut mask);
        if mask.iter().any(|&m| m) {
            act(features, c, &mask);
        }
    }
}

/// Steps (a), (b) and (c) in the published order.
pub fn clean_all(features: &mut Features, config: &FeatureCleanConfig) {
    smooth_edges(features, config);
    remove_glitches(features, config);
    filter_cycles(features, config);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn median_and_std_follow_torch() {
        assert_eq!(lower_median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(lower_median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(lower_median(&mut []), None);
        let s = sample_std(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(sample_std(&[1.0]), None);
    }

    #[test]
    fn edge_outlier_is_zeroed_only_in_the_edge() {
        let mut row: Vec<f32> = (0..200).map(|k| 1.0 + 0.001 * k as f32).collect();
        row[3] = 50.0; // in the first 50
        row[100] = 50.0; // middle: untouched by (a)
        row[190] = -40.0; // in the last 50
        smooth_edges_row(&mut row, 50, 3.0);
        assert_eq!(row[3], 0.0);
        assert_eq!(row[100], 50.0);
        assert_eq!(row[190], 0.0);
        assert_eq!(row.iter().filter(|&&v| v == 0.0).count(), 2);
    }

    #[test]
    fn spike_and_short_plateau_are_removed_step_is_kept() {
        let mut row: Vec<f32> = (0..300).map(|k| (k as f32 * 0.05).sin()).collect();
        let orig = row.clone();
        row[50] += 10.0; // spike
        for v in &mut row[150..160] {
            *v += 8.0; // plateau of 10 points
        }
        remove_glitches_row(&mut row, 25, 3.0);
        for (k, (&a, &b)) in row.iter().zip(&orig).enumerate() {
            if k == 50 || (150..160).contains(&k) {
                assert_eq!(a, 0.0, "point {k}");
            } else {
                assert_eq!(a, b, "point {k}");
            }
        }
        // a single step has a left mark but no right mark within reach after it
        let mut step: Vec<f32> = (0..300).map(|k| if k < 150 { 0.0 } else { 5.0 }).collect();
        let before = step.clone();
        remove_glitches_row(&mut step, 25, 3.0);
        assert_eq!(step, before);
    }

    #[test]
    fn straight_line_is_left_alone() {
        let mut row: Vec<f32> = (0..100).map(|k| k as f32).collect();
        let before = row.clone();
        remove_glitches_row(&mut row, 25, 3.0);
        assert_eq!(row, before);
    }

    /// A discharge-like V(Q) curve for cycle `r` (slowly fading), `w` points.
    fn curve(r: usize, w: usize) -> Vec<f32> {
        (0..w)
            .map(|k| 3.3 - 0.8 * (k as f32 / w as f32).powi(3) - 0.001 * r as f32)
            .collect()
    }

    fn cell(rows: usize, w: usize, corrupt: &[usize]) -> Features {
        let mut data = Vec::with_capacity(rows * w);
        for r in 0..rows {
            if corrupt.contains(&r) {
                data.extend(std::iter::repeat_n(9.0f32, w)); // a broken cycle
            } else {
                data.extend(curve(r, w));
            }
        }
        Features::from_vec(data, [1, rows, w]).unwrap()
    }

    #[test]
    fn fill_replaces_a_flagged_raw_cycle_by_its_nearest_kept_cycle() {
        let cfg = FeatureCleanConfig::default();
        // 99 cycles as in the method's window (with a few broken cycles among 30 the 5-sigma
        // test no longer flags them: their own deviations inflate the sigma)
        let mut zeroed = cell(99, 40, &[10, 50, 51]);
        filter_cycles(&mut zeroed, &cfg);
        assert!(zeroed.row(0, 10).iter().all(|&v| v == 0.0));

        let mut filled = cell(99, 40, &[10, 50, 51]);
        filter_cycles_fill(&mut filled, &cfg);
        assert_eq!(filled.row(0, 10), curve(9, 40).as_slice()); // tie 9/11: the earlier
        assert_eq!(filled.row(0, 50), curve(49, 40).as_slice());
        assert_eq!(filled.row(0, 51), curve(52, 40).as_slice());
        assert_eq!(filled.row(0, 5), curve(5, 40).as_slice()); // kept rows untouched

        // the target-minus-reference difference stays at the millivolt scale of real
        // cell-to-cell differences, where the zero fill gives volts on the broken cycle
        let mut reference = cell(99, 40, &[]);
        filter_cycles_fill(&mut reference, &cfg);
        let max_abs = |f: &Features| {
            f.as_slice()
                .iter()
                .zip(reference.as_slice())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        };
        assert!(max_abs(&filled) < 0.01, "{}", max_abs(&filled));
        assert!(max_abs(&zeroed) > 2.0);
    }

    #[test]
    fn fill_leaves_a_single_cycle_alone() {
        // a single row is never an outlier: nothing to flag, nothing changes
        let mut one = cell(1, 10, &[]);
        let before = one.clone();
        filter_cycles_fill(&mut one, &FeatureCleanConfig::default());
        assert_eq!(one, before);
    }
}
