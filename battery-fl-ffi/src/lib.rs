//! C ABI for battery-fl.
//!
//! Rules for C callers (they grow with the API): every function returns a status or a static
//! string; nothing here allocates memory the caller must free unless its doc says so.

use std::ffi::c_char;

/// The library version as a static NUL-terminated string, e.g. `"0.1.0"`.
///
/// Ownership: the string is static; do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn bfl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
