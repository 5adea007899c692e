//! Fault injection for tests of client reliability. Off unless
//! [`LocalConfig::enable_faults`](crate::LocalConfig::enable_faults) is set.
//!
//! A request carrying the header `x-ik-fault: <spec>` gets the fault instead of, or on
//! top of, its normal handling. Faults apply before authentication, on every route.
//! An unknown spec is answered 400 `bad_request`. The binary enables faults only with
//! its undocumented `--enable-faults` flag; the Python `LocalPlatform` only with its
//! private `_enable_faults=True` argument; `inferencekey local` has no way to.
//!
//! Any spec may end with `;method=POST` (or another method): the fault then applies
//! only to requests of that method, and the others are handled normally.
//!
//! Two test-only routes exist while faults are enabled (and only then):
//!
//! - `GET /_faults/hits/{key}`: how many requests carried `x-ik-fault-key: {key}`, as
//!   `{"total": n, "GET": n, "POST": n, ...}`, so a test can count retries;
//! - `GET /_faults/connections`: `{"open": n}`, the connections the server holds open
//!   right now (the one asking included), so a test can see that a client closed its
//!   connections.
//!
//! | spec | effect |
//! |---|---|
//! | `status=429;retry_after=1` | that status with the error envelope (`rate_limited` for 429, `internal` for 500, `upstream_unavailable` for 502/503/504, else `internal`); `retry_after` adds `Retry-After` |
//! | `flap=N` | the first N requests with the same `x-ik-fault-key` value get 503 `upstream_unavailable`, later ones are handled normally (requests without the key header share one counter) |
//! | `reset` | the connection is closed before any response byte |
//! | `cut_after=N` | the real response's headers and first N body bytes are sent, then the connection is cut |
//! | `stall` | 200 `text/event-stream` headers, then nothing until shutdown |
//! | `keepalive_only` | 200 `text/event-stream` sending `: keepalive` every 100 ms until shutdown |
//! | `drip_ms=N` | the real response, its body sent one byte every N ms |
//! | `delay_ms=N` | the real response, after waiting N ms before handling the request |
//! | `huge=BYTES` | 200 JSON object of exactly BYTES bytes (one long string field) |
//! | `invalid_json` | 200 `application/json` whose body is not JSON |
//! | `html502` | 502 with an HTML page |
//! | `error_event` | 200 chat stream: a role chunk, one content chunk, then `data: {"error": {"code": "upstream_error", ...}}` and a close without `[DONE]` |
//! | `lost_response` | the request is handled (a create does create), then the connection is cut instead of answering |
//! | `drop_done` | the real response with its `data: [DONE]` event left out, then a clean end of the body |
//! | `hold_after_done` | the real response, whose body then stays open (no end, no more bytes) until the client leaves or shutdown |

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use inferencekey_core::wire::codes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::connection::{Connection, KillSwitch};
use crate::data::event_stream;
use crate::error::ApiError;

pub(crate) const FAULT_HEADER: &str = "x-ik-fault";
pub(crate) const FAULT_KEY_HEADER: &str = "x-ik-fault-key";

/// The counters of the fault layer, kept in the app state.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    /// Per `x-ik-fault-key` counters of the `flap` fault.
    flaps: Mutex<HashMap<String, u64>>,
    /// Per `x-ik-fault-key`, requests seen by method.
    hits: Mutex<HashMap<String, BTreeMap<String, u64>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    Flap(u64),
    Reset,
    CutAfter(usize),
    Stall,
    KeepaliveOnly,
    Drip(u64),
    Delay(u64),
    Huge(usize),
    InvalidJson,
    Html502,
    ErrorEvent,
    LostResponse,
    DropDone,
    HoldAfterDone,
}

/// A parsed `x-ik-fault` value: the fault and the method it is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    fault: Fault,
    method: Option<Method>,
}

fn parse(spec: &str) -> Result<Spec, String> {
    let mut method = None;
    let mut parts = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if k.trim() == "method" => {
                let v = v.trim().to_ascii_uppercase();
                method = Some(
                    Method::from_bytes(v.as_bytes())
                        .map_err(|_| format!("`{v}` is not an HTTP method"))?,
                );
            }
            _ => parts.push(part),
        }
    }
    let fault = parse_fault(parts.into_iter())?;
    Ok(Spec { fault, method })
}

fn parse_fault<'a>(mut parts: impl Iterator<Item = &'a str>) -> Result<Fault, String> {
    let head = parts.next().ok_or("empty fault spec")?;
    let (name, value) = match head.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (head, None),
    };
    let number = |v: Option<&str>| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("fault `{name}` needs a number, e.g. `{name}=1`"))
    };
    let fault = match name {
        "status" => {
            let status = number(value)?;
            if !(400..=599).contains(&status) {
                return Err("fault `status` takes a 4xx or 5xx status".into());
            }
            let mut retry_after = None;
            for param in parts.by_ref() {
                match param.split_once('=') {
                    Some(("retry_after", v)) => {
                        retry_after =
                            Some(v.trim().parse().map_err(|_| "retry_after needs a number")?);
                    }
                    _ => return Err(format!("unknown parameter `{param}` of fault `status`")),
                }
            }
            Fault::Status {
                status: status as u16,
                retry_after,
            }
        }
        "flap" => Fault::Flap(number(value)?),
        "reset" => Fault::Reset,
        "cut_after" => Fault::CutAfter(number(value)? as usize),
        "stall" => Fault::Stall,
        "keepalive_only" => Fault::KeepaliveOnly,
        "drip_ms" => Fault::Drip(number(value)?),
        "delay_ms" => Fault::Delay(number(value)?),
        "huge" => Fault::Huge(number(value)? as usize),
        "invalid_json" => Fault::InvalidJson,
        "html502" => Fault::Html502,
        "error_event" => Fault::ErrorEvent,
        "lost_response" => Fault::LostResponse,
        "drop_done" => Fault::DropDone,
        "hold_after_done" => Fault::HoldAfterDone,
        other => return Err(format!("unknown fault `{other}`")),
    };
    if fault_takes_no_parameters(&fault) {
        if let Some(extra) = parts.next() {
            return Err(format!("unknown parameter `{extra}` of fault `{name}`"));
        }
    }
    Ok(fault)
}

fn fault_takes_no_parameters(fault: &Fault) -> bool {
    !matches!(fault, Fault::Status { .. })
}

fn code_for(status: u16) -> &'static str {
    match status {
        429 => codes::RATE_LIMITED,
        502..=504 => codes::UPSTREAM_UNAVAILABLE,
        400 => codes::BAD_REQUEST,
        401 => codes::UNAUTHORIZED,
        404 => codes::NOT_FOUND,
        _ => codes::INTERNAL,
    }
}

/// The middleware. Installed only when faults are enabled.
pub(crate) async fn inject(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(key) = request
        .headers()
        .get(FAULT_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let mut hits = app.faults.hits.lock().unwrap_or_else(|e| e.into_inner());
        *hits
            .entry(key.to_owned())
            .or_default()
            .entry(request.method().as_str().to_owned())
            .or_insert(0) += 1;
    }
    let Some(spec) = request
        .headers()
        .get(FAULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let fault = match parse(&spec) {
        Ok(Spec {
            method: Some(m), ..
        }) if m != request.method() => {
            return next.run(request).await;
        }
        Ok(parsed) => parsed.fault,
        Err(message) => return ApiError::bad_request(message).into_response(),
    };
    let switch = request
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .map(|c| c.0.switch.clone())
        .unwrap_or_default();
    let shutdown = app.shutdown.clone();
    match fault {
        Fault::Status {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut error = ApiError::new(
                status,
                code_for(status.as_u16()),
                format!("injected fault: {spec}"),
            );
            error.retry_after = retry_after;
            error.into_response()
        }
        Fault::Flap(n) => {
            let key = request
                .headers()
                .get(FAULT_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let seen = {
                let mut flaps = app.faults.flaps.lock().unwrap_or_else(|e| e.into_inner());
                let count = flaps.entry(key).or_insert(0);
                *count += 1;
                *count
            };
            if seen <= n {
                ApiError::unavailable(format!("injected fault: flap {seen} of {n}")).into_response()
            } else {
                next.run(request).await
            }
        }
        Fault::Reset => {
            switch.kill();
            // Never written: the connection is already cut.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Fault::LostResponse => {
            let response = next.run(request).await;
            switch.kill();
            drop(response);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Fault::CutAfter(limit) => {
            let response = next.run(request).await;
            cut_after(response, limit, switch)
        }
        Fault::Drip(ms) => {
            let response = next.run(request).await;
            drip(response, Duration::from_millis(ms), shutdown)
        }
        Fault::DropDone => {
            let response = next.run(request).await;
            drop_done(response)
        }
        Fault::HoldAfterDone => {
            let response = next.run(request).await;
            hold_after_end(response, shutdown)
        }
        Fault::Delay(ms) => {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return ApiError::unavailable("the local platform is shutting down").into_response();
                }
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            }
            next.run(request).await
        }
        Fault::Stall => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tx.closed() => {}
                }
            });
            event_stream(Body::from_stream(ReceiverStream::new(rx)))
        }
        Fault::KeepaliveOnly => {
            let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
            tokio::spawn(async move {
                loop {
                    if tx
                        .send(Ok(Bytes::from_static(b": keepalive\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            });
            event_stream(Body::from_stream(ReceiverStream::new(rx)))
        }
        Fault::Huge(size) => huge(size),
        Fault::InvalidJson => json_response(
            StatusCode::OK,
            "{\"object\": \"chat.completion\", \"choices\": [{\"index\": 0, <this is not JSON>",
        ),
        Fault::Html502 => {
            let mut response = (
                StatusCode::BAD_GATEWAY,
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                 <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        Fault::ErrorEvent => {
            let frames = concat!(
                "data: {\"id\":\"chatcmpl-fault\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"chatcmpl-fault\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Partial\"},\"finish_reason\":null}]}\n\n",
                "data: {\"error\":{\"code\":\"upstream_error\",\"message\":\"injected fault: the runtime failed mid-stream\"}}\n\n",
            );
            event_stream(Body::from(frames))
        }
    }
}

/// `GET /_faults/hits/{key}`: the requests that carried `x-ik-fault-key: {key}`.
pub(crate) async fn hits(State(app): State<Arc<App>>, Path(key): Path<String>) -> Response {
    let by_method = app
        .faults
        .hits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    out.insert("total".into(), by_method.values().sum::<u64>().into());
    for (method, n) in by_method {
        out.insert(method, n.into());
    }
    Json(serde_json::Value::Object(out)).into_response()
}

/// `GET /_faults/connections`: the connections the server holds open, this one included.
pub(crate) async fn connections(State(app): State<Arc<App>>) -> Response {
    let open = app.open_connections.load(Ordering::SeqCst);
    Json(serde_json::json!({ "open": open })).into_response()
}

fn json_response(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Passes the first `limit` body bytes of `response`, then cuts the connection.
fn cut_after(response: Response, limit: usize, switch: Arc<KillSwitch>) -> Response {
    let (parts, body) = response.into_parts();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut sent = 0;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            let room = limit - sent;
            let piece = chunk.slice(..chunk.len().min(room));
            sent += piece.len();
            if !piece.is_empty() && tx.send(Ok(piece)).await.is_err() {
                return;
            }
            if sent == limit {
                // Give hyper a moment to flush what was sent before the cut.
                tokio::time::sleep(Duration::from_millis(100)).await;
                switch.kill();
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "connection cut by a fault",
                    )))
                    .await;
                return;
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(ReceiverStream::new(rx)))
}

/// Sends the body of `response` one byte at a time, `pause` apart.
fn drip(
    response: Response,
    pause: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Response {
    let (parts, body) = response.into_parts();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut first = true;
        while let Some(Ok(chunk)) = stream.next().await {
            for i in 0..chunk.len() {
                if !first {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                first = false;
                if tx.send(Ok(chunk.slice(i..=i))).await.is_err() {
                    return;
                }
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(ReceiverStream::new(rx)))
}

/// Forwards the body of `response` without its `data: [DONE]` event, then ends it
/// cleanly. Events are recognised at blank-line boundaries (the emulator writes LF
/// endings).
fn drop_done(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            pending.extend_from_slice(&chunk);
            let mut out = Vec::new();
            while let Some(end) = find(&pending, b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                if event.trim_ascii() != b"data: [DONE]" {
                    out.extend_from_slice(&event);
                }
            }
            if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
        }
        if !pending.is_empty() {
            let _ = tx.send(Ok(Bytes::from(pending))).await;
        }
    });
    Response::from_parts(parts, Body::from_stream(ReceiverStream::new(rx)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Forwards the body of `response`, then keeps it open, sending nothing more, until the
/// client goes away or the platform shuts down.
fn hold_after_end(response: Response, shutdown: tokio_util::sync::CancellationToken) -> Response {
    let (mut parts, body) = response.into_parts();
    // A declared length would let the client finish at the last byte; the point is an
    // open body.
    parts.headers.remove(header::CONTENT_LENGTH);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tx.closed() => {}
        }
    });
    Response::from_parts(parts, Body::from_stream(ReceiverStream::new(rx)))
}

/// A JSON object of exactly `size` bytes (or the smallest possible one), streamed.
fn huge(size: usize) -> Response {
    const HEAD: &[u8] = b"{\"object\":\"padding\",\"padding\":\"";
    const TAIL: &[u8] = b"\"}";
    const CHUNK: usize = 64 * 1024;
    let padding = size.saturating_sub(HEAD.len() + TAIL.len());
    let total = HEAD.len() + padding + TAIL.len();
    let mut pieces = vec![Bytes::from_static(HEAD)];
    let filler = Bytes::from(vec![b'x'; CHUNK.min(padding)]);
    let mut left = padding;
    while left > 0 {
        let n = left.min(CHUNK);
        pieces.push(filler.slice(..n));
        left -= n;
    }
    pieces.push(Bytes::from_static(TAIL));
    let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>));
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    response
}

#[cfg(test)]
mod tests {
    use super::{Fault, Spec, parse};
    use axum::http::Method;

    fn fault(spec: &str) -> Result<Fault, String> {
        parse(spec).map(|s| s.fault)
    }

    #[test]
    fn specs() {
        assert_eq!(
            fault("status=429;retry_after=1"),
            Ok(Fault::Status {
                status: 429,
                retry_after: Some(1)
            })
        );
        assert_eq!(fault("flap=2"), Ok(Fault::Flap(2)));
        assert_eq!(fault("delay_ms=250"), Ok(Fault::Delay(250)));
        assert_eq!(fault("cut_after=10"), Ok(Fault::CutAfter(10)));
        assert_eq!(fault(" reset "), Ok(Fault::Reset));
        assert_eq!(fault("drop_done"), Ok(Fault::DropDone));
        assert_eq!(fault("hold_after_done"), Ok(Fault::HoldAfterDone));
        assert!(fault("status=200").is_err());
        assert!(fault("explode").is_err());
        assert!(fault("huge=").is_err());
        assert!(fault("reset;retry_after=1").is_err());
    }

    #[test]
    fn method_limits_any_fault() {
        assert_eq!(
            parse("lost_response;method=post"),
            Ok(Spec {
                fault: Fault::LostResponse,
                method: Some(Method::POST)
            })
        );
        assert_eq!(
            parse("status=503;method=GET;retry_after=2"),
            Ok(Spec {
                fault: Fault::Status {
                    status: 503,
                    retry_after: Some(2)
                },
                method: Some(Method::GET)
            })
        );
        assert_eq!(parse("reset").unwrap().method, None);
        assert!(parse("reset;method=").is_err());
        assert!(parse("method=GET").is_err());
    }
}
