//! Rust client for the InferenceKey inference platform.
//!
//! Two planes, two tokens:
//! - [`ManagementClient`] (control plane, `ik_sdk_` token): [`ensure`](ManagementClient::ensure)
//!   a workload from a [`WorkloadSpec`], follow its readiness until it serves
//!   ([`wait_until_ready`](ManagementClient::wait_until_ready)), and
//!   [`delete`](ManagementClient::delete) it.
//! - [`DataClient`] / [`Endpoint`] (data plane, `ik_live_` key): OpenAI-compatible chat
//!   completions (plain and streamed), embeddings and rerank.
//!
//! The [`wire`] module holds the protocol types shared with the local platform emulator.
//!
//! # Configuration
//! Explicit builder values win over the `INFERENCEKEY_*` environment variables, which
//! win over the defaults (see [`config`]). A missing token, project or key, or a base
//! URL that is not `http(s)://host…`, is an [`ErrorKind::Configuration`] error raised
//! before any request. Credentials never appear in `Debug` output, error messages or
//! logs; they are shown redacted (`ik_live_5c07e1aa…`).
//!
//! # Local checks
//! Every argument rule of the protocol (blank prompt, empty message list, temperature
//! out of range, a workload spec holding a token, a token of the wrong kind, …) is
//! checked before any request and reported as [`ErrorKind::Validation`] (or
//! [`ErrorKind::Permission`] with code `wrong_credential_type` for a token of the wrong
//! kind).
//!
//! # Retries and timeouts
//! - Retries use exponential backoff with full jitter (base 0.5 s, cap 8 s,
//!   [`ClientOptions::max_retries`] retries, 2 by default). A `Retry-After` header
//!   (seconds or HTTP date) replaces the backoff; above 60 s the error is returned
//!   instead of waiting.
//! - Every call retries 429, 503 and failures to connect. Reads, updates, deletes and
//!   inference calls also retry 502, 504 and connections lost before the status; reads,
//!   updates and deletes also retry 500. A create is never retried once its request may
//!   have reached the server, because the workload may exist already.
//! - A stream is retried only until its response headers arrive, never after an event
//!   was delivered.
//! - [`ClientOptions::connect_timeout`] bounds each connect, [`ClientOptions::timeout`]
//!   each attempt (overridable per chat call with [`TextRequest::timeout`]),
//!   [`ClientOptions::stream_idle_timeout`] the gap between content events of a chat
//!   stream (keepalive comments don't count), and [`ClientOptions::deadline`], when
//!   set, a whole call including retries and waits.
//! - [`ManagementClient::wait_until_ready`] holds its deadline even while a read is
//!   blocked or a reconnect is waiting.
//!
//! # Logging
//! Requests are logged with `tracing` at debug level: method, path, status, elapsed
//! time and attempt number; never a credential.

pub mod config;
pub mod control;
pub mod data;
pub mod error;
pub mod sse;
pub(crate) mod transport;
pub mod wire;

pub use config::ClientOptions;
pub use control::{
    DriftEntry, EndpointRef, EnsureAction, ManagementClient, ManagementClientBuilder, OnDrift,
    ReadinessFollower, WorkloadSpec,
};
pub use data::{
    DataClient, DataClientBuilder, EmbedResult, Endpoint, RerankItem, RerankResult, StreamCloser,
    TextChunk, TextRequest, TextResult, TextStream,
};
pub use error::{Error, ErrorKind, Result};
pub use wire::{Phase, ReadinessEvent};

/// This crate's version, as sent in the `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Compile-time proof that the long-lived values can move between tasks and threads:
/// clients are `Send + Sync + 'static`; streams and readiness followers are
/// `Send + 'static`, so they can be driven from a spawned tokio task.
const _: () = {
    const fn send_static<T: Send + 'static>() {}
    const fn shared<T: Send + Sync + 'static>() {}
    send_static::<TextStream>();
    shared::<StreamCloser>();
    send_static::<ReadinessFollower>();
    shared::<ManagementClient>();
    shared::<DataClient>();
    shared::<Endpoint>();
    shared::<Error>();
};
