//! Configuration: explicit value > `INFERENCEKEY_*` environment variable > default.
//!
//! CONTRACT STUB — to be completed by the core implementation.

use std::time::Duration;

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.inferencekey.com";
/// Environment variables read by the clients.
pub const ENV_BASE_URL: &str = "INFERENCEKEY_BASE_URL";
pub const ENV_PROJECT: &str = "INFERENCEKEY_PROJECT";
pub const ENV_SDK_TOKEN: &str = "INFERENCEKEY_SDK_TOKEN";
pub const ENV_API_KEY: &str = "INFERENCEKEY_API_KEY";

/// Options shared by both clients.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout for one attempt (default 60 s); per-call overrides exist.
    pub timeout: Duration,
    /// TCP+TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Longest gap between two content events of a stream (default 60 s). Keepalive
    /// comments do not reset it.
    pub stream_idle_timeout: Duration,
    /// Retries after the first attempt (default 2).
    pub max_retries: u32,
    /// Appended to the `User-Agent`.
    pub user_agent_suffix: Option<String>,
    /// The product token that starts the `User-Agent`, e.g. `inferencekey-rust/0.1.0`;
    /// the Python bindings set `inferencekey-py/<version>`.
    pub user_agent_product: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(60),
            max_retries: 2,
            user_agent_suffix: None,
            user_agent_product: format!("inferencekey-rust/{}", crate::VERSION),
        }
    }
}
