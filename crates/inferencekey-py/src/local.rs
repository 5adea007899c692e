//! The embedded local platform, run on the shared runtime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use inferencekey_core::Error;
use inferencekey_local::{self as local, LocalConfig, ReadinessTimings};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::bridge::{Finish, Operation};
use crate::client::seconds;
use crate::convert::json_to_py;
use crate::errors;

fn timings(py: Python<'_>, readiness: &Bound<'_, PyAny>) -> PyResult<ReadinessTimings> {
    if let Ok(name) = readiness.cast::<PyString>() {
        return match name.to_str()? {
            "instant" => Ok(ReadinessTimings::instant()),
            "demo" => Ok(ReadinessTimings::demo()),
            other => Err(PyValueError::new_err(format!(
                "readiness must be 'instant', 'demo', a number of seconds per phase or a \
                 mapping of phase timings; got {other:?}"
            ))),
        };
    }
    let secs = |what: &str, v: f64| -> PyResult<Duration> {
        if v == 0.0 {
            return Ok(Duration::ZERO);
        }
        seconds(what, v).map_err(|e| errors::to_py(py, &e))
    };
    if let Ok(each) = readiness.extract::<f64>() {
        return Ok(ReadinessTimings::uniform(secs("readiness", each)?));
    }
    let Ok(map) = readiness.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(
            "readiness must be a str, a number or a dict of phase timings",
        ));
    };
    let mut t = ReadinessTimings::instant();
    for (k, v) in map.iter() {
        let key: String = k.extract()?;
        let d = secs(&key, v.extract()?)?;
        match key.as_str() {
            "scheduling" => t.scheduling = d,
            "provisioning" => t.provisioning = d,
            "image_pull" => t.image_pull = d,
            "weights_download" => t.weights_download = d,
            "model_load" => t.model_load = d,
            "health_check" => t.health_check = d,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown readiness timing {other:?} (known: scheduling, provisioning, \
                     image_pull, weights_download, model_load, health_check)"
                )));
            }
        }
    }
    Ok(t)
}

/// A running emulator; `start` returns an operation that yields one.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct LocalPlatform {
    inner: Mutex<Option<local::LocalPlatform>>,
    base_url: String,
    project: String,
    sdk_token: String,
    read_only_token: String,
    api_key: String,
}

impl LocalPlatform {
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(&local::LocalPlatform) -> T) -> PyResult<T> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(p) => Ok(f(p)),
            None => Err(errors::api(py, "the local platform is stopped")),
        }
    }
}

#[pymethods]
impl LocalPlatform {
    #[staticmethod]
    #[pyo3(signature = (
        *, project=None, port=0, readiness=None, keepalive_interval=None, token_rate=None,
        embedding_dim=None, upstreams=None, upstream_api_keys=None, failing_slugs=None,
        state_file=None, enable_faults=false, run_commands=false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        project: Option<String>,
        port: u16,
        readiness: Option<&Bound<'_, PyAny>>,
        keepalive_interval: Option<f64>,
        token_rate: Option<f64>,
        embedding_dim: Option<usize>,
        upstreams: Option<HashMap<String, String>>,
        upstream_api_keys: Option<HashMap<String, String>>,
        failing_slugs: Option<Vec<String>>,
        state_file: Option<PathBuf>,
        enable_faults: bool,
        run_commands: bool,
    ) -> PyResult<Operation> {
        let mut config = LocalConfig {
            port,
            token_rate,
            enable_faults,
            state_file,
            run_commands,
            ..LocalConfig::default()
        };
        if let Some(p) = project {
            config.project = p;
        }
        if let Some(r) = readiness {
            config.readiness = timings(py, r)?;
        }
        if let Some(k) = keepalive_interval {
            config.keepalive_interval =
                seconds("keepalive_interval", k).map_err(|e| errors::to_py(py, &e))?;
        }
        if let Some(d) = embedding_dim {
            config.embedding_dim = d;
        }
        if let Some(u) = upstreams {
            config.upstreams = u;
        }
        if let Some(k) = upstream_api_keys {
            config.upstream_api_keys = k;
        }
        if let Some(f) = failing_slugs {
            config.failing_slugs = f;
        }
        Ok(Operation::new(async move {
            let platform = local::LocalPlatform::start(config).await.map_err(|e| {
                Error::configuration(format!("the local platform did not start: {e}"))
            })?;
            Ok(Box::new(move |py: Python<'_>| {
                LocalPlatform {
                    base_url: platform.base_url().to_owned(),
                    project: platform.project().to_owned(),
                    sdk_token: platform.sdk_token().to_owned(),
                    read_only_token: platform.read_only_token().to_owned(),
                    api_key: platform.api_key().to_owned(),
                    inner: Mutex::new(Some(platform)),
                }
                .into_py_any(py)
            }) as Finish)
        }))
    }

    #[getter]
    fn base_url(&self) -> &str {
        &self.base_url
    }

    #[getter]
    fn project(&self) -> &str {
        &self.project
    }

    #[getter]
    fn sdk_token(&self) -> &str {
        &self.sdk_token
    }

    #[getter]
    fn read_only_token(&self) -> &str {
        &self.read_only_token
    }

    #[getter]
    fn api_key(&self) -> &str {
        &self.api_key
    }

    #[getter]
    fn running(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A new `ik_live_` key of the configured project; grants are `project/workload` or
    /// `project/*`.
    fn mint_api_key(&self, py: Python<'_>, grants: Vec<String>) -> PyResult<String> {
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        self.with(py, |p| p.mint_api_key(&grants))
    }

    /// A new `ik_live_` key of another project.
    fn mint_api_key_in(
        &self,
        py: Python<'_>,
        project: &str,
        grants: Vec<String>,
    ) -> PyResult<String> {
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        self.with(py, |p| p.mint_api_key_in(project, &grants))
    }

    /// A new `ik_sdk_` token of `project` with the given scopes.
    fn mint_sdk_token(
        &self,
        py: Python<'_>,
        project: &str,
        scopes: Vec<String>,
    ) -> PyResult<String> {
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        self.with(py, |p| p.mint_sdk_token(project, &scopes))
    }

    /// Adds a project; returns `(project, sdk_token, read_only_token, api_key)`.
    fn add_project(
        &self,
        py: Python<'_>,
        name: &str,
    ) -> PyResult<(String, String, String, String)> {
        self.with(py, |p| {
            let c = p.add_project(name);
            (c.project, c.sdk_token, c.read_only_token, c.api_key)
        })
    }

    fn revoke(&self, py: Python<'_>, token: &str) -> PyResult<bool> {
        self.with(py, |p| p.revoke(token))
    }

    /// The current `(phase, message)` of a workload, or `None`.
    fn phase(
        &self,
        py: Python<'_>,
        project: &str,
        slug: &str,
    ) -> PyResult<Option<(String, String)>> {
        self.with(py, |p| {
            p.phase(project, slug)
                .map(|(phase, message)| (phase.as_str().to_owned(), message))
        })
    }

    /// Every stored workload as a dict, in creation order.
    fn workloads(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let all = self.with(py, |p| p.workloads())?;
        all.iter()
            .map(|w| {
                let value = serde_json::to_value(w)
                    .map_err(|e| errors::api(py, &format!("workload not serialisable: {e}")))?;
                json_to_py(py, &value)
            })
            .collect()
    }

    /// Stops serving and waits for open connections to close; idempotent.
    fn stop(&self) -> Operation {
        let platform = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        Operation::new(async move {
            if let Some(p) = platform {
                p.shutdown().await;
            }
            Ok(Box::new(|py: Python<'_>| Ok(py.None())) as Finish)
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "LocalPlatform(base_url={:?}, project={:?})",
            self.base_url, self.project
        )
    }
}
