//! The router, its middleware (request ids, access log, size guard) and body reading.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch};
use futures_util::StreamExt;

use crate::app::App;
use crate::error::{ApiError, REQUEST_ID, new_request_id};
use crate::{control, data, faults, readiness};

pub(crate) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route(
            "/api/projects/{project}/workloads",
            get(control::list).post(control::create),
        )
        .route(
            "/api/projects/{project}/workloads/{slug}/readiness-events",
            get(readiness::events),
        )
        .route(
            "/api/workloads/{id}",
            patch(control::patch).delete(control::delete),
        )
        .route(
            "/endpoint/{project}/{workload}/v1/{*rest}",
            any(data::handle),
        );
    if app.config.enable_faults {
        // Test-only routes; they do not exist unless faults are enabled.
        router = router
            .route("/_faults/hits/{key}", get(faults::hits))
            .route("/_faults/connections", get(faults::connections));
    }
    router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), size_guard));
    if app.config.enable_faults {
        router = router.layer(middleware::from_fn_with_state(app.clone(), faults::inject));
    }
    router
        .layer(middleware::from_fn(request_context))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Gives every request an id (in errors and in `x-request-id`) and logs method, path and
/// status. Never headers or bodies: they hold tokens.
async fn request_context(request: Request, next: Next) -> Response {
    let id = new_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

/// Refuses a declared body over the limit before anything else looks at the request.
async fn size_guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.config.max_body_bytes as u64) {
        return ApiError::too_large(app.config.max_body_bytes).into_response();
    }
    next.run(request).await
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if buffer.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}
