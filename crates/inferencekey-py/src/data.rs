//! The native data-plane client, endpoints, streams and results.

use std::sync::{Arc, Mutex};

use inferencekey_core::wire::{ChatMessage, redact_token};
use inferencekey_core::{self as core, Error, TextChunk, TextRequest};
use pyo3::IntoPyObjectExt;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyType};

use crate::bridge::{Finish, Operation};
use crate::client::{self, ForkSafe};
use crate::convert::{dict_to_map, json_to_py, usage_to_py, usage_value_to_py};
use crate::errors;

#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct DataClient {
    client: ForkSafe<core::DataClient>,
    base_url: String,
    project: String,
    api_key: Option<String>,
}

impl DataClient {
    fn core(&self) -> core::Result<core::DataClient> {
        self.client.get()
    }
}

#[pymethods]
impl DataClient {
    #[new]
    #[pyo3(signature = (
        *, base_url=None, project=None, api_key=None, timeout=None, connect_timeout=None,
        stream_idle_timeout=None, max_retries=None, user_agent=None, user_agent_impl=None, _headers=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        base_url: Option<String>,
        project: Option<String>,
        api_key: Option<String>,
        timeout: Option<f64>,
        connect_timeout: Option<f64>,
        stream_idle_timeout: Option<f64>,
        max_retries: Option<u32>,
        user_agent: Option<String>,
        user_agent_impl: Option<String>,
        _headers: Option<Vec<(String, String)>>,
    ) -> PyResult<Self> {
        let build = || -> core::Result<(ForkSafe<core::DataClient>, Option<String>)> {
            let opts = client::options(
                timeout,
                connect_timeout,
                stream_idle_timeout,
                max_retries,
                user_agent,
                user_agent_impl,
                _headers,
            )?;
            let mut builder = core::DataClient::builder().options(opts);
            if let Some(u) = base_url {
                builder = builder.base_url(u);
            }
            if let Some(p) = project {
                builder = builder.project(p);
            }
            // The core resolves the key; this copy only feeds the redacted repr.
            let key = api_key
                .clone()
                .or_else(|| std::env::var(core::config::ENV_API_KEY).ok())
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty());
            if let Some(k) = api_key {
                builder = builder.api_key(k);
            }
            let safe = ForkSafe::new(Box::new(move || builder.clone().build()), "data client")?;
            Ok((safe, key))
        };
        let (client, key) = build().map_err(|e| errors::to_py(py, &e))?;
        let first = client.get().map_err(|e| errors::to_py(py, &e))?;
        Ok(DataClient {
            base_url: first.base_url().to_owned(),
            project: first.project().to_owned(),
            api_key: key.as_deref().map(redact_token),
            client,
        })
    }

    #[getter]
    fn base_url(&self) -> &str {
        &self.base_url
    }

    #[getter]
    fn project(&self) -> &str {
        &self.project
    }

    /// The redacted default key, if any.
    #[getter]
    fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.client.is_closed()
    }

    fn close(&self) {
        self.client.close();
    }

    /// An endpoint for one workload; no request is made.
    #[pyo3(signature = (workload_slug, api_key=None))]
    fn endpoint(
        slf: &Bound<'_, Self>,
        workload_slug: &str,
        api_key: Option<String>,
    ) -> PyResult<Endpoint> {
        let py = slf.py();
        let probe = slf
            .get()
            .core()
            .and_then(|c| c.endpoint(workload_slug, api_key.as_deref()))
            .map_err(|e| errors::to_py(py, &e))?;
        let redacted = match api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => redact_token(k),
            None => slf.get().api_key.clone().unwrap_or_default(),
        };
        Ok(Endpoint {
            client: slf.clone().unbind(),
            workload_slug: probe.workload_slug().into(),
            project_slug: probe.project_slug().to_owned(),
            api_key: api_key.map(|k| k.trim().into()),
            redacted,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "DataClient(base_url={:?}, project={:?}, api_key={:?})",
            self.base_url, self.project, self.api_key
        )
    }
}

#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct Endpoint {
    client: Py<DataClient>,
    workload_slug: Arc<str>,
    project_slug: String,
    api_key: Option<Arc<str>>,
    redacted: String,
}

type Messages = Vec<(String, Option<String>)>;

/// The arguments of a chat call, copied into a [`TextRequest`] on the runtime's thread
/// and kept with the work (see `Operation::deferred_keeping`): a prompt is read in place
/// from the Python string, and whatever the calling thread allocated is freed there.
struct TextArgs {
    prompt: Option<PyBackedStr>,
    messages: Option<Messages>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    extra: serde_json::Map<String, serde_json::Value>,
    timeout: Option<std::time::Duration>,
}

impl TextArgs {
    /// The request, copied from the arguments on the runtime's thread.
    fn to_request(&self) -> TextRequest {
        TextRequest {
            prompt: self.prompt.as_deref().map(str::to_owned),
            messages: self.messages.as_ref().map(|m| {
                m.iter()
                    .map(|(role, content)| ChatMessage {
                        role: role.clone(),
                        content: content.clone(),
                    })
                    .collect()
            }),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            extra: self.extra.clone(),
            timeout: self.timeout,
        }
    }
}

impl Endpoint {
    /// Builds the core endpoint when called: on the runtime's thread, per call, so that
    /// a forked child gets its own pool and the calling thread allocates nothing.
    fn core(&self) -> impl FnOnce() -> core::Result<core::Endpoint> + Send + 'static {
        let client = self.client.get().core();
        let slug = self.workload_slug.clone();
        let key = self.api_key.clone();
        move || client?.endpoint(&slug, key.as_deref())
    }

    fn request(
        prompt: Option<PyBackedStr>,
        messages: Option<Messages>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        extra: Option<&Bound<'_, PyDict>>,
        timeout: Option<f64>,
    ) -> PyResult<Result<TextArgs, Error>> {
        let extra = match extra {
            Some(d) => dict_to_map(d, "extra")?,
            None => Default::default(),
        };
        let timeout = match timeout.map(|t| client::seconds("timeout", t)).transpose() {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(TextArgs {
            prompt,
            messages,
            temperature,
            max_tokens,
            extra,
            timeout,
        }))
    }
}

fn text_result(r: core::TextResult) -> Finish {
    Box::new(move |py| {
        (
            r.text,
            r.model,
            r.finish_reason,
            usage_to_py(py, r.usage.as_ref())?,
            PyBytes::new(py, &r.raw),
        )
            .into_py_any(py)
    })
}

static TEXT_CHUNK: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static USAGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// An `inferencekey.types.TextChunk`, its slots set directly: a stream makes one per
/// token, and skipping the Python-level constructor more than halves what each costs.
fn chunk_to_py(py: Python<'_>, c: &TextChunk) -> PyResult<Py<PyAny>> {
    let class = TEXT_CHUNK.import(py, "inferencekey.types", "TextChunk")?;
    let chunk = class.call_method1(intern!(py, "__new__"), (class,))?;
    let usage = match &c.usage {
        None => py.None(),
        Some(u) => USAGE
            .import(py, "inferencekey.types", "Usage")?
            .call1((u.prompt_tokens, u.completion_tokens, u.total_tokens))?
            .unbind(),
    };
    chunk.setattr(intern!(py, "text"), c.text.as_str())?;
    chunk.setattr(intern!(py, "finish_reason"), c.finish_reason.as_deref())?;
    chunk.setattr(intern!(py, "usage"), usage)?;
    chunk.setattr(intern!(py, "_body"), PyBytes::new(py, &c.raw))?;
    chunk.setattr(intern!(py, "_raw"), py.None())?;
    Ok(chunk.unbind())
}

fn embed_result(r: core::EmbedResult) -> Finish {
    Box::new(move |py| {
        let bytes = PyBytes::new_with(py, r.values.len() * 4, |buf| {
            for (dst, v) in buf.chunks_exact_mut(4).zip(&r.values) {
                dst.copy_from_slice(&v.to_ne_bytes());
            }
            Ok(())
        })?;
        (
            r.count,
            r.dim,
            bytes,
            r.model,
            usage_to_py(py, r.usage.as_ref())?,
            PyBytes::new(py, &r.raw),
        )
            .into_py_any(py)
    })
}

fn rerank_result(r: core::RerankResult) -> Finish {
    Box::new(move |py| {
        let items = PyList::empty(py);
        for item in &r.results {
            let document = match &item.document {
                Some(d) => json_to_py(py, d)?,
                None => py.None(),
            };
            items.append((item.index, item.score, document))?;
        }
        (
            items,
            r.model,
            usage_value_to_py(py, r.usage.as_ref())?,
            PyBytes::new(py, &r.raw),
        )
            .into_py_any(py)
    })
}

#[pymethods]
impl Endpoint {
    #[getter]
    fn workload_slug(&self) -> &str {
        &self.workload_slug
    }

    #[getter]
    fn project_slug(&self) -> &str {
        &self.project_slug
    }

    /// The redacted key.
    #[getter]
    fn api_key(&self) -> &str {
        &self.redacted
    }

    #[pyo3(signature = (*, prompt=None, messages=None, temperature=None, max_tokens=None, extra=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate_text(
        &self,
        prompt: Option<PyBackedStr>,
        messages: Option<Messages>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        extra: Option<&Bound<'_, PyDict>>,
        timeout: Option<f64>,
    ) -> PyResult<Operation> {
        let args = Self::request(prompt, messages, temperature, max_tokens, extra, timeout)?;
        let endpoint = self.core();
        Ok(Operation::deferred_keeping(args, move |args| {
            let req = args
                .as_ref()
                .map(TextArgs::to_request)
                .map_err(Clone::clone);
            async move {
                let r = endpoint()?.generate_text(req?).await?;
                Ok(text_result(r))
            }
        }))
    }

    #[pyo3(signature = (*, prompt=None, messages=None, temperature=None, max_tokens=None, extra=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate_text_stream(
        &self,
        prompt: Option<PyBackedStr>,
        messages: Option<Messages>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        extra: Option<&Bound<'_, PyDict>>,
        timeout: Option<f64>,
    ) -> PyResult<Operation> {
        let args = Self::request(prompt, messages, temperature, max_tokens, extra, timeout)?;
        let endpoint = self.core();
        Ok(Operation::deferred_keeping(args, move |args| {
            let req = args
                .as_ref()
                .map(TextArgs::to_request)
                .map_err(Clone::clone);
            async move {
                let stream = endpoint()?.generate_text_stream(req?).await?;
                Ok(Box::new(move |py: Python<'_>| {
                    TextStream {
                        closer: stream.closer(),
                        inner: Mutex::new(Some(Arc::new(tokio::sync::Mutex::new(stream)))),
                    }
                    .into_py_any(py)
                }) as Finish)
            }
        }))
    }

    fn embed(&self, inputs: Vec<String>) -> Operation {
        let endpoint = self.core();
        Operation::deferred_keeping(inputs, move |inputs| {
            let inputs = inputs.clone();
            async move { Ok(embed_result(endpoint()?.embed(inputs).await?)) }
        })
    }

    #[pyo3(signature = (query, documents, top_n=None))]
    fn rerank(&self, query: String, documents: Vec<String>, top_n: Option<u32>) -> Operation {
        let endpoint = self.core();
        Operation::deferred_keeping((query, documents), move |(query, documents)| {
            let (query, documents) = (query.clone(), documents.clone());
            async move {
                Ok(rerank_result(
                    endpoint()?.rerank(&query, documents, top_n).await?,
                ))
            }
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Endpoint(project_slug={:?}, workload_slug={:?}, api_key={:?})",
            self.project_slug, self.workload_slug, self.redacted
        )
    }
}

type SharedStream = Arc<tokio::sync::Mutex<core::TextStream>>;

/// An open chat stream; chunks cross to Python in batches.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct TextStream {
    inner: Mutex<Option<SharedStream>>,
    /// Closes the stream even while a read holds it (from another task or thread).
    closer: core::StreamCloser,
}

/// Most chunks handed over at once: bounds the latency of a batch on a fast stream.
const MAX_BATCH: usize = 256;

#[pymethods]
impl TextStream {
    /// Waits for at least one chunk and returns every chunk already received as
    /// `TextChunk` objects; an empty list once the stream ended.
    fn next_batch(&self) -> Operation {
        let stream = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Operation::deferred(move || async move {
            let Some(stream) = stream else {
                return Ok(
                    Box::new(|py: Python<'_>| Ok(PyList::empty(py).into_any().unbind())) as Finish,
                );
            };
            let chunks = stream.lock().await.next_batch(MAX_BATCH).await?;
            Ok(Box::new(move |py: Python<'_>| {
                let list = PyList::empty(py);
                for c in &chunks {
                    list.append(chunk_to_py(py, c)?)?;
                }
                Ok(list.into_any().unbind())
            }) as Finish)
        })
    }

    /// Closes the connection, interrupting a read in flight (it returns no chunk);
    /// idempotent.
    fn close(&self) {
        self.closer.close();
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stream) = taken {
            if let Ok(mut s) = stream.try_lock() {
                s.close();
            }
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}
