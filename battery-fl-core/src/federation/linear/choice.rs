//! Which model a fleet of a linear federation keeps: the federation's global model unless one
//! of its own fits validates better on its cells by a clear margin.
//!
//! The fleet scores each candidate by a held-out squared ln-life error per training cell: its
//! own fits (local, and the ridge toward the other fleets' model) by the nested leave-one-out
//! error of their whole selection, the global model by the fit on every fleet's cells but
//! that one. An own fit replaces the global model only if the mean of the paired differences
//! (own minus global) lies below `-margin` standard errors of that mean
//! ([`LinearConfig::choice_margin`](crate::model::LinearConfig::choice_margin)). Among own fits
//! that pass, the one with the least mean error is kept.
//!
//! Why a margin, and why the global model is the default: on 16 or so cells the least of
//! several noisy errors picks a fleet's own fit by chance, and an own fit extrapolates on new
//! cells unlike its few training ones, where the global model has seen more. On 40 draws of
//! the demo fleets scored on 200 fresh cells per fleet (BENCHMARKS.md, session 22), the
//! least-error rule ended at 0.92x the local models' RMSE, with some fleet above 1.05x its
//! local model in 16 of 40 draws; at a margin of 2 it ends at 0.82x, in 10 of 40.

use crate::model::LinearRow;

use super::LinearChoice;

/// Default of [`LinearConfig::choice_margin`](crate::model::LinearConfig::choice_margin):
/// standard errors of the paired per-cell differences by which an own fit must beat the
/// global model. Chosen on draws of the demo fleets other than the benchmark's (data seeds
/// 100-139; BENCHMARKS.md, session 22).
pub const DEFAULT_CHOICE_MARGIN: f64 = 2.0;

/// The choice over the fleet's `rows` that `keep` selects, from per-cell held-out errors of
/// the global model (`global`) and of each own fit (`own`, aligned with `rows`), and the
/// chosen model's mean error over those cells.
pub(super) fn choose(
    rows: &[LinearRow],
    keep: &dyn Fn(&LinearRow) -> bool,
    global: &[f64],
    own: &[(LinearChoice, &[f64])],
    margin: f64,
) -> (LinearChoice, f64) {
    let pick = |errors: &[f64]| -> Vec<f64> {
        rows.iter()
            .zip(errors)
            .filter(|(r, _)| keep(r))
            .map(|(_, e)| *e)
            .collect()
    };
    let global = pick(global);
    own.iter()
        .filter_map(|&(choice, errors)| {
            let errors = pick(errors);
            beats(&errors, &global, margin).then(|| (choice, mean(&errors)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((LinearChoice::Global, mean(&global)))
}

/// Whether per-cell errors `own` beat `global` by more than `margin` standard errors of the
/// mean paired difference. Needs two cells; a cell where both fail (infinite errors) decides
/// nothing, so the default stands.
pub(super) fn beats(own: &[f64], global: &[f64], margin: f64) -> bool {
    let d: Vec<f64> = own.iter().zip(global).map(|(a, b)| a - b).collect();
    let n = d.len();
    if n < 2 || d.iter().any(|x| x.is_nan()) {
        return false;
    }
    let m = mean(&d);
    if !m.is_finite() {
        return m < 0.0;
    }
    let variance = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    m < -margin * (variance / n as f64).sqrt()
}

pub(super) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // one cell proves nothing; a tie is no gain
        assert!(!beats(&[0.0], &[1.0], 0.0));
        assert!(!beats(&global, &global, 0.0));
        // the global model failing on a cell the own fit predicts
        assert!(beats(&[0.1, 0.1], &[0.1, f64::INFINITY], 2.0));
        assert!(!beats(&[f64::INFINITY, 0.1], &[f64::INFINITY, 0.2], 0.0));
    }
}
