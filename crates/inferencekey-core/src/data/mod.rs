//! Data plane: chat (plain and streamed), embeddings, rerank.
//!
//! CONTRACT STUB — signatures agreed with the bindings; bodies to be implemented.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::config::ClientOptions;
use crate::error::Result;
use crate::wire::{ChatMessage, Usage};

/// The data-plane client; hands out per-workload [`Endpoint`]s without network.
#[derive(Debug, Clone)]
pub struct DataClient {}

#[derive(Debug, Clone, Default)]
pub struct DataClientBuilder {}

impl DataClientBuilder {
    pub fn base_url(self, _url: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn project(self, _project: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn api_key(self, _key: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn options(self, _options: ClientOptions) -> Self {
        unimplemented!()
    }
    pub fn build(self) -> Result<DataClient> {
        unimplemented!()
    }
}

impl DataClient {
    pub fn builder() -> DataClientBuilder {
        DataClientBuilder::default()
    }
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }
    /// An endpoint for one workload; `api_key` overrides the client's default key.
    pub fn endpoint(&self, _workload_slug: &str, _api_key: Option<&str>) -> Result<Endpoint> {
        unimplemented!()
    }
}

/// A chat request: exactly one of `prompt` or `messages`.
#[derive(Debug, Clone, Default)]
pub struct TextRequest {
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Other OpenAI fields, passed through unchanged.
    pub extra: Map<String, Value>,
    /// Overrides the client's whole-request timeout for this call.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct TextResult {
    pub text: String,
    pub model: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The untouched response body.
    pub raw: Bytes,
}

#[derive(Debug, Clone)]
pub struct TextChunk {
    pub text: String,
    pub finish_reason: Option<String>,
    /// Set on the usage chunk (empty `choices`).
    pub usage: Option<Usage>,
    /// The event's `data` payload, untouched.
    pub raw: Bytes,
}

/// A streamed chat completion; ends only at `[DONE]`.
#[derive(Debug)]
pub struct TextStream {}

impl TextStream {
    /// The next chunk; `None` once `[DONE]` was seen.
    pub async fn next(&mut self) -> Option<Result<TextChunk>> {
        unimplemented!()
    }
    /// Waits for at least one chunk, then returns it with every chunk already decoded
    /// (at most `max`). Empty once the stream is finished.
    pub async fn next_batch(&mut self, _max: usize) -> Result<Vec<TextChunk>> {
        unimplemented!()
    }
    /// Closes the connection now; idempotent.
    pub fn close(&mut self) {
        unimplemented!()
    }
}

/// Embedding vectors in input order, stored row-major as one `f32` buffer.
#[derive(Debug, Clone)]
pub struct EmbedResult {
    pub count: usize,
    pub dim: usize,
    pub values: Vec<f32>,
    pub model: String,
    pub usage: Option<Usage>,
    pub raw: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RerankItem {
    pub index: usize,
    pub score: f64,
    pub document: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct RerankResult {
    /// Sorted by score, highest first.
    pub results: Vec<RerankItem>,
    pub model: Option<String>,
    pub usage: Option<Value>,
    pub raw: Bytes,
}

/// One workload's OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {}

impl Endpoint {
    pub fn project_slug(&self) -> &str {
        unimplemented!()
    }
    pub fn workload_slug(&self) -> &str {
        unimplemented!()
    }
    pub async fn generate_text(&self, _req: TextRequest) -> Result<TextResult> {
        unimplemented!()
    }
    /// Opens the stream: auth and validation errors are returned here.
    pub async fn generate_text_stream(&self, _req: TextRequest) -> Result<TextStream> {
        unimplemented!()
    }
    pub async fn embed(&self, _inputs: Vec<String>) -> Result<EmbedResult> {
        unimplemented!()
    }
    pub async fn rerank(
        &self,
        _query: &str,
        _documents: Vec<String>,
        _top_n: Option<u32>,
    ) -> Result<RerankResult> {
        unimplemented!()
    }
}
