//! HTTP transport: one pooled reqwest client per SDK client, the auth header, retries
//! (PROTOCOL.md §2.3), timeouts and error mapping (§2.1, §2.2).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::config::ClientOptions;
use crate::error::{Error, Result};
use crate::wire::{self, codes};

/// A `Retry-After` longer than this is not waited for: the error is returned at once.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// How much of an error body is read to find its code and message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Characters escaped in a path segment: everything but unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Joins percent-encoded segments into a path starting with `/`.
pub(crate) fn path(segments: &[&str]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
    out
}

/// Which failures a request may be retried after (PROTOCOL.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryClass {
    /// GET, PATCH, DELETE: 429, 500, 502, 503, 504, connect failures and resets before
    /// the status.
    Idempotent,
    /// Data-plane POSTs: as idempotent, except 500 (the method is not idempotent).
    Inference,
    /// POST create: only 429, 503 and failures before the request was written, since
    /// the workload may already exist after anything else.
    Create,
}

impl RetryClass {
    fn retries_status(self, status: u16) -> bool {
        match status {
            429 | 503 => true,
            502 | 504 => self != RetryClass::Create,
            500 => self == RetryClass::Idempotent,
            _ => false,
        }
    }
}

/// One logical call; the transport may make several attempts.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) token: &'a str,
    pub(crate) body: Option<Bytes>,
    pub(crate) event_stream: bool,
    pub(crate) class: RetryClass,
    /// Overrides the per-attempt timeout.
    pub(crate) timeout: Option<Duration>,
    /// Overrides the client's retry count.
    pub(crate) max_retries: Option<u32>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is left out on purpose.
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body_bytes", &self.body.as_ref().map(Bytes::len))
            .field("event_stream", &self.event_stream)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: String, token: &'a str, class: RetryClass) -> Self {
        Call {
            method,
            path,
            token,
            body: None,
            event_stream: false,
            class,
            timeout: None,
            max_retries: None,
        }
    }

    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::validation(format!("cannot encode the request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }
}

/// A successful response whose body was read whole.
#[derive(Debug)]
pub(crate) struct FullResponse {
    pub(crate) body: Bytes,
}

/// The HTTP layer shared by one SDK client and its clones.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base_url: String,
    /// `base_url` parsed once: a request URL is this with its path replaced, which
    /// spares every request parsing the scheme and host again.
    base: reqwest::Url,
    options: ClientOptions,
}

/// The outcome of one attempt.
enum Attempt<T> {
    Done(T),
    /// A failure, whether it may be retried, and the server's `Retry-After`.
    Failed(Error, bool, Option<Duration>),
}

impl Transport {
    pub(crate) fn new(base_url: String, options: ClientOptions) -> Result<Self> {
        install_crypto_provider();
        let mut headers = HeaderMap::new();
        for (name, value) in &options.default_headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::configuration(format!("invalid default header name {name:?}"))
            })?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::configuration(format!("invalid value for header {name}")))?;
            headers.append(name, value);
        }
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent())
            .default_headers(headers)
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .tls_backend_preconfigured(tls_config()?)
            .build()
            .map_err(|e| {
                Error::configuration(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        let base = reqwest::Url::parse(&base_url)
            .map_err(|e| Error::configuration(format!("invalid base URL {base_url:?}: {e}")))?;
        Ok(Transport {
            http,
            base_url,
            base,
            options,
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The base URL with `path` (percent-encoded, starting with `/`) appended.
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        // The base URL carries no trailing slash, so its own path is empty or a prefix.
        let prefix = self.base.path().trim_end_matches('/');
        if prefix.is_empty() {
            url.set_path(path);
        } else {
            url.set_path(&format!("{prefix}{path}"));
        }
        url
    }

    /// Sends `call` with retries and reads the whole success body.
    pub(crate) async fn send(&self, call: &Call<'_>) -> Result<FullResponse> {
        self.with_retries(call, |resp, attempt_deadline| async move {
            match tokio::time::timeout_at(attempt_deadline.into(), read_body(resp)).await {
                Ok(Ok(body)) => Ok(FullResponse { body }),
                Ok(Err(e)) => Err(Error::api(format!(
                    "{} {}: the response body could not be read: {}",
                    call.method,
                    call.path,
                    chain(&e)
                ))),
                Err(_) => Err(self.timeout_error(call)),
            }
        })
        .await
    }

    /// Sends `call` with retries and returns the response once its status is a success,
    /// leaving the body to the caller (streams).
    pub(crate) async fn open(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        self.with_retries(call, |resp, _| async move { Ok(resp) })
            .await
    }

    async fn with_retries<T, F, Fut>(&self, call: &Call<'_>, on_success: F) -> Result<T>
    where
        F: Fn(reqwest::Response, Instant) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let overall = self.options.deadline.map(|d| Instant::now() + d);
        let max_retries = call.max_retries.unwrap_or(self.options.max_retries);
        let mut backoff = backoff_ceilings();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let mut attempt_deadline = started + call.timeout.unwrap_or(self.options.timeout);
            if let Some(o) = overall {
                attempt_deadline = attempt_deadline.min(o);
            }
            let (error, retryable, retry_after) = match tokio::time::timeout_at(
                attempt_deadline.into(),
                self.attempt(call, attempt, started),
            )
            .await
            {
                Ok(Attempt::Done(resp)) => return on_success(resp, attempt_deadline).await,
                Ok(Attempt::Failed(e, retryable, retry_after)) => (e, retryable, retry_after),
                Err(_) => (self.timeout_error(call), false, None),
            };
            if !retryable || attempt > max_retries {
                return Err(error);
            }
            let delay = match retry_after {
                Some(d) if d > MAX_RETRY_AFTER => {
                    tracing::debug!(
                        retry_after_s = d.as_secs(),
                        "Retry-After exceeds the cap; not retrying"
                    );
                    return Err(error);
                }
                Some(d) => d,
                None => full_jitter(backoff.next().unwrap_or(BACKOFF_CAP)),
            };
            if overall.is_some_and(|o| Instant::now() + delay >= o) {
                return Err(error);
            }
            tracing::debug!(
                method = %call.method,
                path = %call.path,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt, up to the response status (and the error body when not a success).
    async fn attempt(
        &self,
        call: &Call<'_>,
        attempt: u32,
        started: Instant,
    ) -> Attempt<reqwest::Response> {
        let url = self.url(&call.path);
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, format!("Bearer {}", call.token))
            .header(
                ACCEPT,
                if call.event_stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            );
        if let Some(body) = &call.body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // A connect failure means nothing was written, so every method may
                // retry it; any later failure may have reached the server.
                let retryable = e.is_connect() || call.class != RetryClass::Create;
                tracing::debug!(
                    method = %call.method,
                    path = %call.path,
                    attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    connect = e.is_connect(),
                    "request failed before a response"
                );
                return Attempt::Failed(self.transport_error(call, &e), retryable, None);
            }
        };
        let status = resp.status();
        tracing::debug!(
            method = %call.method,
            path = %call.path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            attempt,
            "response"
        );
        if status.is_success() {
            return Attempt::Done(resp);
        }
        let retry_after = retry_after(resp.headers());
        let retryable = call.class.retries_status(status.as_u16());
        Attempt::Failed(error_from_response(resp).await, retryable, retry_after)
    }

    fn timeout_error(&self, call: &Call<'_>) -> Error {
        let t = call.timeout.unwrap_or(self.options.timeout);
        Error::timeout(format!(
            "{} {} timed out (timeout {:.1} s{})",
            call.method,
            call.path,
            t.as_secs_f64(),
            match self.options.deadline {
                Some(d) => format!(", deadline {:.1} s", d.as_secs_f64()),
                None => String::new(),
            }
        ))
    }

    fn transport_error(&self, call: &Call<'_>, e: &reqwest::Error) -> Error {
        let what = if e.is_connect() {
            "could not connect"
        } else {
            "the connection failed"
        };
        let msg = format!("{} {}: {what}: {}", call.method, call.path, chain(e));
        if e.is_timeout() {
            Error::timeout(msg)
        } else {
            Error::api(msg)
        }
    }
}

/// The error for a non-success response, from whatever its body holds.
pub(crate) async fn error_from_response(resp: reqwest::Response) -> Error {
    let status = resp.status();
    let header_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    let decoded = wire::decode_error_body(&body);
    let message = decoded
        .message
        .map(|m| scrub_secrets(&m))
        .unwrap_or_else(|| {
            format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("error")
            )
        });
    Error::http(
        status.as_u16(),
        decoded.code,
        decoded.request_id.or(header_id),
        message,
    )
}

/// Reads at most `cap` bytes of a body; read errors end it early.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = cap - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

async fn read_body(resp: reqwest::Response) -> std::result::Result<Bytes, reqwest::Error> {
    resp.bytes().await
}

/// `Retry-After` as seconds (integer or decimal) or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let when = httpdate::parse_http_date(raw).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The ceilings of successive retry delays: 0.5, 1, 2, 4, then 8 s for ever.
fn backoff_ceilings() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_BASE)
        .with_max_delay(BACKOFF_CAP)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// Full jitter: a uniform delay between zero and the exponential ceiling.
fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(rand::rng().random::<f64>())
}

/// An error and its sources as one line; reqwest errors name the URL, which never holds
/// a secret.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Replaces anything shaped like a token with its redacted form, so a server message
/// that quotes a credential never reaches logs or exceptions.
pub(crate) fn scrub_secrets(text: &str) -> String {
    if !text.contains("ik_sdk_") && !text.contains("ik_live_") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = [rest.find("ik_sdk_"), rest.find("ik_live_")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push_str(&wire::redact_token(&tail[..end]));
        rest = &tail[end..];
    }
}

/// reqwest is built without a bundled crypto provider; use ring unless the process has
/// already chosen one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread installing a provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The environment variables that change which certificate authorities are trusted.
const CERT_ENV: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The TLS configuration every client uses: rustls with the process's crypto provider
/// (ring unless the host chose one), the platform's verifier and ALPN for HTTP/2 and
/// HTTP/1.1.
///
/// Loading the system's certificate authorities reads hundreds of files, several
/// milliseconds per client, so the configuration is built once and shared. It is
/// rebuilt when `SSL_CERT_FILE` or `SSL_CERT_DIR` change, so a client built after the
/// environment changed trusts what the environment now says.
fn tls_config() -> Result<rustls::ClientConfig> {
    type Cached = (Vec<Option<std::ffi::OsString>>, rustls::ClientConfig);
    static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

    let key: Vec<_> = CERT_ENV.iter().map(std::env::var_os).collect();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((cached_key, config)) = cache.as_ref()
        && *cached_key == key
    {
        return Ok(config.clone());
    }
    let cannot =
        |e: &dyn std::fmt::Display| Error::configuration(format!("cannot set up TLS: {e}"));
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier =
        rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| cannot(&e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cannot(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    *cache = Some((key, config.clone()));
    Ok(config)
}

/// A malformed success body: what was wrong, as an API error.
pub(crate) fn malformed(what: impl std::fmt::Display) -> Error {
    Error::api(what.to_string()).with_code(codes::MALFORMED_RESPONSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(
            path(&["api", "projects", "a b/c", "x-1"]),
            "/api/projects/a%20b%2Fc/x-1"
        );
    }

    #[test]
    fn request_urls_equal_the_joined_string_parsed() {
        let paths = [
            path(&["endpoint", "p", "a b/c", "v1", "chat", "completions"]),
            path(&["api", "projects", "é", "workloads"]),
            path(&["api", "workloads", ".."]),
        ];
        for base in [
            "http://127.0.0.1:8080",
            "https://api.example.com/prefix",
            "https://api.example.com/a/b",
        ] {
            let t = Transport::new(base.to_owned(), ClientOptions::default()).unwrap();
            for p in &paths {
                let expected = reqwest::Url::parse(&format!("{base}{p}")).unwrap();
                assert_eq!(t.url(p), expected, "{base} + {p}");
            }
        }
    }

    #[test]
    fn retry_table() {
        use RetryClass::*;
        for c in [Idempotent, Inference, Create] {
            assert!(c.retries_status(429));
            assert!(c.retries_status(503));
            assert!(!c.retries_status(400));
            assert!(!c.retries_status(404));
        }
        assert!(Idempotent.retries_status(502) && Inference.retries_status(504));
        assert!(!Create.retries_status(502) && !Create.retries_status(504));
        assert!(Idempotent.retries_status(500));
        assert!(!Inference.retries_status(500) && !Create.retries_status(500));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    /// The numbers RELIABILITY.md states.
    #[test]
    fn documented_backoff_and_caps() {
        let ceilings: Vec<f64> = backoff_ceilings()
            .take(7)
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(ceilings, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(60));
        assert_eq!(MAX_ERROR_BODY, 64 * 1024);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        for _ in 0..100 {
            assert!(full_jitter(Duration::from_secs(2)) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn secrets_are_scrubbed() {
        let token = format!("ik_live_5c07e1aa_{}", "f".repeat(64));
        let s = scrub_secrets(&format!("bad key {token}, really"));
        assert_eq!(s, "bad key ik_live_5c07e1aa…, really");
        assert_eq!(scrub_secrets("plain"), "plain");
    }
}
