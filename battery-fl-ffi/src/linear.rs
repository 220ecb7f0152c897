//! `bfl_linear_model`: the linear early-life lifetime model, with conformal intervals and
//! out-of-distribution flags (no libtorch needed).

use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::model::{select_linear, LinearConfig, LinearModel, LinearRow};

use crate::boundary::{
    arg_ref, ffi_boundary, free_handle, out_buffer, out_handle, put_handle, put_opt, slice,
};
use crate::cell::bfl_cell;
use crate::status::{bfl_status, FfiError};

/// A fitted linear lifetime model: ridge regression of ln(cycle life) on early-life features
/// (Severson's ΔQ(V) and fade features, temperature, C-rates) with one offset per cathode.
/// Opaque and immutable.
///
/// Threads: `Send + Sync`; every function taking it may run concurrently.
#[derive(Debug)]
pub struct bfl_linear_model {
    inner: LinearModel,
}

/// The borrowed cells of a `{ptr, len}` array as the model's rows.
///
/// # Safety
/// As the crate's pointer contract: `cells` NULL or valid for `n` elements, each NULL or live.
unsafe fn rows(
    cells: *const *const bfl_cell,
    n: usize,
    name: &'static str,
    config: &LinearConfig,
) -> Result<Vec<LinearRow>, FfiError> {
    // SAFETY: forwarded contract.
    let cells: Vec<&Cell> = unsafe { slice(cells, n, name)? }
        .iter()
        // SAFETY: each element is NULL or a live cell (caller's contract).
        .map(|&c| unsafe { arg_ref(c, name) }.map(|c| &c.inner))
        .collect::<Result<_, _>>()?;
    Ok(config.rows(&cells, &LabelConfig::default())?)
}

/// Fit on `n` labelled cells, choosing the feature set and ridge strength by closed-form
/// leave-one-out error.
///
/// Ownership: the cells are borrowed; on success `*out` owns a new model
/// (`bfl_linear_model_free`). NULL: `out`, an element of `cells`, or `cells` with `n > 0`
/// NULL gives `BFL_STATUS_NULL_ARGUMENT`; too few or unlabelled cells give
/// `BFL_STATUS_NOT_ENOUGH_DATA` or `BFL_STATUS_INVALID_DATA`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_linear_model_fit(
    cells: *const *const bfl_cell,
    n: usize,
    out: *mut *mut bfl_linear_model,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let out = unsafe { out_handle(out, "out")? };
        let config = LinearConfig::default();
        // SAFETY: pointer contract of the crate docs.
        let rows = unsafe { rows(cells, n, "cells", &config)? };
        let (inner, _) = select_linear(&rows, &config)?;
        put_handle(out, bfl_linear_model { inner });
        Ok(())
    })
}

/// Predict `n` cells with intervals at `coverage` (in (0, 1)), calibrated on `n_calibration`
/// labelled cells the model was fitted on (closed-form leave-one-out). Writes, per cell in
/// order, the cycle life into `life`, the interval into `lower` and `upper`, and into
/// `out_of_distribution` 1 when the cell's cathode is in neither the training nor the
/// calibration cells or it lies further from the training data than every calibration
/// cell, else 0. Each output array must hold at least `n` values (`out_len`); `*written`
/// (may be NULL) gets `n`.
///
/// Ownership: everything is borrowed. NULL: `model`, an output array with `n > 0`, or a cell
/// array with a positive length NULL gives `BFL_STATUS_NULL_ARGUMENT`; too few calibration
/// cells for the coverage give `BFL_STATUS_NOT_ENOUGH_DATA`. Threads: thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bfl_linear_model_predict(
    model: *const bfl_linear_model,
    cells: *const *const bfl_cell,
    n: usize,
    calibration: *const *const bfl_cell,
    n_calibration: usize,
    coverage: f64,
    life: *mut f64,
    lower: *mut f64,
    upper: *mut f64,
    out_of_distribution: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let model = unsafe { arg_ref(model, "model")? };
        let config = LinearConfig {
            early_life: model.inner.early_life.clone(),
            ..Default::default()
        };
        // SAFETY: pointer contract of the crate docs.
        let (targets, calibrate) = unsafe {
            (
                rows(cells, n, "cells", &config)?,
                rows(calibration, n_calibration, "calibration", &config)?,
            )
        };
        // SAFETY: pointer contract of the crate docs; the four arrays are distinct.
        let (life, lower, upper, flags) = unsafe {
            (
                out_buffer(life, out_len, n, "life")?,
                out_buffer(lower, out_len, n, "lower")?,
                out_buffer(upper, out_len, n, "upper")?,
                out_buffer(out_of_distribution, out_len, n, "out_of_distribution")?,
            )
        };
        let calibration = model.inner.calibrate(&calibrate, true)?;
        let preds = model.inner.intervals(&targets, &calibration, coverage)?;
        for (k, p) in preds.iter().enumerate() {
            life[k] = p.life;
            lower[k] = p.lower;
            upper[k] = p.upper;
            flags[k] = u8::from(p.out_of_distribution);
        }
        // SAFETY: NULL is skipped.
        unsafe { put_opt(written, n) };
        Ok(())
    })
}

/// Free a linear model. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `model` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_linear_model_free(model: *mut bfl_linear_model) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(model) }
}
