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
    DataClient, DataClientBuilder, EmbedResult, Endpoint, RerankItem, RerankResult, TextChunk,
    TextRequest, TextResult, TextStream,
};
pub use error::{Error, ErrorKind, Result};
pub use wire::{Phase, ReadinessEvent};

/// This crate's version, as sent in the `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
