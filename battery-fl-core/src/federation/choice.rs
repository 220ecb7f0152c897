//! The rule both recipes' fleets choose their model by: a default model unless a challenger
//! validates better on the fleet's own cells by a clear margin. The test is a one-sided paired
//! t-test on the per-cell differences: `margin` is read as a normal quantile (the default
//! [`DEFAULT_CHOICE_MARGIN`](crate::model::DEFAULT_CHOICE_MARGIN) of 2 is a level of about
//! 2.3 %), and the mean difference must lie below minus Student's t quantile at that level
//! with `n − 1` degrees of freedom times its standard error. On many cells the bar is about
//! `margin` standard errors; on few it is higher, as the spread of a few differences is itself
//! uncertain (at margin 2: 2.2 on 16 cells, 3.3 on 4, 4.5 on 3, 14 on 2). Among challengers
//! that pass, the least mean error wins.
//!
//! The linear recipe's default is the global model (its leave-one-out error on the fleet's
//! cells is exact; [`linear`](super::linear)); BatLiNet's `auto` keeps the fleet's own model
//! unless a shared one beats it so ([`Personalization::Auto`](super::Personalization::Auto)).

/// Among `challengers` (each a candidate and its per-cell errors, aligned with `default`'s),
/// those that [`beat`](beats) `default` by `margin`; of those, the one with the least mean
/// error, else `default`. Returns the candidate and its mean error.
pub(crate) fn choose<C: Copy>(
    default: (C, &[f64]),
    challengers: &[(C, Vec<f64>)],
    margin: f64,
) -> (C, f64) {
    challengers
        .iter()
        .filter(|(_, errors)| beats(errors, default.1, margin))
        .map(|(c, errors)| (*c, mean(errors)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((default.0, mean(default.1)))
}

/// Whether per-cell errors `challenger` beat `default`: the mean paired difference lies below
/// minus [`critical_value`]`(margin, n)` standard errors. A default that fails (an infinite
/// error) where the challenger does not is beaten on any number of cells; otherwise the test
/// needs two cells. A cell where both fail makes the comparison undecidable, so the default
/// stands; differences all equal and negative beat it at any margin.
pub(crate) fn beats(challenger: &[f64], default: &[f64], margin: f64) -> bool {
    let d: Vec<f64> = challenger.iter().zip(default).map(|(a, b)| a - b).collect();
    let n = d.len();
    if n == 0 || d.iter().any(|x| x.is_nan()) {
        return false;
    }
    let m = mean(&d);
    if !m.is_finite() {
        return m < 0.0;
    }
    if n < 2 {
        return false;
    }
    let variance = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (variance / n as f64).sqrt();
    // differences equal to rounding: no spread to doubt them (an infinite bar times a zero
    // standard error would be no number)
    if se <= 1e-12 * m.abs() {
        return m < 0.0;
    }
    m < -critical_value(margin, n) * se
}

/// The bar of the paired test on `n` cells (module docs): Student's t quantile with `n − 1`
/// degrees of freedom at the one-sided level of the normal quantile `margin`; 0 for a margin
/// of 0 or less, infinite for a margin that is not a number, fewer than two cells or a level
/// beyond `f64` (a margin above about 38).
pub(crate) fn critical_value(margin: f64, n: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if margin.is_nan() || n < 2 {
        return f64::INFINITY;
    }
    if margin <= 0.0 {
        return 0.0;
    }
    // the upper tail of the normal quantile, exact far into the tail; t is symmetric, so the
    // bar is minus its quantile at that tail (no 1 − tail to round)
    let tail = 0.5 * libm::erfc(margin / std::f64::consts::SQRT_2);
    if !(tail > 0.0 && tail <= 0.5) {
        return f64::INFINITY;
    }
    StudentsT::new(0.0, 1.0, (n - 1) as f64).map_or(f64::INFINITY, |t| -t.inverse_cdf(tail))
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_error_among_challengers_that_pass_wins() {
        let default = [0.3, 0.3, 0.3, 0.3];
        let steady = vec![0.2, 0.2, 0.2, 0.21];
        let better_but_noisy = vec![0.0, 0.0, 0.0, 0.6];
        let best = vec![0.1, 0.11, 0.1, 0.1];
        let (c, e) = choose(
            ("default", &default[..]),
            &[
                ("steady", steady.clone()),
                ("noisy", better_but_noisy.clone()),
            ],
            2.0,
        );
        assert_eq!(c, "steady");
        approx::assert_relative_eq!(e, 0.2025, max_relative = 1e-12);
        let (c, _) = choose(
            ("default", &default[..]),
            &[("steady", steady), ("best", best)],
            2.0,
        );
        assert_eq!(c, "best");
        // none passes: the default and its own mean error
        let (c, e) = choose(
            ("default", &default[..]),
            &[("noisy", better_but_noisy)],
            2.0,
        );
        assert_eq!((c, e), ("default", 0.3));
    }

    #[test]
    fn the_bar_is_students_t_at_the_margins_normal_level() {
        // t quantiles at 0.97725 (the normal level of 2), by numerical integration of the
        // density: 2.181 (15 df), 3.307 (3), 4.527 (2), 13.97 (1); far more cells approach
        // the normal quantile itself
        for (n, bar) in [(16, 2.1812), (4, 3.3068), (3, 4.5265), (2, 13.9677)] {
            approx::assert_relative_eq!(critical_value(2.0, n), bar, max_relative = 1e-3);
        }
        approx::assert_relative_eq!(critical_value(2.0, 100_000), 2.0, max_relative = 1e-3);
        approx::assert_relative_eq!(critical_value(1.0, 10_001), 1.0, max_relative = 1e-3);
        assert_eq!(critical_value(0.0, 4), 0.0);
        assert!(critical_value(2.0, 5) < critical_value(2.0, 4));
        assert_eq!(critical_value(1e9, 50), f64::INFINITY);
        assert_eq!(critical_value(2.0, 1), f64::INFINITY);
        assert_eq!(critical_value(f64::NAN, 50), f64::INFINITY);
        // far tails stay finite and grow (no 1 − tail rounding to 1 at margin 8.3)
        assert!(critical_value(9.0, 50).is_finite());
        assert!(critical_value(9.0, 50) > critical_value(8.0, 50));
    }

    #[test]
    fn an_own_fit_must_beat_the_global_model_by_the_margin() {
        let global = [0.10, 0.20, 0.30, 0.40];
        // better by 0.05 on every cell: no spread, any margin passes
        let steady = [0.05, 0.15, 0.25, 0.35];
        assert!(beats(&steady, &global, 2.0));
        // better on the mean (by 0.025) but with differences of sd 0.19: a noisy gain
        let noisy = [-0.10, 0.40, 0.00, 0.50];
        assert!(beats(&noisy, &global, 0.0));
        assert!(!beats(&noisy, &global, 2.0));
        // 2.3 standard errors better on 4 cells: past a normal bar of 2, short of t's 3.3
        let fair = [0.0, -0.1, 0.1, 0.4];
        assert!(beats(&fair, &global, 1.5) && !beats(&fair, &global, 2.0));
        // one cell proves nothing; a tie is no gain
        assert!(!beats(&[0.0], &[1.0], 0.0));
        assert!(!beats(&global, &global, 0.0));
        // the global model failing on a cell the own fit predicts, on two cells or one
        assert!(beats(&[0.1, 0.1], &[0.1, f64::INFINITY], 2.0));
        assert!(beats(&[0.1], &[f64::INFINITY], 2.0));
        assert!(!beats(&[f64::INFINITY, 0.1], &[f64::INFINITY, 0.2], 0.0));
        // the same gain on every cell passes any margin, even one beyond f64's levels
        assert!(beats(&steady, &global, 50.0));
        assert!(!beats(&global, &steady, 50.0));
    }
}
