//! JSON values between serde and Python, and the small records shared by several calls.

use inferencekey_core::wire::Usage;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

pub(crate) fn json_to_py(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    match value {
        Value::Null => Ok(py.None()),
        Value::Bool(b) => b.into_py_any(py),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_py_any(py)
            } else if let Some(u) = n.as_u64() {
                u.into_py_any(py)
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_py_any(py)
            }
        }
        Value::String(s) => s.into_py_any(py),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            Ok(list.into_any().unbind())
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            Ok(dict.into_any().unbind())
        }
    }
}

/// Converts JSON-like Python data (dict with str keys, list, tuple, str, int, float,
/// bool, None). Anything else is a `TypeError` naming the path of the odd value.
pub(crate) fn py_to_json(value: &Bound<'_, PyAny>) -> PyResult<Value> {
    convert_at(value, "value")
}

fn convert_at(value: &Bound<'_, PyAny>, at: &str) -> PyResult<Value> {
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| PyTypeError::new_err(format!("{at}: {v} is not a JSON number")));
    }
    if let Ok(i) = value.extract::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(u) = value.extract::<u64>() {
        return Ok(Value::Number(u.into()));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        return Ok(Value::Object(dict_to_map(d, at)?));
    }
    if value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        let mut out = Vec::new();
        for (i, item) in value.try_iter()?.enumerate() {
            out.push(convert_at(&item?, &format!("{at}[{i}]"))?);
        }
        return Ok(Value::Array(out));
    }
    Err(PyTypeError::new_err(format!(
        "{at}: {} is not JSON data (use dict, list, str, int, float, bool or None)",
        value.get_type().name()?
    )))
}

pub(crate) fn dict_to_map(dict: &Bound<'_, PyDict>, at: &str) -> PyResult<Map<String, Value>> {
    let mut map = Map::new();
    for (k, v) in dict.iter() {
        let key: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{at}: keys must be strings")))?;
        let inner = convert_at(&v, &format!("{at}[{key:?}]"))?;
        map.insert(key, inner);
    }
    Ok(map)
}

/// `(prompt_tokens, completion_tokens, total_tokens)`, or `None`.
pub(crate) fn usage_to_py(py: Python<'_>, usage: Option<&Usage>) -> PyResult<Py<PyAny>> {
    match usage {
        None => Ok(py.None()),
        Some(u) => (u.prompt_tokens, u.completion_tokens, u.total_tokens).into_py_any(py),
    }
}

/// A loose JSON usage object (rerank) in the same tuple shape; missing counts are 0.
pub(crate) fn usage_value_to_py(py: Python<'_>, usage: Option<&Value>) -> PyResult<Py<PyAny>> {
    let Some(Value::Object(map)) = usage else {
        return Ok(py.None());
    };
    let count = |k: &str| map.get(k).and_then(Value::as_u64).unwrap_or(0);
    (
        count("prompt_tokens"),
        count("completion_tokens"),
        count("total_tokens"),
    )
        .into_py_any(py)
}
