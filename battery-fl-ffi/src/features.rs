//! `bfl_featurizer`: the six-channel BatLiNet featurizer.

use battery_fl_core::features::{FeatureCleanConfig, Featurizer, FeaturizerConfig};

use crate::boundary::{
    arg_ref, ffi_boundary, free_handle, out_buffer, out_handle, out_ref, put_handle, put_opt,
};
use crate::cell::bfl_cell;
use crate::status::{bfl_status, FfiError};

/// A validated featurizer. Opaque and immutable.
///
/// Threads: `Send + Sync`; every function taking it may run concurrently.
#[derive(Debug)]
pub struct bfl_featurizer {
    pub(crate) inner: Featurizer,
}

/// Featurizer settings (`bfl_featurizer_config_default` fills the documented defaults).
///
/// The output of `bfl_featurizer_transform` is `6 x cycles x interp_dim` floats,
/// channel-major: V(Qc), V(Qd), I(Qc), I(Qd), dV(Q), R(Q) over normalized capacity.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bfl_featurizer_config {
    /// Number of cycle rows (default 100).
    pub cycles: usize,
    /// Recorded cycle number of row 0 (default 1).
    pub first_cycle: u32,
    /// Grid points along normalized capacity (default 1000, at least 2).
    pub interp_dim: usize,
    /// Lower end of the normalized-capacity grid (default 0.0).
    pub q_min: f64,
    /// Upper end of the normalized-capacity grid (default 1.2).
    pub q_max: f64,
    /// Current (A) separating charge and discharge points (default 0.1).
    pub current_threshold_a: f64,
    /// Recorded cycle number the intra-cell difference subtracts (default 10).
    pub diff_base_cycle: u32,
    /// Rows of missing cycles copy the nearest recorded cycle (default true); false leaves
    /// them zero.
    pub fill_missing_cycles: bool,
    /// Cleaning: grid points at each end of a row examined by edge smoothing (default 50).
    pub clean_edge_points: usize,
    /// Cleaning: edge smoothing threshold, standard deviations (default 3).
    pub clean_edge_std: f64,
    /// Cleaning: points a glitch mark is widened by (default 25).
    pub clean_glitch_width: usize,
    /// Cleaning: glitch threshold, standard deviations (default 3).
    pub clean_glitch_std: f64,
    /// Cleaning: cycle filter threshold, standard deviations (default 5).
    pub clean_cycle_std: f64,
}

impl From<&FeaturizerConfig> for bfl_featurizer_config {
    fn from(c: &FeaturizerConfig) -> Self {
        bfl_featurizer_config {
            cycles: c.cycles,
            first_cycle: c.first_cycle,
            interp_dim: c.interp_dim,
            q_min: c.q_min,
            q_max: c.q_max,
            current_threshold_a: c.current_threshold_a,
            diff_base_cycle: c.diff_base_cycle,
            fill_missing_cycles: c.fill_missing_cycles,
            clean_edge_points: c.clean.edge_points,
            clean_edge_std: c.clean.edge_std,
            clean_glitch_width: c.clean.glitch_width,
            clean_glitch_std: c.clean.glitch_std,
            clean_cycle_std: c.clean.cycle_std,
        }
    }
}

impl From<&bfl_featurizer_config> for FeaturizerConfig {
    fn from(c: &bfl_featurizer_config) -> Self {
        FeaturizerConfig {
            cycles: c.cycles,
            first_cycle: c.first_cycle,
            interp_dim: c.interp_dim,
            q_min: c.q_min,
            q_max: c.q_max,
            current_threshold_a: c.current_threshold_a,
            diff_base_cycle: c.diff_base_cycle,
            fill_missing_cycles: c.fill_missing_cycles,
            clean: FeatureCleanConfig {
                edge_points: c.clean_edge_points,
                edge_std: c.clean_edge_std,
                glitch_width: c.clean_glitch_width,
                glitch_std: c.clean_glitch_std,
                cycle_std: c.clean_cycle_std,
            },
        }
    }
}

/// Fill `*config` with the documented defaults.
///
/// NULL: `config` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_config_default(
    config: *mut bfl_featurizer_config,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(config, "config")? = (&FeaturizerConfig::default()).into() };
        Ok(())
    })
}

/// A featurizer with the default settings (100 cycles x 1000 grid points).
///
/// Ownership: on success `*out` owns a new featurizer; free it with `bfl_featurizer_free`.
/// NULL: `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_new_default(out: *mut *mut bfl_featurizer) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let out = unsafe { out_handle(out, "out")? };
        put_handle(
            out,
            bfl_featurizer {
                inner: Featurizer::new(FeaturizerConfig::default())?,
            },
        );
        Ok(())
    })
}

/// A featurizer from `config` (validated: `BFL_STATUS_INVALID_CONFIG` names the bad field).
///
/// Ownership: `config` is borrowed; on success `*out` owns a new featurizer
/// (`bfl_featurizer_free`). NULL: `config` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_new(
    config: *const bfl_featurizer_config,
    out: *mut *mut bfl_featurizer,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, config) = unsafe { (out_handle(out, "out")?, arg_ref(config, "config")?) };
        put_handle(
            out,
            bfl_featurizer {
                inner: Featurizer::new(config.into())?,
            },
        );
        Ok(())
    })
}

/// The featurizer's settings, into `*config`.
///
/// NULL: `featurizer` or `config` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_get_config(
    featurizer: *const bfl_featurizer,
    config: *mut bfl_featurizer_config,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            *out_ref(config, "config")? = arg_ref(featurizer, "featurizer")?.inner.config().into()
        };
        Ok(())
    })
}

/// The number of floats `bfl_featurizer_transform` writes (`6 * cycles * interp_dim`), into
/// `*len`.
///
/// NULL: `featurizer` or `len` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_output_len(
    featurizer: *const bfl_featurizer,
    len: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_ref(len, "len")?;
            *out = arg_ref(featurizer, "featurizer")?
                .inner
                .output_shape()
                .iter()
                .product();
        }
        Ok(())
    })
}

/// The output shape (channels, cycles, grid points) into `shape[0..3]`.
///
/// NULL: `featurizer` or `shape` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_output_shape(
    featurizer: *const bfl_featurizer,
    shape: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs; `shape` holds 3 elements.
        unsafe {
            let f = arg_ref(featurizer, "featurizer")?;
            if shape.is_null() {
                return Err(FfiError::Null("shape"));
            }
            crate::boundary::slice_mut(shape, 3, "shape")?.copy_from_slice(&f.inner.output_shape());
        }
        Ok(())
    })
}

/// Raw features of one cell into `out`: `6 x cycles x interp_dim` floats, C order
/// (channel, cycle row, grid point). `out_len` must be at least `bfl_featurizer_output_len`;
/// exactly that many floats are written and `*written` (may be NULL) gets the count.
///
/// Errors: `BFL_STATUS_BUFFER_TOO_SMALL` for a short buffer (nothing written);
/// `BFL_STATUS_INVALID_DATA` naming the cell and cycle for bad data (the buffer's contents
/// are then unspecified).
///
/// Ownership: everything is borrowed. NULL: `featurizer`, `cell` NULL, or `out` NULL with
/// `out_len > 0`, give `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe; `out` must not be
/// accessed by others during the call.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_transform(
    featurizer: *const bfl_featurizer,
    cell: *const bfl_cell,
    out: *mut f32,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let f = &arg_ref(featurizer, "featurizer")?.inner;
            let cell = &arg_ref(cell, "cell")?.inner;
            let needed = f.output_shape().iter().product();
            let buf = out_buffer(out, out_len, needed, "out")?;
            f.transform_into(cell, buf)?;
            put_opt(written, needed);
        }
        Ok(())
    })
}

/// Free a featurizer. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `featurizer` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_featurizer_free(featurizer: *mut bfl_featurizer) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(featurizer) }
}
