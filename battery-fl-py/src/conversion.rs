//! Conversions between Python objects and core types: numpy arrays, named parameters, JSON,
//! keyword-argument configs and OS randomness. No logic beyond type translation lives here.

use std::path::PathBuf;

use battery_fl_core::model::ModelParams;
use battery_fl_core::Error;
use numpy::ndarray::{Array1, ArrayD, IxDyn};
use numpy::{AllowTypeChange, PyArray1, PyArrayDyn, PyArrayLikeDyn};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::errors::CoreResult;

/// A float64 numpy array.
pub(crate) type F64Array<'py> = Bound<'py, PyArray1<f64>>;
/// A bool numpy array.
pub(crate) type BoolArray<'py> = Bound<'py, PyArray1<bool>>;

/// A float32 array of any shape, converted from any array-like (lists, other dtypes).
pub(crate) type ArrayIn<'py> = PyArrayLikeDyn<'py, f32, AllowTypeChange>;

/// A float64 vector moved (not copied) into a new numpy array.
pub(crate) fn vec_f64(py: Python<'_>, v: Vec<f64>) -> Bound<'_, PyArray1<f64>> {
    PyArray1::from_owned_array(py, Array1::from(v))
}

/// A float32 vector moved (not copied) into a new numpy array.
pub(crate) fn vec_f32(py: Python<'_>, v: Vec<f32>) -> Bound<'_, PyArray1<f32>> {
    PyArray1::from_owned_array(py, Array1::from(v))
}

/// A C-order buffer moved (not copied) into a numpy array of `shape`.
pub(crate) fn shaped_f32<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let got = data.len();
    let array = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|_| Error::Shape {
        what: "array buffer".into(),
        expected: shape.to_vec(),
        got: vec![got],
    });
    Ok(PyArrayDyn::from_owned_array(py, array.or_raise()?))
}

/// The values of an array in C order (a copy; works for any memory layout).
pub(crate) fn owned(array: &ArrayIn<'_>) -> (Vec<usize>, Vec<f32>) {
    let view = array.as_array();
    (view.shape().to_vec(), view.iter().copied().collect())
}

/// Names `000000`, `000001`, ... for positional parameter lists: sorting them (as
/// [`ModelParams`] does) keeps the list order.
fn positional_name(i: usize) -> String {
    format!("{i:06}")
}

/// Shapes and C-order values of a list of arrays (copies, safe to use without the GIL).
pub(crate) type Tensors = Vec<(Vec<usize>, Vec<f32>)>;

/// The shapes and values of a list of arrays.
pub(crate) fn tensors(arrays: &[ArrayIn<'_>]) -> Tensors {
    arrays.iter().map(owned).collect()
}

/// Tensors named `names` (in order) as [`ModelParams`].
pub(crate) fn named(names: Vec<String>, tensors: Tensors) -> Result<ModelParams, Error> {
    if names.len() != tensors.len() {
        return Err(Error::Shape {
            what: "number of parameter arrays".into(),
            expected: vec![names.len()],
            got: vec![tensors.len()],
        });
    }
    let triples = names
        .into_iter()
        .zip(tensors)
        .map(|(name, (shape, data))| (name, shape, data))
        .collect();
    ModelParams::new(triples)
}

/// A list of arrays as [`ModelParams`], named by `names` (or by position when `None`).
pub(crate) fn params_from_arrays(
    arrays: &[ArrayIn<'_>],
    names: Option<Vec<String>>,
) -> PyResult<ModelParams> {
    let names = names.unwrap_or_else(|| (0..arrays.len()).map(positional_name).collect());
    named(names, tensors(arrays)).or_raise()
}

/// Positional names for `n` tensors (see [`params_from_arrays`]).
pub(crate) fn positional_names(n: usize) -> Vec<String> {
    (0..n).map(positional_name).collect()
}

/// A core enum from its serde name (`"random"`, `"head_only"`, ...); an unknown name is a
/// `ConfigError` naming `field`.
pub(crate) fn enum_from_str<T: DeserializeOwned>(field: &str, value: &str) -> PyResult<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| crate::errors::config_error(field, format!("unknown value {value:?}")))
}

/// The tensors of `params`, in order, as new float32 arrays.
pub(crate) fn arrays_from_params<'py>(
    py: Python<'py>,
    params: &ModelParams,
) -> PyResult<Bound<'py, PyList>> {
    let arrays = params
        .params()
        .iter()
        .map(|p| shaped_f32(py, p.data.clone(), &p.shape))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, arrays)
}

/// A float32 array or a list of them: the two shapes an update comes in.
pub(crate) enum Update<'py> {
    /// One array.
    One(ArrayIn<'py>),
    /// A list (or tuple) of arrays.
    Many(Vec<ArrayIn<'py>>),
}

impl<'py> Update<'py> {
    /// Lists and tuples are lists of arrays; anything else is one array.
    pub(crate) fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
            Ok(Update::Many(obj.extract()?))
        } else {
            Ok(Update::One(obj.extract()?))
        }
    }

    /// As named parameters (one tensor named `000000` for a single array).
    pub(crate) fn to_params(&self) -> PyResult<ModelParams> {
        match self {
            Update::One(a) => params_from_arrays(std::slice::from_ref(a), None),
            Update::Many(v) => params_from_arrays(v, None),
        }
    }

    /// Back to the caller's shape: one array or a list.
    pub(crate) fn wrap(&self, py: Python<'py>, params: &ModelParams) -> PyResult<Py<PyAny>> {
        match self {
            Update::One(_) => {
                let p = &params.params()[0];
                Ok(shaped_f32(py, p.data.clone(), &p.shape)?
                    .into_any()
                    .unbind())
            }
            Update::Many(_) => Ok(arrays_from_params(py, params)?.into_any().unbind()),
        }
    }
}

/// JSON text of a serializable core value.
pub(crate) fn to_json<T: Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Parse {
            path: PathBuf::new(),
            reason: e.to_string(),
        })
        .or_raise()
}

/// A core value from JSON text.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> PyResult<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Parse {
            path: PathBuf::new(),
            reason: e.to_string(),
        })
        .or_raise()
}

/// A serializable core value as plain Python data (dicts, lists, numbers, strings).
pub(crate) fn to_python<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let text = to_json(value)?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// A config from a dict of settings, filling defaults; a key the config does not have, or a
/// value its setting cannot take, is an [`Error::InvalidConfig`] naming it (serde alone would
/// ignore typos, and its parse error names no key).
pub(crate) fn config_from_dict<T: DeserializeOwned + Serialize + Default>(
    dict: &Bound<'_, PyDict>,
    what: &str,
) -> PyResult<T> {
    let known = serde_json::to_value(T::default()).unwrap_or_default();
    for key in dict.keys() {
        let key: String = key.extract()?;
        if known.get(&key).is_none() {
            return Err(Error::InvalidConfig {
                field: format!("{what}.{key}"),
                reason: "unknown setting".into(),
            })
            .or_raise();
        }
    }
    let json = dict.py().import("json")?;
    let text = |obj: &Bound<'_, PyAny>| -> PyResult<String> {
        json.call_method1("dumps", (obj,))?.extract()
    };
    let err = match serde_json::from_str(&text(dict.as_any())?) {
        Ok(config) => return Ok(config),
        Err(err) => err,
    };
    // the first key whose value alone does not parse
    let mut field = what.to_string();
    for (key, value) in dict.iter() {
        let one = PyDict::new(dict.py());
        one.set_item(&key, value)?;
        if serde_json::from_str::<T>(&text(one.as_any())?).is_err() {
            field = format!("{what}.{}", key.extract::<String>()?);
            break;
        }
    }
    Err(Error::InvalidConfig {
        field,
        reason: err.to_string(),
    })
    .or_raise()
}

/// `n` bytes from the operating system's CSPRNG (`os.urandom`).
pub(crate) fn os_random<const N: usize>(py: Python<'_>) -> PyResult<[u8; N]> {
    let bytes = py.import("os")?.call_method1("urandom", (N,))?;
    let bytes = bytes.cast::<PyBytes>()?;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes.as_bytes());
    Ok(out)
}

/// A 32-byte secret seed: the given bytes, or fresh OS randomness when `None`.
pub(crate) fn seed32(py: Python<'_>, seed: Option<&[u8]>) -> PyResult<[u8; 32]> {
    match seed {
        None => os_random::<32>(py),
        Some(s) => <[u8; 32]>::try_from(s)
            .map_err(|_| Error::InvalidConfig {
                field: "seed".into(),
                reason: format!("need 32 bytes, got {}", s.len()),
            })
            .or_raise(),
    }
}

/// A 64-bit seed: the given one, or fresh OS randomness when `None`.
pub(crate) fn seed64(py: Python<'_>, seed: Option<u64>) -> PyResult<u64> {
    match seed {
        Some(s) => Ok(s),
        None => Ok(u64::from_le_bytes(os_random::<8>(py)?)),
    }
}

/// A Python `bytes` object.
pub(crate) fn bytes<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, data)
}
