//! `bfl_genome`: genome fingerprints (what a cell is) and their distance.

use battery_fl_core::genome::GenomeFingerprint;

use crate::boundary::{arg_ref, ffi_boundary, free_handle, out_handle, out_ref, put_handle};
use crate::cell::bfl_cell;
use crate::status::bfl_status;

/// A cell's genome fingerprint: chemistry, build and its early electrochemical signature.
/// Opaque and immutable.
///
/// Threads: `Send + Sync`; every function taking it may run concurrently.
#[derive(Debug)]
pub struct bfl_genome {
    pub(crate) inner: GenomeFingerprint,
}

/// Fingerprint a cell (full-signal or discharge-only cells).
///
/// Ownership: `cell` is borrowed; on success `*out` owns a new fingerprint, free it with
/// `bfl_genome_free`. NULL: `cell` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_genome_from_cell(
    cell: *const bfl_cell,
    out: *mut *mut bfl_genome,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, cell) = unsafe { (out_handle(out, "out")?, arg_ref(cell, "cell")?) };
        put_handle(
            out,
            bfl_genome {
                inner: GenomeFingerprint::from_cell(&cell.inner)?,
            },
        );
        Ok(())
    })
}

/// The distance between two fingerprints with the default weights (0 for identical,
/// symmetric), into `*distance`.
///
/// NULL: any argument NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_genome_distance(
    a: *const bfl_genome,
    b: *const bfl_genome,
    distance: *mut f64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_ref(distance, "distance")?;
            *out = arg_ref(a, "a")?.inner.distance(&arg_ref(b, "b")?.inner);
        }
        Ok(())
    })
}

/// Free a fingerprint. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `genome` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_genome_free(genome: *mut bfl_genome) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(genome) }
}
