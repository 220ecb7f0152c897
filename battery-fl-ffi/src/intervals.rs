//! `bfl_interval_calibration`: BatLiNet's conformal intervals and out-of-distribution flags
//! (`battery_fl_core::model::IntervalCalibration`).
//!
//! Exported in every build; without the `tch` cargo feature the functions return
//! `BFL_STATUS_UNSUPPORTED`.

#[cfg(feature = "tch")]
use battery_fl_core::model::IntervalCalibration;

use crate::boundary::{arg_ref, ffi_boundary, free_handle, out_handle, tch_only};
#[cfg(feature = "tch")]
use crate::boundary::{lock, out_buffer, put_handle, put_opt};
use crate::model::{bfl_dataset, bfl_model};
use crate::status::bfl_status;

/// Flag bit of `bfl_model_predict_intervals`: the cell's cathode is in neither the training
/// nor the calibration cells, or it lies further (genome distance) from the training cells
/// than every calibration cell and every training cell from its nearest other training cell
/// of the same cathode.
pub const BFL_PREDICTION_OUT_OF_DISTRIBUTION: u8 = 1;
/// Flag bit (also of `bfl_model_predict_bounded`): the point prediction hit the bound around
/// the training lives.
pub const BFL_PREDICTION_BOUNDED: u8 = 2;
/// Flag bit: the point prediction lies outside the training lives.
pub const BFL_PREDICTION_OUTSIDE_LABEL_RANGE: u8 = 4;

/// What a calibration of one trained model learned from labelled cells it was not trained
/// on. Opaque and immutable; it holds the training cells' genome fingerprints, so it stays
/// with whoever owns the cells.
///
/// Threads: `Send + Sync`; every function taking it may run concurrently.
#[derive(Debug)]
pub struct bfl_interval_calibration {
    #[cfg(feature = "tch")]
    inner: IntervalCalibration,
}

/// Calibrate `model`'s intervals on labelled `calibration` cells held out from `training`
/// (the cells the model was trained on), predicted with `references` (usually the training
/// cells). A calibration cell that is also a training cell gives `BFL_STATUS_INVALID_CONFIG`.
///
/// Ownership: everything is borrowed; on success `*out` owns a new calibration
/// (`bfl_interval_calibration_free`). NULL: any argument NULL gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe (calls on one model are serialized).
/// Without the `tch` feature: `BFL_STATUS_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_calibrate(
    model: *const bfl_model,
    training: *const bfl_dataset,
    calibration: *const bfl_dataset,
    references: *const bfl_dataset,
    out: *mut *mut bfl_interval_calibration,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, model, training, calibration, references) = unsafe {
            (
                out_handle(out, "out")?,
                arg_ref(model, "model")?,
                arg_ref(training, "training")?,
                arg_ref(calibration, "calibration")?,
                arg_ref(references, "references")?,
            )
        };
        tch_only!((out, model, training, calibration, references) {
            let inner = lock(&model.inner, "model")?.calibrate(
                &training.inner,
                &calibration.inner,
                &references.inner,
            )?;
            put_handle(out, bfl_interval_calibration { inner });
            Ok(())
        })
    })
}

/// Predict every target with an interval at `coverage` (in (0, 1)), references drawn from
/// `references` as the calibration drew them. Writes, per target in order, the cycle life
/// into `life`, the interval into `lower` and `upper`, and into `flags` the OR of
/// `BFL_PREDICTION_OUT_OF_DISTRIBUTION`, `BFL_PREDICTION_BOUNDED` and
/// `BFL_PREDICTION_OUTSIDE_LABEL_RANGE`. Each array must hold at least as many values as
/// there are targets (`out_len`); `*written` (may be NULL) gets the count.
///
/// Errors: a calibration made for another model, or for this one before its weights
/// changed, gives `BFL_STATUS_MODEL`; too few calibration cells for the coverage
/// `BFL_STATUS_NOT_ENOUGH_DATA`; a coverage outside (0, 1) `BFL_STATUS_INVALID_CONFIG`.
///
/// Ownership: everything is borrowed. NULL: a handle NULL, or an output array NULL with
/// targets to predict, gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
/// Without the `tch` feature: `BFL_STATUS_UNSUPPORTED`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bfl_model_predict_intervals(
    model: *const bfl_model,
    targets: *const bfl_dataset,
    references: *const bfl_dataset,
    calibration: *const bfl_interval_calibration,
    coverage: f64,
    life: *mut f64,
    lower: *mut f64,
    upper: *mut f64,
    flags: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (model, targets, references, calibration) = unsafe {
            (
                arg_ref(model, "model")?,
                arg_ref(targets, "targets")?,
                arg_ref(references, "references")?,
                arg_ref(calibration, "calibration")?,
            )
        };
        tch_only!((model, targets, references, calibration, coverage, life, lower, upper, flags, out_len, written) {
            let n = targets.inner.len();
            // SAFETY: pointer contract of the crate docs; the four arrays are distinct.
            let (life, lower, upper, flags) = unsafe {
                (
                    out_buffer(life, out_len, n, "life")?,
                    out_buffer(lower, out_len, n, "lower")?,
                    out_buffer(upper, out_len, n, "upper")?,
                    out_buffer(flags, out_len, n, "flags")?,
                )
            };
            let preds = lock(&model.inner, "model")?.predict_intervals(
                &targets.inner,
                &references.inner,
                &calibration.inner,
                coverage,
            )?;
            for (k, p) in preds.iter().enumerate() {
                life[k] = p.life;
                lower[k] = p.lower;
                upper[k] = p.upper;
                flags[k] = [
                    (p.out_of_distribution, BFL_PREDICTION_OUT_OF_DISTRIBUTION),
                    (p.bounded, BFL_PREDICTION_BOUNDED),
                    (p.outside_label_range, BFL_PREDICTION_OUTSIDE_LABEL_RANGE),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |acc, (_, bit)| acc | bit);
            }
            // SAFETY: NULL is skipped.
            unsafe { put_opt(written, n) };
            Ok(())
        })
    })
}

/// Predict every target as `bfl_model_predict` does (the model's configured references), and
/// say which predictions hit the bound around the training lives, without a calibration.
/// Writes, per target in order, the cycle life into `life` and into `flags`
/// `BFL_PREDICTION_BOUNDED` or 0. Each array must hold at least as many values as there are
/// targets (`out_len`); `*written` (may be NULL) gets the count.
///
/// Ownership: everything is borrowed. NULL: a handle NULL, or an output array NULL with
/// targets to predict, gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
/// Without the `tch` feature: `BFL_STATUS_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_predict_bounded(
    model: *const bfl_model,
    targets: *const bfl_dataset,
    references: *const bfl_dataset,
    life: *mut f64,
    flags: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (model, targets, references) = unsafe {
            (
                arg_ref(model, "model")?,
                arg_ref(targets, "targets")?,
                arg_ref(references, "references")?,
            )
        };
        tch_only!((model, targets, references, life, flags, out_len, written) {
            let n = targets.inner.len();
            // SAFETY: pointer contract of the crate docs; the two arrays are distinct.
            let (life, flags) = unsafe {
                (
                    out_buffer(life, out_len, n, "life")?,
                    out_buffer(flags, out_len, n, "flags")?,
                )
            };
            let model = lock(&model.inner, "model")?;
            let c = model.config();
            let (lives, bounded) = model.predict_bounded(
                &targets.inner,
                &references.inner,
                c.inference_references,
                c.selection,
                c.seed,
            )?;
            life.copy_from_slice(&lives);
            for (f, b) in flags.iter_mut().zip(bounded) {
                *f = if b { BFL_PREDICTION_BOUNDED } else { 0 };
            }
            // SAFETY: NULL is skipped.
            unsafe { put_opt(written, n) };
            Ok(())
        })
    })
}

/// Free a calibration. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `calibration` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_interval_calibration_free(calibration: *mut bfl_interval_calibration) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(calibration) }
}
