//! Upstream mode: a workload served by an existing OpenAI-compatible server. Requests
//! are forwarded as they are and responses, streams included, are passed through chunk
//! by chunk as they arrive.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use futures_util::StreamExt;
use inferencekey_core::wire::Workload;

use crate::app::App;
use crate::config::LocalConfig;
use crate::error::ApiError;
use crate::server::read_body;

/// The upstream base URL serving `workload`, if any: the emulator configuration first,
/// then `config.upstream_url` on the workload.
pub(crate) fn target(config: &LocalConfig, workload: &Workload) -> Option<String> {
    config.upstreams.get(&workload.slug).cloned().or_else(|| {
        workload
            .config
            .as_ref()
            .and_then(|c| c.get("upstream_url"))
            .and_then(|u| u.as_str())
            .filter(|u| !u.trim().is_empty())
            .map(str::to_owned)
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    app: &Arc<App>,
    workload: &Workload,
    base: &str,
    method: Method,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rest.trim_start_matches('/')
    );
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    let bytes = read_body(body, app.config.max_body_bytes).await?;
    let mut request = app.http.request(method, &url);
    for name in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            request = request.header(name, v);
        }
    }
    if let Some(key) = app.config.upstream_api_keys.get(&workload.slug) {
        request = request.bearer_auth(key);
    }
    if !bytes.is_empty() {
        request = request.body(bytes);
    }
    let upstream = request.send().await.map_err(|e| {
        tracing::warn!(workload = %workload.slug, error = %e.without_url(), "upstream request failed");
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            inferencekey_core::wire::codes::UPSTREAM_UNAVAILABLE,
            format!("the upstream of workload '{}' is not reachable", workload.slug),
        )
    })?;
    let status = upstream.status();
    let mut passed = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = upstream.headers().get(&name) {
            passed.insert(name, v.clone());
        }
    }
    let stream = upstream
        .bytes_stream()
        .take_until(app.shutdown.clone().cancelled_owned());
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = passed;
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok(response)
}
