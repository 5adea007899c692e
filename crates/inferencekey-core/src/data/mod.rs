//! Data plane: chat (plain and streamed), embeddings, rerank.

mod decode;
mod embeddings_scan;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Map, Value};

use crate::config::{self, ClientOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::{self, Call, RetryClass, Transport};
use crate::wire::{
    self, ChatMessage, ChatRequest, EmbeddingInput, EmbeddingsRequest, RerankRequest, TokenKind,
    Usage, codes, redact_token,
};

pub use stream::{StreamCloser, TextStream};

struct Inner {
    transport: Transport,
    project: String,
    api_key: Option<String>,
}

/// The data-plane client; hands out per-workload [`Endpoint`]s without network.
/// Cheap to clone; clones share one connection pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> inferencekey_core::Result<()> {
/// use inferencekey_core::{DataClient, TextRequest};
/// # use inferencekey_core::{ManagementClient, OnDrift, WorkloadSpec};
/// # let platform = inferencekey_local::LocalPlatform::start(inferencekey_local::LocalConfig {
/// #     readiness: inferencekey_local::ReadinessTimings::instant(),
/// #     ..Default::default()
/// # }).await.unwrap();
/// # let (base_url, project, api_key) =
/// #     (platform.base_url(), platform.project(), platform.api_key());
/// # ManagementClient::builder().base_url(base_url).project(project)
/// #     .sdk_token(platform.sdk_token()).build()?
/// #     .ensure(&WorkloadSpec { name: "Triage bot".into(), slug: "triage-bot".into(),
/// #         model: "Qwen/Qwen2.5-0.5B-Instruct".into(), backend: "vllm".into(),
/// #         ..Default::default() }, OnDrift::Reconcile, None).await?;
///
/// // Or `DataClient::from_env()` with the INFERENCEKEY_* variables.
/// let data = DataClient::builder()
///     .base_url(base_url)
///     .project(project)
///     .api_key(api_key)
///     .build()?;
/// let ep = data.endpoint("triage-bot", None)?;
///
/// let result = ep.generate_text(TextRequest::prompt("Summarise ticket 4411")).await?;
/// println!("{}", result.text);
///
/// let mut stream = ep.generate_text_stream(TextRequest::prompt("Tell me more")).await?;
/// while let Some(chunk) = stream.next().await {
///     print!("{}", chunk?.text);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DataClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DataClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataClient")
            .field("base_url", &self.inner.transport.base_url())
            .field("project", &self.inner.project)
            .field("api_key", &self.inner.api_key.as_deref().map(redact_token))
            .finish()
    }
}

/// Builder for [`DataClient`]: explicit values win over the environment.
#[derive(Clone, Default)]
pub struct DataClientBuilder {
    base_url: Option<String>,
    project: Option<String>,
    api_key: Option<String>,
    options: Option<ClientOptions>,
}

impl fmt::Debug for DataClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataClientBuilder")
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .field("api_key", &self.api_key.as_deref().map(redact_token))
            .field("options", &self.options)
            .finish()
    }
}

impl DataClientBuilder {
    /// Default: `INFERENCEKEY_BASE_URL`, else the production URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// Default: `INFERENCEKEY_PROJECT`; required.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
    /// The default key of every endpoint. Default: `INFERENCEKEY_API_KEY`; endpoints
    /// may bring their own.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = Some(options);
        self
    }
    /// Resolves the configuration; a missing project or a bad base URL is a
    /// configuration error. No request is made.
    pub fn build(self) -> Result<DataClient> {
        let base_url = config::resolve_base_url(self.base_url)?;
        let project = config::resolve(self.project, config::ENV_PROJECT).ok_or_else(|| {
            Error::configuration(format!(
                "no project: pass one or set {}",
                config::ENV_PROJECT
            ))
        })?;
        let project = config::checked_project(&project)?;
        let api_key = config::resolve(self.api_key, config::ENV_API_KEY)
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        let transport = Transport::new(base_url, self.options.unwrap_or_default())?;
        Ok(DataClient {
            inner: Arc::new(Inner {
                transport,
                project,
                api_key,
            }),
        })
    }
}

impl DataClient {
    pub fn builder() -> DataClientBuilder {
        DataClientBuilder::default()
    }

    /// A client configured from the `INFERENCEKEY_*` environment variables alone.
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }

    /// The normalised base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.inner.transport.base_url()
    }

    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        self.inner.transport.options()
    }

    /// An endpoint for one workload; `api_key` overrides the client's default key.
    ///
    /// No request is made. A missing key is a configuration error here; a key of the
    /// wrong kind is refused by every call, before any request.
    pub fn endpoint(&self, workload_slug: &str, api_key: Option<&str>) -> Result<Endpoint> {
        let slug = workload_slug.trim();
        if slug.is_empty() {
            return Err(Error::validation("the workload slug is blank"));
        }
        let key = api_key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .or_else(|| self.inner.api_key.clone())
            .ok_or_else(|| {
                Error::configuration(format!(
                    "no API key for workload '{slug}': pass one or set {}",
                    config::ENV_API_KEY
                ))
            })?;
        Ok(Endpoint {
            client: self.inner.clone(),
            workload_slug: slug.to_owned(),
            key: key.into(),
        })
    }
}

/// A chat request: exactly one of `prompt` or `messages`.
#[derive(Debug, Clone, Default)]
pub struct TextRequest {
    /// Sent as one user message.
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    /// Between 0 and 2.
    pub temperature: Option<f64>,
    /// At least 1.
    pub max_tokens: Option<u32>,
    /// Other OpenAI fields (`top_p`, `stop`, `stream_options`, …), passed through
    /// unchanged. `model`, `messages`, `stream`, `temperature` and `max_tokens` are set
    /// by the client and refused here.
    pub extra: Map<String, Value>,
    /// Overrides the client's whole-request timeout for this call (for a stream: until
    /// its response headers arrive).
    pub timeout: Option<Duration>,
}

impl TextRequest {
    /// A request with just a prompt.
    pub fn prompt(prompt: impl Into<String>) -> Self {
        TextRequest {
            prompt: Some(prompt.into()),
            ..TextRequest::default()
        }
    }

    /// A request with a message list.
    pub fn messages(messages: Vec<ChatMessage>) -> Self {
        TextRequest {
            messages: Some(messages),
            ..TextRequest::default()
        }
    }

    /// The wire body, after every local check of PROTOCOL.md §4.1.
    fn to_wire(&self, model: &str, stream: bool) -> Result<ChatRequest> {
        let messages = match (&self.prompt, &self.messages) {
            (Some(_), Some(_)) => {
                return Err(Error::validation(
                    "give either a prompt or messages, not both",
                ));
            }
            (None, None) => return Err(Error::validation("give a prompt or messages")),
            (Some(p), None) => {
                if p.trim().is_empty() {
                    return Err(Error::validation("the prompt is blank"));
                }
                vec![ChatMessage::new("user", p.clone())]
            }
            (None, Some(m)) => {
                if m.is_empty() {
                    return Err(Error::validation("the message list is empty"));
                }
                for (i, msg) in m.iter().enumerate() {
                    if msg.content.as_deref().is_none_or(|c| c.trim().is_empty()) {
                        return Err(Error::validation(format!(
                            "message {i} ({}) has blank content",
                            msg.role
                        )));
                    }
                }
                m.clone()
            }
        };
        if self.max_tokens == Some(0) {
            return Err(Error::validation("max_tokens must be at least 1"));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(Error::validation(format!(
                    "temperature must be between 0 and 2, got {t}"
                )));
            }
        }
        for reserved in ["model", "messages", "stream", "temperature", "max_tokens"] {
            if self.extra.contains_key(reserved) {
                return Err(Error::validation(format!(
                    "`{reserved}` is set by the client; it cannot be passed as an extra field"
                )));
            }
        }
        Ok(ChatRequest {
            model: model.to_owned(),
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            stream,
            stream_options: None,
            extra: self.extra.clone(),
        })
    }
}

/// A chat completion.
#[derive(Debug, Clone)]
pub struct TextResult {
    /// The first choice's text (`null` content is empty text).
    pub text: String,
    /// The model the server reports having served.
    pub model: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The untouched response body.
    pub raw: Bytes,
}

/// One event of a chat stream.
#[derive(Debug, Clone)]
pub struct TextChunk {
    /// The first choice's `delta.content` (empty when absent).
    pub text: String,
    pub finish_reason: Option<String>,
    /// Set on the usage chunk (empty `choices`).
    pub usage: Option<Usage>,
    /// The event's `data` payload, untouched.
    pub raw: Bytes,
}

/// Embedding vectors in input order, stored row-major as one `f32` buffer.
#[derive(Debug, Clone)]
pub struct EmbedResult {
    pub count: usize,
    pub dim: usize,
    /// `count * dim` values; row `i` is `values[i * dim..(i + 1) * dim]`.
    pub values: Vec<f32>,
    pub model: String,
    pub usage: Option<Usage>,
    pub raw: Bytes,
}

impl EmbedResult {
    /// The vector of input `i`.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        (i < self.count).then(|| &self.values[i * self.dim..(i + 1) * self.dim])
    }

    /// The vectors, in input order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(self.dim.max(1)).take(self.count)
    }
}

/// One scored document.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankItem {
    /// Index into the documents sent.
    pub index: usize,
    pub score: f64,
    pub document: Option<Value>,
}

/// A rerank result.
#[derive(Debug, Clone)]
pub struct RerankResult {
    /// Sorted by score, highest first.
    pub results: Vec<RerankItem>,
    pub model: Option<String>,
    pub usage: Option<Value>,
    pub raw: Bytes,
}

/// One workload's OpenAI-compatible endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    client: Arc<Inner>,
    workload_slug: String,
    key: Arc<str>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("project_slug", &self.client.project)
            .field("workload_slug", &self.workload_slug)
            .field("api_key", &redact_token(&self.key))
            .finish()
    }
}

impl Endpoint {
    pub fn project_slug(&self) -> &str {
        &self.client.project
    }

    pub fn workload_slug(&self) -> &str {
        &self.workload_slug
    }

    fn check_key(&self) -> Result<()> {
        match wire::token_kind(&self.key) {
            Some(TokenKind::Live) => Ok(()),
            Some(TokenKind::Sdk) => Err(Error::new(
                ErrorKind::Permission,
                format!(
                    "the data plane needs an API key (ik_live_…), got an SDK token {}",
                    redact_token(&self.key)
                ),
            )
            .with_code(codes::WRONG_CREDENTIAL_TYPE)),
            None => Err(Error::configuration(format!(
                "the API key {} does not start with ik_live_",
                redact_token(&self.key)
            ))),
        }
    }

    fn call(&self, route: &[&str], body: &impl serde::Serialize) -> Result<Call<'_>> {
        let mut segments = vec!["endpoint", &self.client.project, &self.workload_slug, "v1"];
        segments.extend_from_slice(route);
        Call::new(
            Method::POST,
            transport::path(&segments),
            &self.key,
            RetryClass::Inference,
        )
        .json(body)
    }

    /// A chat completion. Arguments are checked before any request.
    pub async fn generate_text(&self, req: TextRequest) -> Result<TextResult> {
        let body = req.to_wire(&self.workload_slug, false)?;
        self.check_key()?;
        let mut call = self.call(&["chat", "completions"], &body)?;
        call.timeout = req.timeout;
        let resp = self.client.transport.send(&call).await?;
        TextResult::from_response(resp.body)
    }

    /// Opens the stream: auth and validation errors are returned here.
    pub async fn generate_text_stream(&self, req: TextRequest) -> Result<TextStream> {
        let body = req.to_wire(&self.workload_slug, true)?;
        self.check_key()?;
        let mut call = self.call(&["chat", "completions"], &body)?;
        call.timeout = req.timeout;
        call.event_stream = true;
        let resp = self.client.transport.open(&call).await?;
        Ok(TextStream::new(
            resp,
            self.client.transport.options().stream_idle_timeout,
            self.workload_slug.clone(),
        ))
    }

    /// Embeds the inputs; vectors come back in input order.
    pub async fn embed(&self, inputs: Vec<String>) -> Result<EmbedResult> {
        if inputs.is_empty() {
            return Err(Error::validation("the input list is empty"));
        }
        self.check_key()?;
        let expected = inputs.len();
        let body = EmbeddingsRequest {
            model: self.workload_slug.clone(),
            input: EmbeddingInput::Many(inputs),
            extra: Map::new(),
        };
        let call = self.call(&["embeddings"], &body)?;
        let resp = self.client.transport.send(&call).await?;
        EmbedResult::from_response(resp.body, expected)
    }

    /// Scores `documents` against `query`, highest first; `top_n` keeps the best ones.
    pub async fn rerank(
        &self,
        query: &str,
        documents: Vec<String>,
        top_n: Option<u32>,
    ) -> Result<RerankResult> {
        if query.trim().is_empty() {
            return Err(Error::validation("the rerank query is blank"));
        }
        if documents.is_empty() {
            return Err(Error::validation("the document list is empty"));
        }
        if top_n == Some(0) {
            return Err(Error::validation("top_n must be at least 1"));
        }
        self.check_key()?;
        let count = documents.len();
        let body = RerankRequest {
            model: self.workload_slug.clone(),
            query: query.to_owned(),
            documents,
            top_n,
            extra: Map::new(),
        };
        let call = self.call(&["rerank"], &body)?;
        let resp = self.client.transport.send(&call).await?;
        RerankResult::from_response(resp.body, count, top_n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(req: TextRequest) -> Error {
        req.to_wire("w", false).unwrap_err()
    }

    #[test]
    fn local_chat_checks() {
        let both = TextRequest {
            prompt: Some("a".into()),
            messages: Some(vec![ChatMessage::new("user", "b")]),
            ..Default::default()
        };
        assert!(err(both).message().contains("not both"));
        assert!(
            err(TextRequest::default())
                .message()
                .contains("prompt or messages")
        );
        assert!(err(TextRequest::prompt("  ")).message().contains("blank"));
        assert!(
            err(TextRequest::messages(vec![]))
                .message()
                .contains("empty")
        );
        let blank = TextRequest::messages(vec![ChatMessage {
            role: "user".into(),
            content: None,
        }]);
        assert!(err(blank).message().contains("blank content"));
        let mut r = TextRequest::prompt("x");
        r.max_tokens = Some(0);
        assert!(err(r).message().contains("max_tokens"));
        let mut r = TextRequest::prompt("x");
        r.temperature = Some(2.5);
        assert!(err(r).message().contains("temperature"));
        let mut r = TextRequest::prompt("x");
        r.temperature = Some(f64::NAN);
        assert!(err(r).message().contains("temperature"));
        let mut r = TextRequest::prompt("x");
        r.extra.insert("stream".into(), Value::Bool(true));
        assert_eq!(err(r).kind(), ErrorKind::Validation);
    }

    #[test]
    fn prompt_becomes_one_user_message() {
        let mut r = TextRequest::prompt("hi");
        r.extra.insert("top_p".into(), serde_json::json!(0.5));
        let w = r.to_wire("triage-bot", true).unwrap();
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "triage-bot", "messages": [{"role": "user", "content": "hi"}],
                               "stream": true, "top_p": 0.5})
        );
    }
}
