//! Core errors become instances of the classes in `inferencekey.errors`.
//!
//! The classes are plain Python (picklable, documented, subclassable); the binding only
//! picks the class for the error's kind and passes the fields through.

use inferencekey_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Configuration => "ConfigurationError",
        ErrorKind::Validation => "ValidationError",
        ErrorKind::Auth => "AuthError",
        ErrorKind::Permission => "PermissionDenied",
        ErrorKind::Timeout => "InferenceKeyTimeout",
        // Python's own cancellation is `asyncio.CancelledError` raised by the event loop;
        // a cancellation the core reports is an interrupted API call.
        ErrorKind::Api | ErrorKind::Cancelled => "ApiError",
    }
}

/// The Python exception for a core error.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    build(py, error).unwrap_or_else(|e| e)
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let module = ERRORS_MODULE
        .get_or_try_init(py, || {
            PyModule::import(py, "inferencekey.errors").map(Bound::unbind)
        })?
        .bind(py);
    let class = module.getattr(class_name(error.kind()))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("status", error.status())?;
    kwargs.set_item("code", error.code())?;
    kwargs.set_item("request_id", error.request_id())?;
    let instance = class.call((error.message(),), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

/// A core error of kind `Api` with a message, for failures of the bridge itself.
pub(crate) fn api(py: Python<'_>, message: &str) -> PyErr {
    to_py(py, &Error::api(message))
}
