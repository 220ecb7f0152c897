//! The boundary every export goes through: `ffi_boundary!` (panics and errors become a
//! status plus a thread-local message) and the checked conversions of raw arguments.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use crate::status::{bfl_status, set_last_error, FfiError};

/// Run an export's body: `Ok(())` gives `BFL_STATUS_OK`; an error or a panic records its
/// message as the thread's last error and returns the matching status. A panic never
/// unwinds into C.
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::boundary::run(move || -> Result<(), $crate::status::FfiError> { $body })
    };
}
pub(crate) use ffi_boundary;

/// Run the body of an export that needs libtorch; without the `tch` feature it returns
/// `BFL_STATUS_UNSUPPORTED` (the arguments are listed so they count as used).
macro_rules! tch_only {
    (($($arg:ident),*) $body:block) => {{
        #[cfg(feature = "tch")]
        {
            $body
        }
        #[cfg(not(feature = "tch"))]
        {
            let _ = ($($arg,)*);
            Err($crate::status::FfiError::Unsupported(
                "the BatLiNet model needs battery-fl-ffi built with the `tch` feature",
            ))
        }
    }};
}
pub(crate) use tch_only;

pub(crate) fn run(body: impl FnOnce() -> Result<(), FfiError>) -> bfl_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => bfl_status::Ok,
        Ok(Err(e)) => {
            set_last_error(e.to_string());
            e.status()
        }
        Err(payload) => {
            set_last_error(format!("panic: {}", panic_message(payload.as_ref())));
            bfl_status::Panic
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Run a destructor at the boundary: a panic is recorded as the last error, never unwound.
pub(crate) fn run_free(body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        set_last_error(format!("panic: {}", panic_message(payload.as_ref())));
    }
}

/// A shared reference from a handle or struct pointer; NULL is an error naming `name`.
///
/// # Safety
/// `p` must be NULL or point to a live `T` that outlives `'a` and is not mutated meanwhile.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &'static str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller's contract; `as_ref` checks NULL.
    unsafe { p.as_ref() }.ok_or(FfiError::Null(name))
}

/// An exclusive reference from a handle pointer; NULL is an error naming `name`.
///
/// # Safety
/// `p` must be NULL or point to a live `T` that nobody else uses during `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, name: &'static str) -> Result<&'a mut T, FfiError> {
    // SAFETY: the caller's contract; `as_mut` checks NULL.
    unsafe { p.as_mut() }.ok_or(FfiError::Null(name))
}

fn check_len<T>(p: *const T, len: usize, name: &'static str) -> Result<(), FfiError> {
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(FfiError::Invalid(format!(
            "length {len} of `{name}` is too large"
        )));
    }
    if !p.is_aligned() {
        return Err(FfiError::Invalid(format!("`{name}` is misaligned")));
    }
    Ok(())
}

/// A borrowed input array `{ptr, len}`. NULL with `len == 0` is the empty array; NULL with
/// `len > 0` is an error.
///
/// # Safety
/// `p` must be NULL or valid for reads of `len` elements during `'a`, not written meanwhile.
pub(crate) unsafe fn slice<'a, T>(
    p: *const T,
    len: usize,
    name: &'static str,
) -> Result<&'a [T], FfiError> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(FfiError::Null(name))
        };
    }
    check_len(p, len, name)?;
    // SAFETY: non-NULL, aligned, length in range; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A borrowed output array `{ptr, len}`; same rules as [`slice`].
///
/// # Safety
/// `p` must be NULL or valid for reads and writes of `len` elements during `'a`, and not
/// accessed through any other pointer meanwhile.
pub(crate) unsafe fn slice_mut<'a, T>(
    p: *mut T,
    len: usize,
    name: &'static str,
) -> Result<&'a mut [T], FfiError> {
    if p.is_null() {
        return if len == 0 {
            Ok(&mut [])
        } else {
            Err(FfiError::Null(name))
        };
    }
    check_len(p, len, name)?;
    // SAFETY: non-NULL, aligned, length in range; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// An output buffer of at least `needed` elements, cut to exactly `needed`.
///
/// # Safety
/// As [`slice_mut`].
pub(crate) unsafe fn out_buffer<'a, T>(
    p: *mut T,
    len: usize,
    needed: usize,
    name: &'static str,
) -> Result<&'a mut [T], FfiError> {
    if len < needed {
        return Err(FfiError::TooSmall {
            what: name,
            needed,
            got: len,
        });
    }
    // SAFETY: forwarded contract.
    let buf = unsafe { slice_mut(p, len, name) }?;
    Ok(&mut buf[..needed])
}

/// A borrowed NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string valid during `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, name: &'static str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    // SAFETY: non-NULL; NUL termination is the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| FfiError::Invalid(format!("`{name}` is not UTF-8")))
}

/// An optional borrowed string: NULL is `None`.
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn c_str_opt(
    p: *const c_char,
    name: &'static str,
) -> Result<Option<String>, FfiError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { c_str(p, name) }.map(|s| Some(s.to_owned()))
}

/// A borrowed NUL-terminated file path (any bytes on Unix, UTF-8 elsewhere).
///
/// # Safety
/// As [`c_str`].
pub(crate) unsafe fn c_path(p: *const c_char, name: &'static str) -> Result<PathBuf, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    // SAFETY: non-NULL; NUL termination is the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| FfiError::Invalid(format!("`{name}` is not UTF-8")))
    }
}

/// A scalar out-parameter: NULL is an error naming `name`.
///
/// # Safety
/// `p` must be NULL or valid for a write of `T` during `'a`.
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, name: &'static str) -> Result<&'a mut T, FfiError> {
    // SAFETY: forwarded contract.
    unsafe { arg_mut(p, name) }
}

/// A handle out-parameter: NULL is an error; otherwise `*p` is set to NULL right away, so it
/// stays NULL on any failure. Fill it with [`put_handle`].
///
/// # Safety
/// `p` must be NULL or valid for a write of a pointer during `'a`.
pub(crate) unsafe fn out_handle<'a, T>(
    p: *mut *mut T,
    name: &'static str,
) -> Result<&'a mut *mut T, FfiError> {
    // SAFETY: forwarded contract.
    let slot = unsafe { arg_mut(p, name) }?;
    *slot = std::ptr::null_mut();
    Ok(slot)
}

/// Move `value` to the heap and hand it to C through `slot`.
pub(crate) fn put_handle<T>(slot: &mut *mut T, value: T) {
    *slot = Box::into_raw(Box::new(value));
}

/// Free a handle made by [`put_handle`]; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a pointer from [`put_handle`] of the same type, not freed before.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: the caller's contract: `p` came from `Box::into_raw` and is freed once.
        run_free(|| drop(unsafe { Box::from_raw(p) }));
    }
}

/// Write an optional scalar out-parameter (NULL means the caller does not want it).
///
/// # Safety
/// `p` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn put_opt<T>(p: *mut T, value: T) {
    // SAFETY: the caller's contract; NULL is skipped.
    if let Some(slot) = unsafe { p.as_mut() } {
        *slot = value;
    }
}

/// Lock a handle's mutex; a lock poisoned by an earlier panic is an error.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn lock<'a, T>(
    m: &'a Mutex<T>,
    what: &'static str,
) -> Result<MutexGuard<'a, T>, FfiError> {
    m.lock().map_err(|_| FfiError::Poisoned(what))
}

/// A 32-byte seed from `{ptr, len}`; the length must be exactly 32.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn seed32(
    p: *const u8,
    len: usize,
    name: &'static str,
) -> Result<[u8; 32], FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(p, len, name) }?;
    bytes
        .try_into()
        .map_err(|_| FfiError::Invalid(format!("`{name}` must be 32 bytes, got {len}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::last_error;

    #[test]
    fn panics_become_a_status_and_a_message() {
        let status = run(|| panic!("boom at the boundary"));
        assert_eq!(status, bfl_status::Panic);
        assert!(
            last_error().contains("boom at the boundary"),
            "{}",
            last_error()
        );
        let status = run(|| std::panic::panic_any(format!("owned {}", 7)));
        assert_eq!(status, bfl_status::Panic);
        assert!(last_error().contains("owned 7"));
        assert_eq!(run(|| Ok(())), bfl_status::Ok);
        // a success does not clear the message
        assert!(last_error().contains("owned 7"));
    }

    #[test]
    fn errors_map_to_their_status() {
        let status = run(|| Err(FfiError::Null("out")));
        assert_eq!(status, bfl_status::NullArgument);
        assert_eq!(last_error(), "argument `out` is NULL");
        let status = run(|| Err(battery_fl_core::Error::Model { reason: "x".into() }.into()));
        assert_eq!(status, bfl_status::Model);
    }

    #[test]
    fn slices_check_null_length_and_alignment() {
        // SAFETY: NULL pointers and a live array.
        unsafe {
            assert!(slice::<f32>(std::ptr::null(), 0, "x").unwrap().is_empty());
            assert!(matches!(
                slice::<f32>(std::ptr::null(), 3, "x"),
                Err(FfiError::Null("x"))
            ));
            let v = [1.0f32, 2.0];
            assert!(matches!(
                slice(v.as_ptr(), usize::MAX, "x"),
                Err(FfiError::Invalid(_))
            ));
            let misaligned = v.as_ptr().cast::<u8>().add(1).cast::<f32>();
            assert!(matches!(
                slice(misaligned, 1, "x"),
                Err(FfiError::Invalid(_))
            ));
            assert_eq!(slice(v.as_ptr(), 2, "x").unwrap(), &v);
        }
    }
}
