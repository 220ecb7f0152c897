//! The exception hierarchy and the mapping from the core error.
//!
//! `BatteryFlError` is the base of six classes, one per concern; the ones a Python user
//! expects to be `ValueError`s (bad data, bad settings, rejected updates, misused privacy
//! tools, bad protocol messages) also subclass `ValueError`, and `ModelError` also subclasses
//! `RuntimeError` (as torch's own failures do). The core error's kind selects the class with
//! an exhaustive `match` (no wildcard arm), so a new core variant stops this crate from
//! compiling until it is mapped. Every raised exception carries `kind`, the variant's
//! snake-case name, and the variant's identifying fields as attributes where it has them.

use std::sync::{Mutex, MutexGuard};

use battery_fl_core::{Error, ErrorKind};
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The Python exception classes, in [`CLASSES`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Base,
    Data,
    Config,
    Model,
    Aggregation,
    Privacy,
    SecAgg,
}

/// Which builtin exception a class also derives from.
#[derive(Clone, Copy)]
enum Builtin {
    None,
    Value,
    Runtime,
}

/// (class, name, extra builtin base, docstring).
const CLASSES: [(Class, &str, Builtin, &str); 7] = [
    (
        Class::Base,
        "BatteryFlError",
        Builtin::None,
        "Base class of every error raised by battery_fl.\n\n\
         Attributes: `kind`, the core error's snake-case name (for example \
         `invalid_config` or `budget_exhausted`), plus the error's identifying fields \
         (`field`, `cell_id`, `cycle`, `stage`, `client_id`, `path`, ...) where it has them.",
    ),
    (
        Class::Data,
        "DataError",
        Builtin::Value,
        "Invalid, unreadable or insufficient data: a cell breaks a physical rule, a file \
         cannot be read or parsed, arrays have the wrong shape, or too few cells were given.",
    ),
    (
        Class::Config,
        "ConfigError",
        Builtin::Value,
        "A setting is out of range or inconsistent; `field` names it.",
    ),
    (
        Class::Model,
        "ModelError",
        Builtin::Runtime,
        "The model failed: a libtorch error, incompatible weights, an unfitted model, a \
         corrupt model file.",
    ),
    (
        Class::Aggregation,
        "AggregationError",
        Builtin::Value,
        "Aggregation could not produce a result, or a client update was rejected \
         (`client_id` names the client: its position in the list of updates).",
    ),
    (
        Class::Privacy,
        "PrivacyError",
        Builtin::Value,
        "A differential-privacy tool was misused, or a step would exceed the privacy \
         budget (`kind == 'budget_exhausted'`).",
    ),
    (
        Class::SecAgg,
        "SecAggError",
        Builtin::Value,
        "A secure-aggregation step failed: a malformed or tampered message, a message in \
         the wrong stage, or too few clients left (`kind == 'below_threshold'`).",
    ),
];

static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn build(py: Python<'_>) -> PyResult<Vec<Py<PyType>>> {
    let make_type = py.import("builtins")?.getattr("type")?;
    let mut out: Vec<Py<PyType>> = Vec::with_capacity(CLASSES.len());
    for (_, name, builtin, doc) in CLASSES {
        let first = match out.first() {
            Some(base) => base.bind(py).clone().into_any(),
            None => py.get_type::<PyException>().into_any(),
        };
        let bases = match builtin {
            Builtin::None => PyTuple::new(py, [first])?,
            Builtin::Value => PyTuple::new(py, [first, py.get_type::<PyValueError>().into_any()])?,
            Builtin::Runtime => {
                PyTuple::new(py, [first, py.get_type::<PyRuntimeError>().into_any()])?
            }
        };
        let dict = PyDict::new(py);
        dict.set_item("__module__", "battery_fl")?;
        dict.set_item("__doc__", doc)?;
        let ty = make_type.call1((name, bases, dict))?;
        out.push(ty.cast_into::<PyType>()?.unbind());
    }
    Ok(out)
}

/// The exception class `class` (created on first use).
pub(crate) fn class_type(py: Python<'_>, class: Class) -> PyResult<Bound<'_, PyType>> {
    let types = TYPES.get_or_try_init(py, || build(py))?;
    let i = CLASSES
        .iter()
        .position(|c| c.0 == class)
        .unwrap_or_default();
    Ok(types[i].bind(py).clone())
}

/// Add every exception class to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (class, name, _, _) in CLASSES {
        m.add(name, class_type(m.py(), class)?)?;
    }
    Ok(())
}

/// The Python class and snake-case name of a core error kind. Exhaustive on purpose.
fn classify(kind: ErrorKind) -> (Class, &'static str) {
    match kind {
        ErrorKind::Io => (Class::Data, "io"),
        ErrorKind::Parse => (Class::Data, "parse"),
        ErrorKind::InvalidData => (Class::Data, "invalid_data"),
        ErrorKind::Shape => (Class::Data, "shape"),
        ErrorKind::NotEnoughData => (Class::Data, "not_enough_data"),
        ErrorKind::InvalidConfig => (Class::Config, "invalid_config"),
        ErrorKind::Model => (Class::Model, "model"),
        ErrorKind::RejectedUpdate => (Class::Aggregation, "rejected_update"),
        ErrorKind::Aggregation => (Class::Aggregation, "aggregation"),
        ErrorKind::Privacy => (Class::Privacy, "privacy"),
        ErrorKind::BudgetExhausted => (Class::Privacy, "budget_exhausted"),
        ErrorKind::SecAgg => (Class::SecAgg, "sec_agg"),
        ErrorKind::BelowThreshold => (Class::SecAgg, "below_threshold"),
    }
}

/// The identifying fields of an error, as exception attributes.
fn attributes(err: &Error, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match err {
        Error::Io { path, .. } | Error::Parse { path, .. } => {
            value.setattr("path", path.to_string_lossy().into_owned())?;
        }
        Error::InvalidData {
            cell_id,
            cycle,
            field,
            ..
        } => {
            value.setattr("cell_id", cell_id)?;
            value.setattr("cycle", *cycle)?;
            value.setattr("field", field)?;
        }
        Error::InvalidConfig { field, .. } => value.setattr("field", field)?,
        Error::Shape { expected, got, .. } => {
            value.setattr("expected", expected.clone())?;
            value.setattr("got", got.clone())?;
        }
        Error::NotEnoughData { needed, got, .. } => {
            value.setattr("needed", *needed)?;
            value.setattr("got", *got)?;
        }
        Error::RejectedUpdate { client_id, .. } => value.setattr("client_id", client_id)?,
        Error::BudgetExhausted {
            epsilon,
            max_epsilon,
        } => {
            value.setattr("epsilon", *epsilon)?;
            value.setattr("max_epsilon", *max_epsilon)?;
        }
        Error::SecAgg { stage, .. } => value.setattr("stage", stage)?,
        Error::BelowThreshold { stage, needed, got } => {
            value.setattr("stage", stage)?;
            value.setattr("needed", *needed)?;
            value.setattr("got", *got)?;
        }
        // the other variants carry only a reason, which is in the message
        _ => {}
    }
    Ok(())
}

/// The Python exception for a core error. An i/o failure keeps the OS error (for example
/// `FileNotFoundError`) as its `__cause__`.
pub(crate) fn to_pyerr(err: Error) -> PyErr {
    Python::attach(|py| {
        let (class, kind) = classify(err.kind());
        let ty = match class_type(py, class) {
            Ok(ty) => ty,
            Err(e) => return e,
        };
        let pyerr = PyErr::from_type(ty, err.to_string());
        let value = pyerr.value(py);
        if let Err(e) = value
            .setattr("kind", kind)
            .and_then(|()| attributes(&err, value.as_any()))
        {
            return e;
        }
        if let Error::Io { source, .. } = err {
            pyerr.set_cause(py, Some(PyErr::from(source)));
        }
        pyerr
    })
}

/// `.or_raise()` turns a core `Result` into a `PyResult` with the mapped exception.
pub(crate) trait CoreResult<T> {
    /// Map the error to its Python exception.
    fn or_raise(self) -> PyResult<T>;
}

impl<T> CoreResult<T> for Result<T, Error> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_pyerr)
    }
}

/// A [`Error::InvalidConfig`] as a Python `ConfigError`.
pub(crate) fn config_error(field: &str, reason: impl Into<String>) -> PyErr {
    to_pyerr(Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    })
}

/// Lock an object's state. A lock poisoned by a panic in an earlier call (a bug) raises
/// `ModelError` instead of handing out state that may be half-updated.
///
/// Returns a core error (no Python involved), so it can run with the GIL released; a guard
/// is never held while the GIL is being acquired.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, Error> {
    mutex.lock().map_err(|_| Error::Model {
        reason: "object unusable after an earlier internal failure (poisoned lock)".into(),
    })
}
