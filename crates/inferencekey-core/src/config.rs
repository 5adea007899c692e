//! Configuration: explicit value > `INFERENCEKEY_*` environment variable > default.
//!
//! Both client builders resolve their base URL, project and credential here. A missing
//! credential or project, or a base URL that is not an `http`/`https` URL with a host,
//! is a [`ErrorKind::Configuration`](crate::ErrorKind::Configuration) error raised before
//! any request is made.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.inferencekey.com";
/// Environment variable holding the base URL (both clients).
pub const ENV_BASE_URL: &str = "INFERENCEKEY_BASE_URL";
/// Environment variable holding the default project slug (both clients).
pub const ENV_PROJECT: &str = "INFERENCEKEY_PROJECT";
/// Environment variable holding the control-plane token (`ik_sdk_…`).
pub const ENV_SDK_TOKEN: &str = "INFERENCEKEY_SDK_TOKEN";
/// Environment variable holding the default data-plane key (`ik_live_…`).
pub const ENV_API_KEY: &str = "INFERENCEKEY_API_KEY";

/// Options shared by both clients.
///
/// Build it from [`ClientOptions::default`] and change the fields you need; more fields
/// may be added in later versions.
///
/// Timeouts work together like this:
/// - `connect_timeout` bounds each TCP+TLS connect.
/// - `timeout` bounds one attempt: sending the request and reading the whole response
///   (for streams: until the response headers arrive).
/// - `stream_idle_timeout` bounds the gap between two content events of a chat stream;
///   keepalive comments and partial events do not reset it.
/// - `deadline`, when set, bounds a whole call: every attempt, every backoff sleep and
///   every `Retry-After` wait. A retry whose wait would end past the deadline is not
///   made; the last error is returned instead.
#[derive(Clone)]
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
    /// The implementation named in the `User-Agent` comment, e.g. `rust` or
    /// `CPython 3.12`.
    pub user_agent_impl: String,
    /// Upper bound for a whole call, retries and waits included (default none: each
    /// attempt is bounded by `timeout`, and waits by the retry rules).
    pub deadline: Option<Duration>,
    /// Extra headers sent with every request (used by tests to drive a fault layer).
    #[doc(hidden)]
    pub default_headers: Vec<(String, String)>,
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
            user_agent_impl: "rust".to_owned(),
            deadline: None,
            default_headers: Vec::new(),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may hold anything, credentials included: only names are shown.
        let header_names: Vec<&str> = self
            .default_headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        f.debug_struct("ClientOptions")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("user_agent_suffix", &self.user_agent_suffix)
            .field("user_agent_product", &self.user_agent_product)
            .field("user_agent_impl", &self.user_agent_impl)
            .field("deadline", &self.deadline)
            .field("default_headers", &header_names)
            .finish()
    }
}

impl ClientOptions {
    /// The `User-Agent` value: `<product> (<impl>; <os>)` plus the optional suffix.
    pub fn user_agent(&self) -> String {
        let mut ua = format!(
            "{} ({}; {} {})",
            self.user_agent_product,
            self.user_agent_impl,
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        let suffix = self.user_agent_suffix.as_deref().map(str::trim);
        if let Some(suffix) = suffix.filter(|s| !s.is_empty()) {
            ua.push(' ');
            ua.push_str(suffix);
        }
        ua
    }
}

/// An explicit value if given, else a non-blank environment variable.
pub(crate) fn resolve(explicit: Option<String>, env_var: &str) -> Option<String> {
    explicit.or_else(|| {
        std::env::var(env_var)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// The base URL to use: explicit > environment > default, normalised.
pub(crate) fn resolve_base_url(explicit: Option<String>) -> Result<String> {
    let raw = resolve(explicit, ENV_BASE_URL).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    normalize_base_url(&raw)
}

/// Checks that `raw` is an `http`/`https` URL with a host and strips trailing slashes,
/// so paths can be joined with exactly one `/`.
pub fn normalize_base_url(raw: &str) -> Result<String> {
    let trimmed = raw.trim();
    let invalid = |why: &str| {
        Error::configuration(format!(
            "invalid base URL {:?}: {why}",
            crate::wire::quote_body(trimmed.as_bytes())
        ))
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let url = url::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not carry a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not belong in the URL"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A project slug from an explicit argument, checked for blankness.
pub(crate) fn checked_project(project: &str) -> Result<String> {
    let p = project.trim();
    if p.is_empty() {
        return Err(Error::configuration("the project is blank"));
    }
    Ok(p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalised() {
        assert_eq!(
            normalize_base_url("https://api.example.com///").unwrap(),
            "https://api.example.com"
        );
        assert_eq!(
            normalize_base_url(" http://127.0.0.1:8080/prefix/ ").unwrap(),
            "http://127.0.0.1:8080/prefix"
        );
    }

    #[test]
    fn bad_base_urls_are_configuration_errors() {
        for bad in [
            "",
            "api.example.com",
            "ftp://x.example",
            "http://",
            "https://x.example/?a=1",
            "https://user:pw@x.example",
        ] {
            let e = normalize_base_url(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Configuration, "{bad}");
        }
    }

    /// The defaults RELIABILITY.md states.
    #[test]
    fn documented_defaults() {
        let o = ClientOptions::default();
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert_eq!(o.connect_timeout, Duration::from_secs(10));
        assert_eq!(o.stream_idle_timeout, Duration::from_secs(60));
        assert_eq!(o.max_retries, 2);
        assert_eq!(o.deadline, None);
    }

    #[test]
    fn user_agent_shape() {
        let mut o = ClientOptions::default();
        assert!(
            o.user_agent()
                .starts_with(&format!("inferencekey-rust/{} (rust; ", crate::VERSION))
        );
        o.user_agent_suffix = Some("my-app/2".into());
        assert!(o.user_agent().ends_with(") my-app/2"));
    }

    #[test]
    fn debug_hides_header_values() {
        let o = ClientOptions {
            default_headers: vec![("x-secret".into(), "ik_sdk_deadbeef_0000".into())],
            ..ClientOptions::default()
        };
        let dbg = format!("{o:?}");
        assert!(dbg.contains("x-secret"));
        assert!(!dbg.contains("deadbeef"));
    }
}
