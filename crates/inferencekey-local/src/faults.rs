//! Fault injection for tests of client reliability. Off unless
//! [`LocalConfig::enable_faults`](crate::LocalConfig::enable_faults) is set.
//!
//! A request carrying the header `x-ik-fault: <spec>` gets the fault instead of, or on
//! top of, its normal handling. Faults apply before authentication, on every route.
//! An unknown spec is answered 400 `bad_request`. The binary enables faults only with
//! its undocumented `--enable-faults` flag.
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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
}

fn parse(spec: &str) -> Result<Fault, String> {
    let mut parts = spec.split(';').map(str::trim).filter(|p| !p.is_empty());
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
            for param in parts {
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
        other => return Err(format!("unknown fault `{other}`")),
    };
    Ok(fault)
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
    let Some(spec) = request
        .headers()
        .get(FAULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let fault = match parse(&spec) {
        Ok(f) => f,
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
                let mut flaps = app.flaps.lock().unwrap_or_else(|e| e.into_inner());
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
    use super::{Fault, parse};

    #[test]
    fn specs() {
        assert_eq!(
            parse("status=429;retry_after=1"),
            Ok(Fault::Status {
                status: 429,
                retry_after: Some(1)
            })
        );
        assert_eq!(parse("flap=2"), Ok(Fault::Flap(2)));
        assert_eq!(parse("delay_ms=250"), Ok(Fault::Delay(250)));
        assert_eq!(parse("cut_after=10"), Ok(Fault::CutAfter(10)));
        assert_eq!(parse(" reset "), Ok(Fault::Reset));
        assert!(parse("status=200").is_err());
        assert!(parse("explode").is_err());
        assert!(parse("huge=").is_err());
    }
}
