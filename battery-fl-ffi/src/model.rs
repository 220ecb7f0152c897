//! `bfl_model` (the BatLiNet model, libtorch) and `bfl_dataset` (featurized cells).
//!
//! Every function is exported in every build; without the `tch` cargo feature the model
//! functions return `BFL_STATUS_UNSUPPORTED`, so the rest of the C ABI builds without
//! libtorch.

use std::ffi::c_char;
#[cfg(feature = "tch")]
use std::sync::Mutex;

use battery_fl_core::model::Dataset;
#[cfg(feature = "tch")]
use battery_fl_core::{
    data::{Cell, LabelConfig},
    features::Featurizer,
    model::BatLiNet,
};

use crate::boundary::{arg_ref, ffi_boundary, free_handle, out_handle, out_ref, tch_only};
#[cfg(feature = "tch")]
use crate::boundary::{c_path, lock, out_buffer, put_handle, put_opt, slice};
use crate::cell::bfl_cell;
use crate::features::bfl_featurizer;
use crate::status::bfl_status;

/// A trained BatLiNet model. Opaque.
///
/// Threads: `Send + Sync`; calls on one model are serialized by an internal lock, so every
/// function may be called from any thread.
#[derive(Debug)]
pub struct bfl_model {
    #[cfg(feature = "tch")]
    pub(crate) inner: Mutex<BatLiNet>,
}

/// Cells featurized the way a model expects (branch inputs, labels, fingerprints): the
/// targets and references of `bfl_model_predict`. Opaque and immutable.
///
/// Threads: `Send + Sync`; every function taking it may run concurrently.
#[derive(Debug)]
pub struct bfl_dataset {
    pub(crate) inner: Dataset,
}

/// Load a model directory written by the library (`model.json` + `model.safetensors`).
/// Weights that do not fit the described architecture give `BFL_STATUS_MODEL` naming the
/// first mismatching tensor.
///
/// Ownership: `dir` is borrowed; on success `*out` owns a new model (`bfl_model_free`).
/// NULL: `dir` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
/// Without the `tch` feature: `BFL_STATUS_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_load(
    dir: *const c_char,
    out: *mut *mut bfl_model,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let out = unsafe { out_handle(out, "out")? };
        tch_only!((dir, out) {
            // SAFETY: pointer contract of the crate docs.
            let dir = unsafe { c_path(dir, "dir")? };
            put_handle(out, bfl_model { inner: Mutex::new(BatLiNet::load(dir)?) });
            Ok(())
        })
    })
}

/// Save a model to a directory (`model.json` + `model.safetensors`, each written
/// atomically), loadable by `bfl_model_load` and the Rust and Python libraries.
///
/// NULL: `model` or `dir` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_save(model: *const bfl_model, dir: *const c_char) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let model = unsafe { arg_ref(model, "model")? };
        tch_only!((model, dir) {
            // SAFETY: pointer contract of the crate docs.
            let dir = unsafe { c_path(dir, "dir")? };
            Ok(lock(&model.inner, "model")?.save(dir)?)
        })
    })
}

/// A featurizer with exactly the settings the model was trained with.
///
/// Ownership: on success `*out` owns a new featurizer (`bfl_featurizer_free`).
/// NULL: `model` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_featurizer_new(
    model: *const bfl_model,
    out: *mut *mut bfl_featurizer,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, model) = unsafe { (out_handle(out, "out")?, arg_ref(model, "model")?) };
        tch_only!((model, out) {
            let config = lock(&model.inner, "model")?.featurizer_config().clone();
            put_handle(out, bfl_featurizer { inner: Featurizer::new(config)? });
            Ok(())
        })
    })
}

/// Featurize `n` cells for `model` (its featurizer settings and input channels; labels by
/// the default rule, see `bfl_cell_cycle_life`). Reference sets need labelled cells; target
/// cells need none.
///
/// Ownership: the cells are borrowed for the call; on success `*out` owns a new dataset
/// (`bfl_dataset_free`). NULL: `model`, `out`, an element of `cells`, or `cells` with
/// `n > 0` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_dataset_new(
    model: *const bfl_model,
    cells: *const *const bfl_cell,
    n: usize,
    out: *mut *mut bfl_dataset,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, model) = unsafe { (out_handle(out, "out")?, arg_ref(model, "model")?) };
        tch_only!((model, cells, n, out) {
            // SAFETY: pointer contract of the crate docs.
            let cells: Vec<&Cell> = unsafe { slice(cells, n, "cells")? }
                .iter()
                // SAFETY: each element is NULL or a live cell (caller's contract).
                .map(|&c| unsafe { arg_ref(c, "cells[i]") }.map(|c| &c.inner))
                .collect::<Result<_, _>>()?;
            let (featurizer, config) = {
                let m = lock(&model.inner, "model")?;
                (Featurizer::new(m.featurizer_config().clone())?, m.config().clone())
            };
            let ds = Dataset::for_config(&cells, &featurizer, &config, &LabelConfig::default())?;
            put_handle(out, bfl_dataset { inner: ds });
            Ok(())
        })
    })
}

/// The number of cells in a dataset, into `*n`.
///
/// NULL: `dataset` or `n` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_dataset_len(dataset: *const bfl_dataset, n: *mut usize) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(n, "n")? = arg_ref(dataset, "dataset")?.inner.len() };
        Ok(())
    })
}

/// Free a dataset. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `dataset` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_dataset_free(dataset: *mut bfl_dataset) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(dataset) }
}

/// Predict the cycle life of every target cell, with references drawn from `references`
/// (labelled cells; the model's configured number of references and selection rule).
/// `out_len` must be at least the number of targets; one value per target is written, in
/// order, and `*written` (may be NULL) gets the count.
///
/// Ownership: everything is borrowed. NULL: `model`, `targets`, `references` NULL, or
/// `out` NULL with targets to predict, give `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe (calls on one model are serialized).
#[no_mangle]
pub unsafe extern "C" fn bfl_model_predict(
    model: *const bfl_model,
    targets: *const bfl_dataset,
    references: *const bfl_dataset,
    out: *mut f64,
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
        tch_only!((model, targets, references, out, out_len, written) {
            // SAFETY: pointer contract of the crate docs.
            let buf = unsafe { out_buffer(out, out_len, targets.inner.len(), "out")? };
            let pred = lock(&model.inner, "model")?.predict(&targets.inner, &references.inner)?;
            buf.copy_from_slice(&pred);
            // SAFETY: NULL is skipped.
            unsafe { put_opt(written, pred.len()) };
            Ok(())
        })
    })
}

/// The number of scalar weights of the model (the length of its flat parameter vector),
/// into `*n`.
///
/// NULL: `model` or `n` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_num_params(
    model: *const bfl_model,
    n: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (n, model) = unsafe { (out_ref(n, "n")?, arg_ref(model, "model")?) };
        tch_only!((model, n) {
            *n = lock(&model.inner, "model")?.params()?.num_scalars();
            Ok(())
        })
    })
}

/// Export the weights as one flat vector (tensors in the model's fixed order, each in C
/// order): the exchange format of federated rounds. `out_len` must be at least
/// `bfl_model_num_params`; `*written` (may be NULL) gets the count.
///
/// NULL: `model` NULL, or `out` NULL with `out_len > 0`, gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_export_params(
    model: *const bfl_model,
    out: *mut f32,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let model = unsafe { arg_ref(model, "model")? };
        tch_only!((model, out, out_len, written) {
            let flat = lock(&model.inner, "model")?.params()?.flatten();
            // SAFETY: pointer contract of the crate docs.
            unsafe {
                out_buffer(out, out_len, flat.len(), "out")?.copy_from_slice(&flat);
                put_opt(written, flat.len());
            }
            Ok(())
        })
    })
}

/// Import weights from a flat vector laid out as `bfl_model_export_params` writes it;
/// `len` must equal `bfl_model_num_params` (`BFL_STATUS_SHAPE` otherwise, and the model is
/// unchanged).
///
/// Ownership: `params` is borrowed. NULL: `model` NULL, or `params` NULL with `len > 0`,
/// gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe (the model is locked).
#[no_mangle]
pub unsafe extern "C" fn bfl_model_import_params(
    model: *mut bfl_model,
    params: *const f32,
    len: usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let model = unsafe { arg_ref(model, "model")? };
        tch_only!((model, params, len) {
            // SAFETY: pointer contract of the crate docs.
            let flat = unsafe { slice(params, len, "params")? };
            let mut m = lock(&model.inner, "model")?;
            let new = m.params()?.from_flat(flat)?;
            Ok(m.set_params(&new)?)
        })
    })
}

/// Free a model. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `model` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_model_free(model: *mut bfl_model) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(model) }
}
