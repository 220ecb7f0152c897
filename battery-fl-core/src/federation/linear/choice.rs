//! Which model a fleet of a linear federation keeps: a default model unless another validates
//! better on its cells by a clear margin (the rule of [`federation::choice`](crate::federation::choice)).
//!
//! The fleet scores each candidate by a held-out squared ln-life error per training cell: its
//! own fits (local, and the ridge toward the other fleets' model) by the nested leave-one-out
//! error of their whole selection, the global model by the fit on every fleet's cells but
//! that one. A challenger replaces the default only if the mean of the paired per-cell
//! differences (challenger minus default) lies clearly below zero: a one-sided paired t-test at
//! the level of the normal quantile `margin`
//! ([`LinearConfig::choice_margin`](crate::model::LinearConfig::choice_margin); about 2.2
//! standard errors on 16 cells at the default 2). Among
//! challengers that pass, the one with the least mean error is kept.
//!
//! The default is the model fitted exactly on the most cells: the global model, or under
//! record-level privacy the fleet's local model (the global one then carries noise sized for
//! a cell at the corners of the public ranges, and its leave-one-out errors are heavy-tailed:
//! one badly predicted cell inflates the standard error so that no fit could leave it).
//!
//! Why a margin, and why the global model is the default without privacy: on 16 or so cells
//! the least of several noisy errors picks a fleet's own fit by chance, and an own fit
//! extrapolates on new cells unlike its few training ones, where the global model has seen
//! more. On 40 draws of the demo fleets scored on 200 fresh cells per fleet (BENCHMARKS.md,
//! session 22), the least-error rule of session 14 ended at 0.92x the local models' RMSE,
//! with some fleet above 1.05x its local model in 16 of 40 draws; at a margin of 2 it ends at
//! 0.82x, in 10 of 40 (session 22's normal bar of 2 standard errors; the t bar of session 23
//! gives the same to the third digit on 16 cells). On the 2 to 4 cells of a minority chemistry
//! (with [`per_chemistry_choice`](crate::model::LinearConfig::per_chemistry_choice)) the t bar
//! is 3.3 to 14 standard errors: few cells rarely move a fleet off its default.

use crate::model::LinearRow;

use crate::federation::choice;
pub(super) use crate::federation::choice::mean;

use super::LinearChoice;

/// A candidate model and its per-cell held-out errors, aligned with the fleet's rows.
pub(super) type Scored<'a> = (LinearChoice, &'a [f64]);

/// The errors of the fleet's `rows` that `keep` selects.
pub(super) fn pick(
    rows: &[LinearRow],
    keep: &dyn Fn(&LinearRow) -> bool,
    errors: &[f64],
) -> Vec<f64> {
    rows.iter()
        .zip(errors)
        .filter(|(r, _)| keep(r))
        .map(|(_, e)| *e)
        .collect()
}

/// The choice over the fleet's `rows` that `keep` selects: `default` unless a `challenger`
/// beats it by `margin`, and the chosen model's mean error over those cells.
pub(super) fn choose(
    rows: &[LinearRow],
    keep: &dyn Fn(&LinearRow) -> bool,
    default: Scored<'_>,
    challengers: &[Scored<'_>],
    margin: f64,
) -> (LinearChoice, f64) {
    let base = pick(rows, keep, default.1);
    let challengers: Vec<(LinearChoice, Vec<f64>)> = challengers
        .iter()
        .map(|&(choice, errors)| (choice, pick(rows, keep, errors)))
        .collect();
    choice::choose((default.0, &base), &challengers, margin)
}
