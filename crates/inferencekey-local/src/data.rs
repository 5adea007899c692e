//! Data plane: `/endpoint/{project}/{workload}/v1/...` (PROTOCOL.md §4), served by the
//! built-in engines, or forwarded to an upstream server or a command-mode process.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use inferencekey_core::wire::{
    ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChatDelta, ChatMessage, ChatRequest,
    DONE_SENTINEL, EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse, Phase, RerankRequest,
    RerankResponse, RerankResultItem, Usage, Workload, codes,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::auth;
use crate::credentials::{Kind, random_hex};
use crate::engines::{embedding, text};
use crate::error::ApiError;
use crate::server::read_body;
use crate::upstream;

/// Largest `dimensions` an embeddings request may ask for.
const MAX_DIMENSIONS: u64 = 16_384;

/// The routes the built-in engines serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Chat,
    Embeddings,
    Rerank,
    Models,
}

impl Operation {
    fn route(method: &Method, rest: &str) -> Result<Self, ApiError> {
        let (op, wanted) = match rest.trim_matches('/') {
            "chat/completions" => (Operation::Chat, Method::POST),
            "embeddings" => (Operation::Embeddings, Method::POST),
            "rerank" => (Operation::Rerank, Method::POST),
            "models" => (Operation::Models, Method::GET),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::UNSUPPORTED_TASK,
                    format!(
                        "the local engines do not serve `/v1/{other}`; they serve \
                         chat/completions, embeddings and rerank (give the workload an \
                         upstream to serve anything else)"
                    ),
                ));
            }
        };
        if *method == wanted {
            Ok(op)
        } else {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "`/v1/{}` takes {wanted}, not {method}",
                    rest.trim_matches('/')
                ),
            ))
        }
    }

    /// Whether a workload of `task_type` serves this operation.
    fn serves(self, task_type: &str) -> bool {
        match self {
            Operation::Chat => matches!(task_type, "text2text" | "omni"),
            Operation::Embeddings => matches!(task_type, "embedding" | "reranker"),
            Operation::Rerank => task_type == "reranker",
            Operation::Models => true,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Operation::Chat => "chat completions (task types text2text, omni)",
            Operation::Embeddings => "embeddings (task types embedding, reranker)",
            Operation::Rerank => "rerank (task type reranker)",
            Operation::Models => "models",
        }
    }
}

/// `ANY /endpoint/{project}/{workload}/v1/{*rest}`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    Path((project, workload, rest)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (record, phase, process) = {
        let registry = app.registry();
        let token = auth::authenticate(&registry, &headers, Kind::Live)?;
        auth::same_project(token, &project)?;
        auth::grant(token, &project, &workload)?;
        let index = registry.find_by_slug(&project, &workload).ok_or_else(|| {
            ApiError::not_found(format!("no workload '{workload}' in project '{project}'"))
        })?;
        let entry = &registry.workloads[index];
        (entry.record.clone(), entry.phase(), entry.command.clone())
    };
    // An upstream, or in command mode the workload's own process (`None` inside when it
    // is not running), or else the built-in engines.
    let target = match upstream::target(&app.config, &record) {
        Some(url) => Some(Some(url)),
        None => process.map(|slot| slot.base_url().map(|base| format!("{base}/v1"))),
    };
    let operation = match target {
        Some(_) => None,
        None => {
            let op = Operation::route(&method, &rest)?;
            if !op.serves(&record.task_type) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::UNSUPPORTED_TASK,
                    format!(
                        "workload '{}' has task type '{}', which does not serve {}",
                        record.slug,
                        record.task_type,
                        op.hint()
                    ),
                ));
            }
            Some(op)
        }
    };
    if phase.phase != Phase::Ready {
        return Err(ApiError::unavailable(format!(
            "workload '{}' is not ready (phase {}: {})",
            record.slug, phase.phase, phase.message
        )));
    }
    if let Some(base) = target {
        let base = base.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                codes::UPSTREAM_UNAVAILABLE,
                format!("the process of workload '{}' is not running", record.slug),
            )
        })?;
        return upstream::forward(
            &app,
            &record,
            &base,
            method,
            &rest,
            uri.query(),
            &headers,
            body,
        )
        .await;
    }
    let bytes = read_body(body, app.config.max_body_bytes).await?;
    match operation {
        Some(Operation::Chat) => chat(&app, &record, &bytes),
        Some(Operation::Embeddings) => embeddings(&app, &record, &bytes),
        Some(Operation::Rerank) => rerank(&app, &record, &bytes),
        Some(Operation::Models) | None => Ok(Json(json!({
            "object": "list",
            "data": [{"id": record.model_name, "object": "model", "owned_by": "inferencekey-local"}],
        }))
        .into_response()),
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::from_json(&e))?;
    if !value.is_object() {
        return Err(ApiError::validation("request body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn validate_chat(request: &ChatRequest) -> Result<(), ApiError> {
    if request.model.trim().is_empty() {
        return Err(ApiError::validation("`model` must not be empty"));
    }
    if request.messages.is_empty() {
        return Err(ApiError::validation("`messages` must not be empty"));
    }
    for (i, m) in request.messages.iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "user" | "assistant" | "tool" | "developer"
        ) {
            return Err(ApiError::validation(format!(
                "messages[{i}].role '{}' is not one of system, user, assistant, tool",
                m.role
            )));
        }
        if m.content.is_none() && m.role != "assistant" {
            return Err(ApiError::validation(format!(
                "messages[{i}].content must be a string"
            )));
        }
    }
    if request.max_tokens == Some(0) {
        return Err(ApiError::validation("`max_tokens` must be at least 1"));
    }
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::validation(
                "`temperature` must be between 0 and 2",
            ));
        }
    }
    Ok(())
}

fn chat(app: &Arc<App>, workload: &Workload, bytes: &[u8]) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(bytes)?;
    validate_chat(&request)?;
    let reply = text::generate(&workload.model_name, &request.messages, request.max_tokens);
    let usage = Usage {
        prompt_tokens: reply.prompt_tokens,
        completion_tokens: reply.completion_tokens(),
        total_tokens: reply.prompt_tokens + reply.completion_tokens(),
    };
    let id = format!("chatcmpl-{}", random_hex(12));
    if !request.stream {
        let completion = ChatCompletion {
            id,
            object: "chat.completion".into(),
            created: unix_now(),
            model: workload.model_name.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage::new("assistant", reply.text()),
                finish_reason: Some(reply.finish_reason.into()),
            }],
            usage: Some(usage),
        };
        return Ok(Json(completion).into_response());
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let chunk = |delta: ChatDelta, finish: Option<&str>| ChatChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created: unix_now(),
        model: workload.model_name.clone(),
        choices: vec![ChatChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
        }],
        usage: None,
    };
    let mut frames = vec![chunk(
        ChatDelta {
            role: Some("assistant".into()),
            content: None,
        },
        None,
    )];
    for token in &reply.tokens {
        frames.push(chunk(
            ChatDelta {
                role: None,
                content: Some(token.clone()),
            },
            None,
        ));
    }
    frames.push(chunk(ChatDelta::default(), Some(reply.finish_reason)));
    if include_usage {
        let mut meta = chunk(ChatDelta::default(), None);
        meta.choices.clear();
        meta.usage = Some(usage);
        frames.push(meta);
    }
    let pause = app
        .config
        .token_rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        let count = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            let json = serde_json::to_string(&frame).unwrap_or_default();
            if tx
                .send(Ok(Bytes::from(format!("data: {json}\n\n"))))
                .await
                .is_err()
            {
                return;
            }
            // Pace only between content tokens: role, finish and usage go at once.
            let is_content = i > 0 && i < count - 1 - usize::from(include_usage);
            if let (Some(pause), true) = (pause, is_content) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        let _ = tx
            .send(Ok(Bytes::from(format!("data: {DONE_SENTINEL}\n\n"))))
            .await;
    });
    Ok(event_stream(Body::from_stream(ReceiverStream::new(rx))))
}

/// A 200 `text/event-stream` response around `body`.
pub(crate) fn event_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn dimensions(app: &App, request: &EmbeddingsRequest) -> Result<usize, ApiError> {
    if let Some(format) = request.extra.get("encoding_format") {
        if !(format.is_null() || format == "float") {
            return Err(ApiError::validation(
                "the local embedding engine returns float vectors only (`encoding_format`: \"float\")",
            ));
        }
    }
    match request.extra.get("dimensions") {
        None | Some(Value::Null) => Ok(app.config.embedding_dim.max(1)),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS).contains(&n) => Ok(n as usize),
            _ => Err(ApiError::validation(format!(
                "`dimensions` must be an integer between 1 and {MAX_DIMENSIONS}"
            ))),
        },
    }
}

fn embeddings(app: &Arc<App>, workload: &Workload, bytes: &[u8]) -> Result<Response, ApiError> {
    let request: EmbeddingsRequest = parse(bytes)?;
    let inputs = request.input.as_slice();
    if inputs.is_empty() {
        return Err(ApiError::validation("`input` must not be an empty list"));
    }
    let dim = dimensions(app, &request)?;
    let tokens: u64 = inputs.iter().map(|t| embedding::count_tokens(t)).sum();
    let response = EmbeddingsResponse {
        object: "list".into(),
        model: workload.model_name.clone(),
        data: inputs
            .iter()
            .enumerate()
            .map(|(index, t)| EmbeddingItem {
                object: "embedding".into(),
                index,
                embedding: embedding::embed(t, dim),
            })
            .collect(),
        usage: Some(Usage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            total_tokens: tokens,
        }),
    };
    Ok(Json(response).into_response())
}

fn rerank(app: &Arc<App>, workload: &Workload, bytes: &[u8]) -> Result<Response, ApiError> {
    let request: RerankRequest = parse(bytes)?;
    if request.query.trim().is_empty() {
        return Err(ApiError::validation("`query` must not be blank"));
    }
    if request.documents.is_empty() {
        return Err(ApiError::validation("`documents` must not be empty"));
    }
    if request.top_n == Some(0) {
        return Err(ApiError::validation("`top_n` must be at least 1"));
    }
    let with_documents = request
        .extra
        .get("return_documents")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ranked = embedding::rerank(
        &request.query,
        &request.documents,
        request.top_n.map(|n| n as usize),
        app.config.embedding_dim.max(1),
    );
    let tokens = embedding::count_tokens(&request.query)
        + request
            .documents
            .iter()
            .map(|d| embedding::count_tokens(d))
            .sum::<u64>();
    let response = RerankResponse {
        model: Some(workload.model_name.clone()),
        results: ranked
            .into_iter()
            .map(|(index, score)| RerankResultItem {
                index,
                relevance_score: score,
                document: with_documents.then(|| json!({"text": request.documents[index]})),
            })
            .collect(),
        usage: Some(json!({"total_tokens": tokens})),
    };
    Ok(Json(response).into_response())
}
