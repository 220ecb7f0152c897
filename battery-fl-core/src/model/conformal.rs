//! Split-conformal quantiles and robust spreads shared by the linear and BatLiNet intervals.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The coverage intervals are reported at unless asked otherwise (the main job, Flower).
pub const DEFAULT_COVERAGE: f64 = 0.9;

/// The split-conformal quantile of ascending `scores` at `coverage`: the
/// `⌈(n + 1) c⌉`-th smallest score. With `n` exchangeable calibration scores a new score lies
/// at or below it with probability at least `c`. Needs at least `c / (1 − c)` scores (9 for
/// 90 %).
///
/// ```
/// # use battery_fl_core::model::conformal_quantile;
/// let scores: Vec<f64> = (1..=19).map(f64::from).collect();
/// assert_eq!(conformal_quantile(&scores, 0.9)?, 18.0); // ⌈20 · 0.9⌉ = 18
/// assert!(conformal_quantile(&scores[..5], 0.9).is_err()); // 5 cells cannot give 90 %
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
pub fn conformal_quantile(scores: &[f64], coverage: f64) -> Result<f64> {
    if !(coverage > 0.0 && coverage < 1.0) {
        return Err(Error::config(
            "coverage",
            format!("must lie in (0, 1), got {coverage}"),
        ));
    }
    let n = scores.len();
    let rank = |n: usize| ((n as f64 + 1.0) * coverage).ceil() as usize;
    let k = rank(n);
    if k > n || k == 0 {
        // the fewest cells with a finite quantile: about c / (1 − c), settled exactly in
        // floating point by a step or two from just below it
        let mut needed = ((coverage / (1.0 - coverage)).floor() as usize)
            .saturating_sub(1)
            .max(1);
        while rank(needed) > needed && needed < usize::MAX / 2 {
            needed += 1;
        }
        return Err(Error::NotEnoughData {
            what: format!("calibration cells for {:.0} % intervals", 100.0 * coverage),
            needed,
            got: n,
        });
    }
    Ok(scores[k - 1])
}

/// Consistency factor of the median absolute deviation for a normal distribution
/// (`1 / Φ⁻¹(3/4)`): `MAD_FACTOR · MAD` estimates the standard deviation.
pub const MAD_FACTOR: f64 = 1.482_602_218_505_602;

/// The median absolute deviation from the median, times [`MAD_FACTOR`] (0 for fewer than two
/// values): a spread that one wild value cannot inflate.
pub fn robust_spread(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mut v = values.to_vec();
    let m = median_in_place(&mut v);
    let mut dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    MAD_FACTOR * median_in_place(&mut dev)
}

/// Median (mean of the two middle values for an even count; NaN when empty), sorting `v`.
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// How a set of intervals did on cells: what a fleet reports of its own test cells (the
/// main job, a Flower node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// Share of the labelled cells whose life lies inside its interval (0 without one).
    pub covered: f64,
    /// Labelled cells: those `covered` is over.
    pub labelled: usize,
    /// Mean width of the intervals (cycles) over every cell (0 without cells).
    pub mean_width: f64,
    /// Cells flagged out of distribution.
    pub flagged: usize,
    /// Cells.
    pub cells: usize,
}

impl IntervalSummary {
    /// The summary of intervals `[lower, upper]` with out-of-distribution `flagged` on cells
    /// of known `lives` (`None` or a non-finite value: a cell without a known life, which
    /// neither covers nor misses).
    ///
    /// ```
    /// use battery_fl_core::model::IntervalSummary;
    /// let s = IntervalSummary::of(&[90.0, 10.0, 0.0], &[110.0, 20.0, 5.0], &[false, true, false],
    ///                             &[Some(100.0), Some(30.0), None])?;
    /// assert_eq!((s.covered, s.labelled, s.flagged, s.cells), (0.5, 2, 1, 3));
    /// assert!((s.mean_width - 35.0 / 3.0).abs() < 1e-12);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shape`] when the four slices differ in length.
    pub fn of(
        lower: &[f64],
        upper: &[f64],
        flagged: &[bool],
        lives: &[Option<f64>],
    ) -> Result<Self> {
        let cells = lives.len();
        for (what, len) in [
            ("lower", lower.len()),
            ("upper", upper.len()),
            ("flagged", flagged.len()),
        ] {
            if len != cells {
                return Err(Error::Shape {
                    what: format!("interval {what} (one per cell)"),
                    expected: vec![cells],
                    got: vec![len],
                });
            }
        }
        let known = |y: &Option<f64>| y.filter(|y| y.is_finite());
        let labelled = lives.iter().filter(|y| known(y).is_some()).count();
        let inside = lives
            .iter()
            .zip(lower.iter().zip(upper))
            .filter(|(y, (lo, hi))| known(y).is_some_and(|y| (**lo..=**hi).contains(&y)))
            .count();
        let ratio = |a: f64, n: usize| if n == 0 { 0.0 } else { a / n as f64 };
        Ok(IntervalSummary {
            covered: ratio(inside as f64, labelled),
            labelled,
            mean_width: ratio(upper.iter().zip(lower).map(|(h, l)| h - l).sum(), cells),
            flagged: flagged.iter().filter(|f| **f).count(),
            cells,
        })
    }

    /// Several summaries (fleets) as one over all their cells: coverage weighted by labelled
    /// cells, width by cells, counts summed.
    ///
    /// ```
    /// use battery_fl_core::model::IntervalSummary;
    /// let a = IntervalSummary::of(&[0.0; 2], &[10.0; 2], &[false, true], &[Some(5.0), Some(50.0)])?;
    /// let b = IntervalSummary::of(&[0.0], &[40.0], &[false], &[Some(5.0)])?;
    /// let all = IntervalSummary::pooled(&[a, b]);
    /// assert_eq!((all.labelled, all.flagged, all.cells), (3, 1, 3));
    /// assert!((all.covered - 2.0 / 3.0).abs() < 1e-12 && (all.mean_width - 20.0).abs() < 1e-12);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn pooled(parts: &[IntervalSummary]) -> IntervalSummary {
        let sum = |f: fn(&IntervalSummary) -> f64| parts.iter().map(f).sum::<f64>();
        let labelled = parts.iter().map(|p| p.labelled).sum();
        let cells = parts.iter().map(|p| p.cells).sum();
        let ratio = |a: f64, n: usize| if n == 0 { 0.0 } else { a / n as f64 };
        IntervalSummary {
            // (each part's covered cells are a whole number: rounded, the pool is exact)
            covered: ratio(sum(|p| (p.covered * p.labelled as f64).round()), labelled),
            labelled,
            mean_width: ratio(sum(|p| p.mean_width * p.cells as f64), cells),
            flagged: parts.iter().map(|p| p.flagged).sum(),
            cells,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn robust_spread_ignores_one_wild_value_and_estimates_sigma() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        // median 3, deviations 2 1 0 1 2 -> MAD 1
        assert_relative_eq!(robust_spread(&v), MAD_FACTOR, epsilon = 1e-12);
        let wild = [1.0, 2.0, 3.0, 4.0, 500.0];
        assert_relative_eq!(robust_spread(&wild), MAD_FACTOR, epsilon = 1e-12);
        assert_eq!(robust_spread(&[7.0]), 0.0);
    }

    #[test]
    fn quantile_refuses_bad_coverage() {
        let s = [1.0; 20];
        assert!(conformal_quantile(&s, 1.0).is_err());
        assert!(conformal_quantile(&s, 0.0).is_err());
        assert!(conformal_quantile(&s, f64::NAN).is_err());
        assert_relative_eq!(conformal_quantile(&s, 0.5).unwrap(), 1.0);
        // a coverage a hair below 1 asks for a trillion cells, at once
        assert!(matches!(
            conformal_quantile(&s, 1.0 - 1e-12),
            Err(crate::Error::NotEnoughData { needed, .. }) if needed > 900_000_000_000
        ));
    }

    #[test]
    fn an_interval_summary_counts_labelled_cells_and_refuses_ragged_input() {
        let s = IntervalSummary::of(&[], &[], &[], &[]).unwrap();
        assert_eq!(
            (s.covered, s.labelled, s.mean_width, s.cells),
            (0.0, 0, 0.0, 0)
        );
        // a NaN life is no life; the bounds themselves are inside
        let s = IntervalSummary::of(
            &[1.0, 1.0],
            &[2.0, 2.0],
            &[false; 2],
            &[Some(2.0), Some(f64::NAN)],
        )
        .unwrap();
        assert_eq!((s.covered, s.labelled), (1.0, 1));
        assert!(matches!(
            IntervalSummary::of(&[1.0], &[2.0, 3.0], &[false], &[None]),
            Err(Error::Shape { .. })
        ));
    }
}
