//! Protocol types shared by the client and the local platform emulator.
//!
//! Everything here is plain data plus the few pure functions the protocol defines
//! (slug canonicalisation, token parsing and redaction, error-body decoding), so the
//! client and the emulator cannot drift apart. Readers ignore unknown fields.

mod chat;
mod embeddings;
mod error;
mod readiness;
mod rerank;
mod slug;
mod token;
mod workload;

pub use chat::{
    ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatDelta, ChatMessage, ChatRequest,
    StreamOptions, Usage,
};
pub use embeddings::{EmbeddingInput, EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse};
pub use error::{
    DecodedError, ErrorBody, ErrorEnvelope, MAX_QUOTED_BODY_CHARS, decode_error_body, quote_body,
};
pub use readiness::{Phase, ReadinessEvent};
pub use rerank::{RerankRequest, RerankResponse, RerankResultItem};
pub use slug::canonical_slug;
pub use token::{TokenKind, redact_token, token_kind};
pub use workload::{CreateWorkload, Nullable, PatchWorkload, Workload, decode_workload_list};

/// Well-known error codes of the protocol (PROTOCOL.md §2.2).
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const VALIDATION_ERROR: &str = "validation_error";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const WRONG_CREDENTIAL_TYPE: &str = "wrong_credential_type";
    pub const PROJECT_SCOPE_MISMATCH: &str = "project_scope_mismatch";
    pub const SCOPE_INSUFFICIENT: &str = "scope_insufficient";
    pub const NOT_FOUND: &str = "not_found";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const INTERNAL: &str = "internal";
    pub const UPSTREAM_UNAVAILABLE: &str = "upstream_unavailable";
    pub const UPSTREAM_ERROR: &str = "upstream_error";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// A data-plane route the workload's task type does not serve \[P\].
    pub const UNSUPPORTED_TASK: &str = "unsupported_task";

    // Codes the client sets on errors it raises itself (never sent by a server).

    /// A chat stream ended before `[DONE]`.
    pub const STREAM_TRUNCATED: &str = "stream_truncated";
    /// A readiness stream reported the `error` phase.
    pub const WORKLOAD_ERROR: &str = "workload_error";
    /// `ensure` with `OnDrift::Fail` (or a non-patchable change) found drift.
    pub const DRIFT_DETECTED: &str = "drift_detected";
    /// A success response whose body the client could not use.
    pub const MALFORMED_RESPONSE: &str = "malformed_response";
}

/// The `[DONE]` sentinel that ends every chat stream.
pub const DONE_SENTINEL: &str = "[DONE]";
