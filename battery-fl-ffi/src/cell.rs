//! `bfl_cell`: a battery cell (metadata and cycles), loaded from JSON or built from arrays.

use std::ffi::c_char;

use battery_fl_core::data::{
    load_cell, parse_cell, Cell, CellMeta, CleanConfig, Cycle, LabelConfig,
};

use crate::boundary::{
    arg_mut, arg_ref, c_path, c_str, c_str_opt, ffi_boundary, free_handle, out_handle, out_ref,
    put_handle, put_opt, slice,
};
use crate::status::{bfl_status, FfiError};

/// A battery cell: metadata plus its cycles. Opaque.
///
/// Threads: `Send + Sync`. Functions taking `const bfl_cell *` may run concurrently;
/// functions taking `bfl_cell *` need exclusive access to the cell.
#[derive(Debug)]
pub struct bfl_cell {
    pub(crate) inner: Cell,
}

/// What a cell is, for `bfl_cell_new`. Strings are borrowed for the call (copied); NULL
/// strings and NaN numbers mean "unknown".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bfl_cell_meta {
    /// Unique identifier (required, UTF-8).
    pub cell_id: *const c_char,
    /// Nominal capacity, Ah (required, > 0).
    pub nominal_capacity_ah: f64,
    /// Where the data come from, or NULL.
    pub source: *const c_char,
    /// Cathode chemistry (`"LFP"`, `"NMC"`, ...), or NULL.
    pub cathode: *const c_char,
    /// Anode material, or NULL.
    pub anode: *const c_char,
    /// Electrolyte, or NULL.
    pub electrolyte: *const c_char,
    /// Form factor (`"cylindrical 18650"`, `"pouch"`, ...), or NULL.
    pub form_factor: *const c_char,
    /// Cycling protocol, or NULL.
    pub protocol: *const c_char,
    /// Lower voltage limit, V, or NaN.
    pub voltage_min_v: f64,
    /// Upper voltage limit, V, or NaN.
    pub voltage_max_v: f64,
    /// Ambient temperature, degrees C, or NaN.
    pub temperature_c: f64,
}

/// One cycle for `bfl_cell_add_cycle`: `len` aligned samples per recorded signal. Arrays are
/// borrowed for the call (copied). `voltage_v` is required; every other signal may be NULL
/// (not recorded, never treated as zeros).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bfl_cycle_data {
    /// Cycle number as recorded by the source (1-based in most sources).
    pub cycle: u32,
    /// Samples in each array.
    pub len: usize,
    /// Terminal voltage, V (required).
    pub voltage_v: *const f64,
    /// Time since the start of the cycle, s, or NULL.
    pub time_s: *const f64,
    /// Current, A (charge positive, discharge negative), or NULL.
    pub current_a: *const f64,
    /// Charge capacity, Ah, or NULL.
    pub charge_capacity_ah: *const f64,
    /// Discharge capacity, Ah, or NULL.
    pub discharge_capacity_ah: *const f64,
    /// Cell temperature, degrees C, or NULL.
    pub temperature_c: *const f64,
}

fn known(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Load a cell from a `.json` or `.json.gz` file (gzip is detected from the content) in the
/// shared cell schema (BatteryML field names are accepted too). The cell is parsed, not
/// cleaned or validated: see `bfl_cell_clean` and `bfl_cell_validate`.
///
/// Ownership: `path` is borrowed; on success `*out` owns a new cell, free it with
/// `bfl_cell_free`. NULL: `path` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`; `*out` is
/// NULL after any failure. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_load_json(
    path: *const c_char,
    out: *mut *mut bfl_cell,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, path) = unsafe { (out_handle(out, "out")?, c_path(path, "path")?) };
        put_handle(
            out,
            bfl_cell {
                inner: load_cell(path)?,
            },
        );
        Ok(())
    })
}

/// Parse a cell from the bytes of a `.json` or `.json.gz` file held in memory (untrusted
/// input is fine: malformed bytes give `BFL_STATUS_PARSE` or `BFL_STATUS_IO`).
///
/// Ownership: `data` is borrowed; on success `*out` owns a new cell (`bfl_cell_free`).
/// NULL: `data` may be NULL only with `len == 0`; `out` must not be NULL.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_parse_json(
    data: *const u8,
    len: usize,
    out: *mut *mut bfl_cell,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, data) = unsafe { (out_handle(out, "out")?, slice(data, len, "data")?) };
        put_handle(
            out,
            bfl_cell {
                inner: parse_cell(data)?,
            },
        );
        Ok(())
    })
}

/// Start building a cell from metadata, with no cycles yet (add them with
/// `bfl_cell_add_cycle`).
///
/// Ownership: `meta` and its strings are borrowed (copied); on success `*out` owns a new cell
/// (`bfl_cell_free`). NULL: `meta`, `meta->cell_id` or `out` NULL gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_new(
    meta: *const bfl_cell_meta,
    out: *mut *mut bfl_cell,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_handle(out, "out")?;
            let m = arg_ref(meta, "meta")?;
            let mut cm = CellMeta::new(c_str(m.cell_id, "meta->cell_id")?, m.nominal_capacity_ah);
            cm.source = c_str_opt(m.source, "meta->source")?;
            cm.cathode = c_str_opt(m.cathode, "meta->cathode")?;
            cm.anode = c_str_opt(m.anode, "meta->anode")?;
            cm.electrolyte = c_str_opt(m.electrolyte, "meta->electrolyte")?;
            cm.form_factor = c_str_opt(m.form_factor, "meta->form_factor")?;
            cm.protocol = c_str_opt(m.protocol, "meta->protocol")?;
            cm.voltage_min_v = known(m.voltage_min_v);
            cm.voltage_max_v = known(m.voltage_max_v);
            cm.temperature_c = known(m.temperature_c);
            put_handle(
                out,
                bfl_cell {
                    inner: Cell::new(cm, Vec::new()),
                },
            );
        }
        Ok(())
    })
}

/// Append a cycle (copied from the arrays of `cycle`) to a cell.
///
/// Ownership: `cycle` and its arrays are borrowed for the call. NULL: `cell`, `cycle` or
/// `cycle->voltage_v` NULL gives `BFL_STATUS_NULL_ARGUMENT` (unless `len == 0`); other
/// signals may be NULL. Threads: needs exclusive access to `cell`.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_add_cycle(
    cell: *mut bfl_cell,
    cycle: *const bfl_cycle_data,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let cell = arg_mut(cell, "cell")?;
            let c = arg_ref(cycle, "cycle")?;
            let opt = |p: *const f64, name| -> Result<Option<Vec<f64>>, FfiError> {
                if p.is_null() {
                    Ok(None)
                } else {
                    slice(p, c.len, name).map(|s| Some(s.to_vec()))
                }
            };
            if c.voltage_v.is_null() && c.len > 0 {
                return Err(FfiError::Null("cycle->voltage_v"));
            }
            let mut new = Cycle::new(
                c.cycle,
                slice(c.voltage_v, c.len, "cycle->voltage_v")?.to_vec(),
            );
            new.time_s = opt(c.time_s, "cycle->time_s")?;
            new.current_a = opt(c.current_a, "cycle->current_a")?;
            new.charge_capacity_ah = opt(c.charge_capacity_ah, "cycle->charge_capacity_ah")?;
            new.discharge_capacity_ah =
                opt(c.discharge_capacity_ah, "cycle->discharge_capacity_ah")?;
            new.temperature_c = opt(c.temperature_c, "cycle->temperature_c")?;
            cell.inner.cycles.push(new);
        }
        Ok(())
    })
}

/// Set the cell's recorded cycle life (80 % of nominal capacity), or clear it with 0.
/// Reference cells for `bfl_model_predict` need a label.
///
/// NULL: `cell` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_set_cycle_life(
    cell: *mut bfl_cell,
    cycle_life: u32,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let cell = unsafe { arg_mut(cell, "cell")? };
        cell.inner.cycle_life = (cycle_life > 0).then_some(cycle_life);
        Ok(())
    })
}

/// Repair or drop physically implausible cycles with the default cleaning rules (capacities
/// far below 0 or above 1.2 x nominal, capacity counters that fall within a cycle).
///
/// `dropped` (may be NULL) receives the number of cycles dropped.
/// NULL: `cell` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_clean(cell: *mut bfl_cell, dropped: *mut usize) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let cell = unsafe { arg_mut(cell, "cell")? };
        let report = cell.inner.clean(&CleanConfig::default())?;
        // SAFETY: NULL is skipped; otherwise the caller's contract.
        unsafe { put_opt(dropped, report.dropped().len()) };
        Ok(())
    })
}

/// Check the cell's physical and structural rules (positive nominal capacity, aligned
/// series, finite voltages, ...): `BFL_STATUS_OK` or `BFL_STATUS_INVALID_DATA` naming the
/// cycle and field.
///
/// NULL: `cell` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe (read only).
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_validate(cell: *const bfl_cell) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let cell = unsafe { arg_ref(cell, "cell")? };
        Ok(cell.inner.validate()?)
    })
}

/// The number of cycles of the cell, into `*n`.
///
/// NULL: `cell` or `n` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_num_cycles(cell: *const bfl_cell, n: *mut usize) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(n, "n")? = arg_ref(cell, "cell")?.inner.cycles.len() };
        Ok(())
    })
}

/// The cell's cycle life under the default label rule (the recorded value, else the first
/// cycle at or below 80 % of nominal capacity), into `*cycle_life`; 0 when the data end
/// before end of life (censored: no label is made up).
///
/// NULL: `cell` or `cycle_life` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_cycle_life(
    cell: *const bfl_cell,
    cycle_life: *mut u32,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_ref(cycle_life, "cycle_life")?;
            let label = arg_ref(cell, "cell")?
                .inner
                .cycle_life(&LabelConfig::default())?;
            *out = label.cycles().unwrap_or(0);
        }
        Ok(())
    })
}

/// Copy the cell id into `buf` as a NUL-terminated string; `*written` (may be NULL) gets its
/// length without the NUL. A short buffer gives `BFL_STATUS_BUFFER_TOO_SMALL`, nothing is
/// written to `buf`, and `*written` gets the size needed including the NUL.
///
/// NULL: `cell` NULL gives `BFL_STATUS_NULL_ARGUMENT`; `buf` may be NULL only with `len == 0`
/// (to ask for the size). Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_id(
    cell: *const bfl_cell,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let id = arg_ref(cell, "cell")?.inner.id().as_bytes();
            if len <= id.len() {
                put_opt(written, id.len() + 1);
                return Err(FfiError::TooSmall {
                    what: "buf",
                    needed: id.len() + 1,
                    got: len,
                });
            }
            let buf = crate::boundary::slice_mut(buf.cast::<u8>(), len, "buf")?;
            buf[..id.len()].copy_from_slice(id);
            buf[id.len()] = 0;
            put_opt(written, id.len());
        }
        Ok(())
    })
}

/// Free a cell. NULL is a no-op.
///
/// Ownership: takes back ownership of `cell`; do not use it afterwards.
/// Threads: no other call may use `cell` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_cell_free(cell: *mut bfl_cell) {
    // SAFETY: `cell` came from this library and is freed once (caller's contract).
    unsafe { free_handle(cell) }
}
