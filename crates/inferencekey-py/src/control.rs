//! The native control-plane client and readiness follower.

use std::sync::{Arc, Mutex};

use inferencekey_core::wire::redact_token;
use inferencekey_core::{self as core, Error, OnDrift, WorkloadSpec};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bridge::{Finish, Operation};
use crate::client::{self, ForkSafe};
use crate::convert::{dict_to_map, json_to_py, py_to_json};
use crate::errors;

#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct ManagementClient {
    client: ForkSafe<core::ManagementClient>,
    base_url: String,
    project: Option<String>,
    token: String,
}

impl ManagementClient {
    fn core(&self, py: Python<'_>) -> PyResult<core::ManagementClient> {
        self.client.get().map_err(|e| errors::to_py(py, &e))
    }
}

fn string_field(spec: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<String>> {
    match spec.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
        _ => Ok(None),
    }
}

/// The spec as a dict with the keys of `WorkloadSpec` (unknown keys were refused on the
/// Python side).
fn workload_spec(spec: &Bound<'_, PyDict>) -> PyResult<WorkloadSpec> {
    let required =
        |key: &str| -> PyResult<String> { Ok(string_field(spec, key)?.unwrap_or_default()) };
    let config = match spec.get_item("config")? {
        Some(v) if !v.is_none() => Some(dict_to_map(v.cast::<PyDict>()?, "config")?),
        _ => None,
    };
    let execution_policy_config = match spec.get_item("execution_policy_config")? {
        Some(v) if !v.is_none() => Some(py_to_json(&v)?),
        _ => None,
    };
    Ok(WorkloadSpec {
        name: required("name")?,
        slug: required("slug")?,
        model: required("model")?,
        backend: required("backend")?,
        task_type: string_field(spec, "task_type")?,
        description: string_field(spec, "description")?,
        project: string_field(spec, "project")?,
        command: string_field(spec, "command")?,
        vllm_version: string_field(spec, "vllm_version")?,
        config,
        worker_id: string_field(spec, "worker_id")?,
        gpu_resource_id: string_field(spec, "gpu_resource_id")?,
        execution_policy: string_field(spec, "execution_policy")?,
        execution_policy_config,
    })
}

fn endpoint_ref(reference: core::EndpointRef) -> Finish {
    Box::new(move |py| {
        let plan = PyList::empty(py);
        for entry in &reference.plan {
            plan.append((
                entry.field.as_str(),
                json_to_py(py, &entry.live)?,
                json_to_py(py, &entry.desired)?,
            ))?;
        }
        (
            reference.project_slug,
            reference.workload_slug,
            reference.action.as_str(),
            plan,
        )
            .into_py_any(py)
    })
}

#[pymethods]
impl ManagementClient {
    #[new]
    #[pyo3(signature = (
        *, base_url=None, project=None, sdk_token=None, timeout=None, connect_timeout=None,
        stream_idle_timeout=None, max_retries=None, user_agent=None, user_agent_impl=None, _headers=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        base_url: Option<String>,
        project: Option<String>,
        sdk_token: Option<String>,
        timeout: Option<f64>,
        connect_timeout: Option<f64>,
        stream_idle_timeout: Option<f64>,
        max_retries: Option<u32>,
        user_agent: Option<String>,
        user_agent_impl: Option<String>,
        _headers: Option<Vec<(String, String)>>,
    ) -> PyResult<Self> {
        let build = || -> core::Result<(ForkSafe<core::ManagementClient>, String)> {
            let opts = client::options(
                timeout,
                connect_timeout,
                stream_idle_timeout,
                max_retries,
                user_agent,
                user_agent_impl,
                _headers,
            )?;
            let mut builder = core::ManagementClient::builder().options(opts);
            if let Some(u) = base_url {
                builder = builder.base_url(u);
            }
            if let Some(p) = project {
                builder = builder.project(p);
            }
            // The core resolves the token; this copy only feeds the redacted repr.
            let token = sdk_token
                .clone()
                .or_else(|| std::env::var(core::config::ENV_SDK_TOKEN).ok())
                .unwrap_or_default();
            if let Some(t) = sdk_token {
                builder = builder.sdk_token(t);
            }
            let safe = ForkSafe::new(
                Box::new(move || builder.clone().build()),
                "management client",
            )?;
            Ok((safe, token))
        };
        let (client, token) = build().map_err(|e| errors::to_py(py, &e))?;
        let first = client.get().map_err(|e| errors::to_py(py, &e))?;
        Ok(ManagementClient {
            base_url: first.base_url().to_owned(),
            project: first.project().map(str::to_owned),
            token: redact_token(token.trim()),
            client,
        })
    }

    #[getter]
    fn base_url(&self) -> &str {
        &self.base_url
    }

    #[getter]
    fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The redacted token.
    #[getter]
    fn sdk_token(&self) -> &str {
        &self.token
    }

    #[getter]
    fn closed(&self) -> bool {
        self.client.is_closed()
    }

    fn close(&self) {
        self.client.close();
    }

    #[pyo3(signature = (spec, on_drift, project=None))]
    fn ensure(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, PyDict>,
        on_drift: &str,
        project: Option<String>,
    ) -> PyResult<Operation> {
        let spec = workload_spec(spec)?;
        let mode: OnDrift = on_drift.parse().map_err(|e| errors::to_py(py, &e))?;
        let client = self.core(py)?;
        Ok(Operation::deferred(move || async move {
            let reference = client.ensure(&spec, mode, project.as_deref()).await?;
            Ok(endpoint_ref(reference))
        }))
    }

    #[pyo3(signature = (workload_slug, project=None))]
    fn delete(
        &self,
        py: Python<'_>,
        workload_slug: String,
        project: Option<String>,
    ) -> PyResult<Operation> {
        let client = self.core(py)?;
        Ok(Operation::deferred(move || async move {
            let existed = client.delete(&workload_slug, project.as_deref()).await?;
            Ok(Box::new(move |py: Python<'_>| existed.into_py_any(py)) as Finish)
        }))
    }

    /// A follower of the readiness stream; no request is made until `next` runs.
    #[pyo3(signature = (workload_slug, project=None))]
    fn readiness(
        &self,
        py: Python<'_>,
        workload_slug: &str,
        project: Option<&str>,
    ) -> PyResult<ReadinessFollower> {
        let follower = self
            .core(py)?
            .readiness(workload_slug, project)
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(ReadinessFollower {
            inner: Mutex::new(Some(Arc::new(tokio::sync::Mutex::new(follower)))),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "ManagementClient(base_url={:?}, project={:?}, sdk_token={:?})",
            self.base_url, self.project, self.token
        )
    }
}

type SharedFollower = Arc<tokio::sync::Mutex<core::ReadinessFollower>>;

/// Readiness events one at a time, each read bounded by a caller-chosen slice so the
/// Python side can redraw its progress line and enforce its deadline.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct ReadinessFollower {
    inner: Mutex<Option<SharedFollower>>,
}

#[pymethods]
impl ReadinessFollower {
    /// The next event as `(phase, message, elapsed_ms, step)`, or `None` when `timeout`
    /// seconds passed without one (the stream stays open).
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Operation> {
        let slice = client::seconds("timeout", timeout).map_err(|e| errors::to_py(py, &e))?;
        let follower = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| errors::api(py, "the readiness stream is closed"))?;
        Ok(Operation::deferred(move || async move {
            let mut follower = follower.lock().await;
            match tokio::time::timeout(slice, follower.next()).await {
                Err(_) => Ok(Box::new(|py: Python<'_>| Ok(py.None())) as Finish),
                Ok(None) => Err(Error::api(
                    "the readiness stream ended without a terminal event",
                )),
                Ok(Some(Err(e))) => Err(e),
                Ok(Some(Ok(event))) => Ok(Box::new(move |py: Python<'_>| {
                    (
                        event.phase.as_str(),
                        event.message,
                        event.elapsed_ms,
                        event.step,
                    )
                        .into_py_any(py)
                }) as Finish),
            }
        }))
    }

    /// Closes the stream (at once when no read is in flight, else when it ends).
    fn close(&self) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(taken);
    }
}
