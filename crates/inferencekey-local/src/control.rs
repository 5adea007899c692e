//! Control plane: list, create, update and delete workloads (PROTOCOL.md §3.4).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use inferencekey_core::wire::{
    CreateWorkload, PatchWorkload, Phase, Workload, canonical_slug, codes,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::app::App;
use crate::auth;
use crate::credentials::{Kind, SCOPE_ASSIGNMENT_WRITE, SCOPE_WORKLOAD_READ, SCOPE_WORKLOAD_WRITE};
use crate::error::ApiError;
use crate::readiness;
use crate::registry::{Readiness, WorkloadEntry};
use crate::server::read_body;

/// Task types the platform knows (PROTOCOL.md §3.2).
const TASK_TYPES: &[&str] = &[
    "text2text",
    "embedding",
    "text2image",
    "text2video",
    "text2audio",
    "image2image",
    "image2video",
    "audio2text",
    "omni",
    "reranker",
    "classification",
    "reward",
    "forecast",
];

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `GET /api/projects/{project}/workloads`: a bare array in creation order.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<Workload>>, ApiError> {
    let registry = app.registry();
    let token = auth::authenticate(&registry, &headers, Kind::Sdk)?;
    auth::same_project(token, &project)?;
    auth::scope(token, SCOPE_WORKLOAD_READ)?;
    if registry.project(&project).is_none() {
        return Err(ApiError::not_found(format!("no project '{project}'")));
    }
    Ok(Json(
        registry
            .workloads
            .iter()
            .filter(|w| w.record.project_slug == project)
            .map(|w| w.record.clone())
            .collect(),
    ))
}

/// Whether a JSON body sets a placement field, which needs `assignment:write`.
fn touches_placement(body: &Value) -> bool {
    ["worker_id", "gpu_resource_id"]
        .iter()
        .any(|f| body.get(f).is_some_and(|v| !v.is_null()))
}

fn parse_object(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::from_json(&e))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::validation("request body must be a JSON object"))
    }
}

fn not_blank(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::validation(format!("`{field}` must not be blank")))
    } else {
        Ok(())
    }
}

fn check_policy(w: &Workload) -> Result<(), ApiError> {
    crate::policy::validate(
        w.execution_policy.as_deref(),
        w.execution_policy_config.as_ref(),
    )
    .map_err(ApiError::validation)
}

/// `POST /api/projects/{project}/workloads`: 201 with the stored workload.
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (can_assign, project_id) = {
        let registry = app.registry();
        let token = auth::authenticate(&registry, &headers, Kind::Sdk)?;
        auth::same_project(token, &project)?;
        auth::scope(token, SCOPE_WORKLOAD_WRITE)?;
        let project_id = registry
            .project(&project)
            .map(|p| p.id.clone())
            .ok_or_else(|| ApiError::not_found(format!("no project '{project}'")))?;
        (token.has_scope(SCOPE_ASSIGNMENT_WRITE), project_id)
    };
    let value = parse_object(&read_body(body, app.config.max_body_bytes).await?)?;
    if touches_placement(&value) && !can_assign {
        return Err(ApiError::forbidden(
            codes::SCOPE_INSUFFICIENT,
            "setting worker_id or gpu_resource_id needs the scope `assignment:write`",
        ));
    }
    let request: CreateWorkload = serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid workload: {e}")))?;
    not_blank("name", &request.name)?;
    not_blank("backend", &request.backend)?;
    not_blank("model_name", &request.model_name)?;
    let task_type = request.task_type.unwrap_or_else(|| "text2text".to_owned());
    if !TASK_TYPES.contains(&task_type.as_str()) {
        return Err(ApiError::validation(format!(
            "unknown task_type '{task_type}'; expected one of {}",
            TASK_TYPES.join(", ")
        )));
    }
    let base = match &request.slug {
        Some(raw) => {
            let slug = canonical_slug(raw);
            if slug.is_empty() {
                return Err(ApiError::validation(format!(
                    "slug '{raw}' has no ASCII letters or digits"
                )));
            }
            slug
        }
        None => {
            let slug = canonical_slug(&request.name);
            if slug.is_empty() {
                return Err(ApiError::validation(format!(
                    "cannot derive a slug from name '{}'; give a slug with ASCII letters or digits",
                    request.name
                )));
            }
            slug
        }
    };
    let stamp = now();
    let mut record = Workload {
        id: format!("wl_{}", crate::credentials::random_hex(4)),
        project_id,
        project_slug: project.clone(),
        name: request.name,
        slug: String::new(),
        workload_slug: String::new(),
        description: request.description,
        task_type,
        backend: request.backend,
        model_name: request.model_name,
        config: request.config,
        worker_id: request.worker_id,
        gpu_resource_id: request.gpu_resource_id,
        execution_policy: request.execution_policy,
        execution_policy_config: request.execution_policy_config,
        created_at: stamp.clone(),
        updated_at: stamp,
    };
    check_policy(&record)?;
    {
        let mut registry = app.registry();
        let mut slug = base.clone();
        let mut n = 0;
        while registry.slug_taken(&project, &slug) {
            n += 1;
            slug = format!("{base}-{n}");
        }
        record.slug.clone_from(&slug);
        record.workload_slug = slug;
        let mut entry = WorkloadEntry::new(record.clone());
        readiness::restart(&app.config, &mut entry);
        registry.workloads.push(entry);
    }
    app.save();
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Resolves `{id}` (id or slug) for PATCH and DELETE with the checks in protocol order.
/// Returns the workload id and whether the token may change placement.
fn resolve(app: &App, headers: &HeaderMap, key: &str) -> Result<(String, bool), ApiError> {
    let registry = app.registry();
    let token = auth::authenticate(&registry, headers, Kind::Sdk)?;
    let index = registry.find_by_id_or_slug(&token.project, key);
    if let Some(i) = index {
        auth::same_project(token, &registry.workloads[i].record.project_slug)?;
    }
    auth::scope(token, SCOPE_WORKLOAD_WRITE)?;
    let i = index.ok_or_else(|| ApiError::not_found(format!("no workload '{key}'")))?;
    Ok((
        registry.workloads[i].record.id.clone(),
        token.has_scope(SCOPE_ASSIGNMENT_WRITE),
    ))
}

/// `PATCH /api/workloads/{id}`: sent fields replace, `null` clears, absent unchanged.
pub(crate) async fn patch(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Workload>, ApiError> {
    let (id, can_assign) = resolve(&app, &headers, &key)?;
    let value = parse_object(&read_body(body, app.config.max_body_bytes).await?)?;
    let sets_placement = ["worker_id", "gpu_resource_id"]
        .iter()
        .any(|f| value.get(f).is_some());
    if sets_placement && !can_assign {
        return Err(ApiError::forbidden(
            codes::SCOPE_INSUFFICIENT,
            "changing worker_id or gpu_resource_id needs the scope `assignment:write`",
        ));
    }
    let change: PatchWorkload = serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid update: {e}")))?;
    let updated = {
        let mut registry = app.registry();
        let entry = registry
            .workloads
            .iter_mut()
            .find(|w| w.record.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no workload '{key}'")))?;
        let old = &entry.record;
        if let Some(task_type) = &change.task_type {
            if *task_type != old.task_type {
                return Err(ApiError::validation(format!(
                    "task_type is immutable: the workload is '{}', the update asks for '{task_type}'",
                    old.task_type
                )));
            }
        }
        let mut new = old.clone();
        if let Some(name) = change.name {
            not_blank("name", &name)?;
            new.name = name;
        }
        if let Some(backend) = change.backend {
            not_blank("backend", &backend)?;
            new.backend = backend;
        }
        if let Some(model) = change.model_name {
            not_blank("model_name", &model)?;
            new.model_name = model;
        }
        if let Some(v) = change.description {
            new.description = v;
        }
        if let Some(v) = change.config {
            new.config = v;
        }
        if let Some(v) = change.worker_id {
            new.worker_id = v;
        }
        if let Some(v) = change.gpu_resource_id {
            new.gpu_resource_id = v;
        }
        if let Some(v) = change.execution_policy {
            new.execution_policy = v;
        }
        if let Some(v) = change.execution_policy_config {
            new.execution_policy_config = v;
        }
        check_policy(&new)?;
        let restarts = new.backend != old.backend
            || new.model_name != old.model_name
            || new.config != old.config
            || new.worker_id != old.worker_id
            || new.gpu_resource_id != old.gpu_resource_id;
        new.updated_at = now();
        entry.record = new.clone();
        if restarts {
            readiness::restart(&app.config, entry);
        }
        new
    };
    app.save();
    Ok(Json(updated))
}

/// `DELETE /api/workloads/{id}`: 204; open readiness streams get `error` "deleted"; a
/// command-mode process is stopped before the answer.
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let (id, _) = resolve(&app, &headers, &key)?;
    let mut removed = {
        let mut registry = app.registry();
        let index = registry
            .workloads
            .iter()
            .position(|w| w.record.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no workload '{key}'")))?;
        registry.workloads.remove(index)
    };
    let process = removed.take_process();
    removed.begin_run(Readiness::new(Phase::Error, "deleted"));
    drop(removed);
    app.save();
    // In command mode the answer waits until the process group is gone.
    if let Some(process) = process {
        process.stop().await;
    }
    Ok(StatusCode::NO_CONTENT)
}
