//! `bfl_status` (stable numeric codes), the thread-local last error and its message getter.

use std::cell::RefCell;
use std::ffi::c_char;
use std::fmt;

use battery_fl_core::{Error, ErrorKind};

/// The result of every fallible call. `BFL_STATUS_OK` is 0; every other value is a failure
/// whose details `bfl_last_error_message` returns on the same thread.
///
/// The numbers are part of the ABI: they never change and are never reused. 1 to 9 are errors
/// of the C boundary itself; 10 and up mirror the kinds of the core library's errors.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum bfl_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument was out of range: an unknown enum value, a length that does not match,
    /// a string that is not UTF-8, a misaligned pointer.
    InvalidArgument = 2,
    /// An output buffer was too short; nothing useful was written.
    BufferTooSmall = 3,
    /// The library panicked (a bug); the message says where. The handle involved should not
    /// be used again except to free it.
    Panic = 4,
    /// The operation is not available in this build (e.g. the model without the `tch`
    /// feature).
    Unsupported = 5,
    /// Reading or writing a file failed.
    Io = 10,
    /// A file or message was not valid JSON or did not match its schema.
    Parse = 11,
    /// A cell's data break a physical or structural rule.
    InvalidData = 12,
    /// A configuration value is out of range or inconsistent.
    InvalidConfig = 13,
    /// An array had the wrong length or shape.
    Shape = 14,
    /// An operation needs more data than it was given.
    NotEnoughData = 15,
    /// The model failed (libtorch error, incompatible weights, untrained model, ...).
    Model = 16,
    /// A client update was rejected before it touched the aggregate.
    RejectedUpdate = 17,
    /// Aggregation could not produce a result.
    Aggregation = 18,
    /// A differential-privacy mechanism or accountant was misused.
    Privacy = 19,
    /// Spending more privacy would exceed the budget.
    BudgetExhausted = 20,
    /// A secure-aggregation step failed (bad message, tampered ciphertext, wrong stage, ...).
    Secagg = 21,
    /// Too few clients remain to finish a secure-aggregation round.
    BelowThreshold = 22,
}

impl From<ErrorKind> for bfl_status {
    fn from(kind: ErrorKind) -> Self {
        // exhaustive on purpose: a new core error kind must get its own stable number here
        match kind {
            ErrorKind::Io => bfl_status::Io,
            ErrorKind::Parse => bfl_status::Parse,
            ErrorKind::InvalidData => bfl_status::InvalidData,
            ErrorKind::InvalidConfig => bfl_status::InvalidConfig,
            ErrorKind::Shape => bfl_status::Shape,
            ErrorKind::NotEnoughData => bfl_status::NotEnoughData,
            ErrorKind::Model => bfl_status::Model,
            ErrorKind::RejectedUpdate => bfl_status::RejectedUpdate,
            ErrorKind::Aggregation => bfl_status::Aggregation,
            ErrorKind::Privacy => bfl_status::Privacy,
            ErrorKind::BudgetExhausted => bfl_status::BudgetExhausted,
            ErrorKind::SecAgg => bfl_status::Secagg,
            ErrorKind::BelowThreshold => bfl_status::BelowThreshold,
        }
    }
}

/// Every status, in numeric order.
const ALL_STATUSES: [bfl_status; 19] = [
    bfl_status::Ok,
    bfl_status::NullArgument,
    bfl_status::InvalidArgument,
    bfl_status::BufferTooSmall,
    bfl_status::Panic,
    bfl_status::Unsupported,
    bfl_status::Io,
    bfl_status::Parse,
    bfl_status::InvalidData,
    bfl_status::InvalidConfig,
    bfl_status::Shape,
    bfl_status::NotEnoughData,
    bfl_status::Model,
    bfl_status::RejectedUpdate,
    bfl_status::Aggregation,
    bfl_status::Privacy,
    bfl_status::BudgetExhausted,
    bfl_status::Secagg,
    bfl_status::BelowThreshold,
];

impl bfl_status {
    /// The static, NUL-terminated description.
    fn description(self) -> &'static str {
        match self {
            bfl_status::Ok => "ok\0",
            bfl_status::NullArgument => "a required pointer argument was NULL\0",
            bfl_status::InvalidArgument => "invalid argument\0",
            bfl_status::BufferTooSmall => "output buffer too small\0",
            bfl_status::Panic => "internal panic (a bug in battery-fl)\0",
            bfl_status::Unsupported => "not supported by this build\0",
            bfl_status::Io => "i/o error\0",
            bfl_status::Parse => "parse error\0",
            bfl_status::InvalidData => "invalid data\0",
            bfl_status::InvalidConfig => "invalid configuration\0",
            bfl_status::Shape => "shape mismatch\0",
            bfl_status::NotEnoughData => "not enough data\0",
            bfl_status::Model => "model error\0",
            bfl_status::RejectedUpdate => "client update rejected\0",
            bfl_status::Aggregation => "aggregation failed\0",
            bfl_status::Privacy => "differential-privacy error\0",
            bfl_status::BudgetExhausted => "privacy budget exhausted\0",
            bfl_status::Secagg => "secure aggregation failed\0",
            bfl_status::BelowThreshold => "secure aggregation below threshold\0",
        }
    }
}

/// A failure inside an export, before it becomes a status and a message.
#[derive(Debug)]
pub(crate) enum FfiError {
    /// A required pointer was NULL (the argument's name).
    Null(&'static str),
    /// An argument is out of range.
    Invalid(String),
    /// An output buffer is too short.
    TooSmall {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// Not available in this build.
    #[cfg_attr(feature = "tch", allow(dead_code))]
    Unsupported(&'static str),
    /// A lock was poisoned by an earlier panic.
    #[cfg_attr(not(feature = "tch"), allow(dead_code))]
    Poisoned(&'static str),
    /// An error of the core library.
    Core(Error),
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError::Core(e)
    }
}

impl FfiError {
    pub(crate) fn status(&self) -> bfl_status {
        match self {
            FfiError::Null(_) => bfl_status::NullArgument,
            FfiError::Invalid(_) => bfl_status::InvalidArgument,
            FfiError::TooSmall { .. } => bfl_status::BufferTooSmall,
            FfiError::Unsupported(_) => bfl_status::Unsupported,
            FfiError::Poisoned(_) => bfl_status::Panic,
            FfiError::Core(e) => e.kind().into(),
        }
    }
}

impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FfiError::Null(arg) => write!(f, "argument `{arg}` is NULL"),
            FfiError::Invalid(reason) => write!(f, "invalid argument: {reason}"),
            FfiError::TooSmall { what, needed, got } => {
                write!(f, "{what} too small: need {needed} elements, got {got}")
            }
            FfiError::Unsupported(what) => write!(f, "not supported by this build: {what}"),
            FfiError::Poisoned(what) => {
                write!(f, "{what} is unusable after an earlier panic; free it")
            }
            FfiError::Core(e) => write!(f, "{e}"),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Record the calling thread's last failure.
pub(crate) fn set_last_error(message: String) {
    // a NUL inside the message would cut it short for C readers
    let message = message.replace('\0', " ");
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
}

/// The calling thread's last failure message (for Rust-side tests).
#[cfg(test)]
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|m| m.borrow().clone())
}

/// A static, NUL-terminated description of a status code, e.g. `"shape mismatch"`.
///
/// Takes a plain `int` so that any value is safe to pass: unknown codes give
/// `"unknown status"`.
///
/// Ownership: the string is static; do not free it. NULL: never returns NULL.
/// Threads: thread-safe.
#[no_mangle]
pub extern "C" fn bfl_status_str(status: i32) -> *const c_char {
    let text = ALL_STATUSES
        .iter()
        .find(|s| **s as i32 == status)
        .map_or("unknown status\0", |s| s.description());
    text.as_ptr().cast()
}

/// Copy the message of the calling thread's most recent failure into `buf`, NUL-terminated.
///
/// Returns the number of bytes written, not counting the NUL (0 when no call on this thread
/// has failed yet). When `buf` is NULL or `len` is too small, returns the negative of the
/// buffer size needed (message length + 1); with a non-NULL `buf` and `len > 0` the message
/// is then truncated to fit, still NUL-terminated. Successful calls do not clear the message.
///
/// Ownership: `buf` is borrowed for the call. NULL: `buf` may be NULL (to ask for the size).
/// Threads: each thread has its own last error; thread-safe.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn bfl_last_error_message(buf: *mut c_char, len: usize) -> isize {
    let copy = || {
        LAST_ERROR.with(|m| {
            let m = m.borrow();
            let msg = m.as_bytes();
            let needed = msg.len() + 1;
            let needed_neg = -isize::try_from(needed).unwrap_or(isize::MAX);
            if buf.is_null() {
                return needed_neg;
            }
            let n = msg.len().min(len.saturating_sub(1));
            if len > 0 {
                // SAFETY: the caller guarantees `buf` is valid for `len` bytes and n < len.
                unsafe {
                    std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            if len < needed {
                needed_neg
            } else {
                isize::try_from(n).unwrap_or(isize::MAX)
            }
        })
    };
    std::panic::catch_unwind(copy).unwrap_or(isize::MIN)
}
