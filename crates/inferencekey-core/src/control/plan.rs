//! Spec to wire, local spec validation and the drift planner of `ensure` (PROTOCOL.md §5).

use serde_json::{Map, Value};

use super::{DriftEntry, WorkloadSpec};
use crate::error::{Error, Result};
use crate::wire::{CreateWorkload, Workload, canonical_slug};

const DEFAULT_TASK_TYPE: &str = "text2text";

/// The `config` to send: the spec's object (or `{}`) with `command` and `vllm_version`
/// overlaid; `None` when empty.
pub(crate) fn desired_config(spec: &WorkloadSpec) -> Option<Map<String, Value>> {
    let mut config = spec.config.clone().unwrap_or_default();
    if let Some(c) = &spec.command {
        config.insert("command".into(), Value::String(c.clone()));
    }
    if let Some(v) = &spec.vllm_version {
        config.insert("vllm_version".into(), Value::String(v.clone()));
    }
    (!config.is_empty()).then_some(config)
}

/// Checks a spec before any request; returns its canonical slug.
pub(crate) fn validate(spec: &WorkloadSpec) -> Result<String> {
    for (field, value) in [
        ("name", &spec.name),
        ("slug", &spec.slug),
        ("model", &spec.model),
        ("backend", &spec.backend),
    ] {
        if value.trim().is_empty() {
            return Err(Error::validation(format!(
                "the workload spec's `{field}` is blank"
            )));
        }
    }
    let slug = canonical_slug(&spec.slug);
    if slug.is_empty() {
        return Err(Error::validation(
            "the workload spec's `slug` has no ASCII letter or digit, so its canonical form is empty",
        ));
    }
    let strings: [(&str, Option<&str>); 12] = [
        ("name", Some(&spec.name)),
        ("slug", Some(&spec.slug)),
        ("model", Some(&spec.model)),
        ("backend", Some(&spec.backend)),
        ("task_type", spec.task_type.as_deref()),
        ("description", spec.description.as_deref()),
        ("project", spec.project.as_deref()),
        ("command", spec.command.as_deref()),
        ("vllm_version", spec.vllm_version.as_deref()),
        ("worker_id", spec.worker_id.as_deref()),
        ("gpu_resource_id", spec.gpu_resource_id.as_deref()),
        ("execution_policy", spec.execution_policy.as_deref()),
    ];
    for (field, value) in strings {
        if value.is_some_and(looks_like_token) {
            return Err(credential_in_spec(field));
        }
    }
    if let Some(config) = &spec.config {
        for (k, v) in config {
            check_nested(&format!("config.{k}"), v)?;
        }
    }
    if let Some(v) = &spec.execution_policy_config {
        check_nested("execution_policy_config", v)?;
    }
    Ok(slug)
}

fn looks_like_token(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("ik_live_") || s.starts_with("ik_sdk_")
}

fn check_nested(path: &str, v: &Value) -> Result<()> {
    match v {
        Value::String(s) if looks_like_token(s) => Err(credential_in_spec(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_nested(&format!("{path}[{i}]"), item)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, item)| check_nested(&format!("{path}.{k}"), item)),
        _ => Ok(()),
    }
}

fn credential_in_spec(field: &str) -> Error {
    // The value is deliberately not quoted: it is a secret.
    Error::validation(format!(
        "the workload spec's `{field}` holds what looks like an InferenceKey token; \
         credentials never belong in a workload spec"
    ))
}

/// The create body for an absent workload.
pub(crate) fn create_body(spec: &WorkloadSpec, slug: &str) -> CreateWorkload {
    CreateWorkload {
        name: spec.name.clone(),
        slug: Some(slug.to_owned()),
        description: spec.description.clone(),
        task_type: Some(
            spec.task_type
                .clone()
                .unwrap_or_else(|| DEFAULT_TASK_TYPE.to_owned()),
        ),
        backend: spec.backend.clone(),
        model_name: spec.model.clone(),
        config: desired_config(spec),
        worker_id: spec.worker_id.clone(),
        gpu_resource_id: spec.gpu_resource_id.clone(),
        execution_policy: spec.execution_policy.clone(),
        execution_policy_config: spec.execution_policy_config.clone(),
    }
}

fn string_or_null(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// The drift plan of a live workload against the spec, in the order of §5 step 4.
pub(crate) fn plan(spec: &WorkloadSpec, live: &Workload) -> Vec<DriftEntry> {
    let mut plan = Vec::new();
    let mut compare = |field: &str, live: Value, desired: Value| {
        if live != desired {
            plan.push(DriftEntry {
                field: field.to_owned(),
                live,
                desired,
                patchable: true,
            });
        }
    };
    compare(
        "name",
        Value::String(live.name.clone()),
        Value::String(spec.name.clone()),
    );
    compare(
        "backend",
        Value::String(live.backend.clone()),
        Value::String(spec.backend.clone()),
    );
    compare(
        "model_name",
        Value::String(live.model_name.clone()),
        Value::String(spec.model.clone()),
    );
    let declared = [
        (
            "description",
            spec.description.as_deref(),
            live.description.as_deref(),
        ),
        (
            "worker_id",
            spec.worker_id.as_deref(),
            live.worker_id.as_deref(),
        ),
        (
            "gpu_resource_id",
            spec.gpu_resource_id.as_deref(),
            live.gpu_resource_id.as_deref(),
        ),
        (
            "execution_policy",
            spec.execution_policy.as_deref(),
            live.execution_policy.as_deref(),
        ),
    ];
    for (field, desired, live_value) in declared {
        if let Some(desired) = desired {
            compare(
                field,
                string_or_null(live_value),
                Value::String(desired.to_owned()),
            );
        }
    }
    if let Some(desired) = desired_config(spec) {
        let live_config = live.config.clone().unwrap_or_default();
        let drifted = desired.iter().any(|(k, v)| live_config.get(k) != Some(v));
        if drifted {
            // PATCH replaces the whole object, so keys the server added are carried over
            // and only the declared keys change.
            let mut merged = live_config;
            merged.extend(desired);
            plan.push(DriftEntry {
                field: "config".into(),
                live: live.config.clone().map_or(Value::Null, Value::Object),
                desired: Value::Object(merged),
                patchable: true,
            });
        }
    }
    if let Some(desired) = &spec.execution_policy_config {
        let live_value = live.execution_policy_config.clone().unwrap_or(Value::Null);
        // The server checks a policy against the config it will hold, so a changed
        // policy travels with its declared config even when that config is unchanged.
        let policy_planned = plan.iter().any(|e| e.field == "execution_policy");
        if &live_value != desired || policy_planned {
            plan.push(DriftEntry {
                field: "execution_policy_config".into(),
                live: live_value,
                desired: desired.clone(),
                patchable: true,
            });
        }
    }
    if let Some(desired) = &spec.task_type {
        if desired != &live.task_type {
            plan.push(DriftEntry {
                field: "task_type".into(),
                live: Value::String(live.task_type.clone()),
                desired: Value::String(desired.clone()),
                patchable: false,
            });
        }
    }
    plan
}

/// The PATCH body: exactly the patchable planned fields with their desired values.
pub(crate) fn patch_body(plan: &[DriftEntry]) -> Map<String, Value> {
    plan.iter()
        .filter(|e| e.patchable)
        .map(|e| (e.field.clone(), e.desired.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            name: "Triage bot".into(),
            slug: "Triage Bot".into(),
            model: "Qwen/Qwen2.5-7B-Instruct".into(),
            backend: "vllm".into(),
            ..WorkloadSpec::default()
        }
    }

    fn live() -> Workload {
        serde_json::from_value(json!({
            "id": "wl_1", "slug": "triage-bot", "name": "Triage bot", "backend": "vllm",
            "model_name": "Qwen/Qwen2.5-7B-Instruct", "task_type": "text2text",
            "config": {"command": "vllm serve x", "port": 8000},
            "execution_policy": "fixed", "execution_policy_config": {"replicas": 1}
        }))
        .unwrap()
    }

    fn fields(plan: &[DriftEntry]) -> Vec<&str> {
        plan.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn in_sync_when_undeclared_fields_differ() {
        assert!(plan(&spec(), &live()).is_empty());
    }

    #[test]
    fn config_compares_declared_keys_and_keeps_server_keys() {
        let mut s = spec();
        s.command = Some("vllm serve x".into());
        assert!(
            plan(&s, &live()).is_empty(),
            "server-added `port` is not drift"
        );
        s.vllm_version = Some("0.8.5".into());
        let p = plan(&s, &live());
        assert_eq!(fields(&p), ["config"]);
        assert_eq!(
            p[0].desired,
            json!({"command": "vllm serve x", "port": 8000, "vllm_version": "0.8.5"})
        );
    }

    #[test]
    fn order_and_policy_config_travels_with_policy() {
        let mut s = spec();
        s.name = "New".into();
        s.model = "m2".into();
        s.description = Some("d".into());
        s.execution_policy = Some("autoscaling".into());
        s.execution_policy_config = Some(json!({"replicas": 1}));
        s.task_type = Some("embedding".into());
        let p = plan(&s, &live());
        assert_eq!(
            fields(&p),
            [
                "name",
                "model_name",
                "description",
                "execution_policy",
                "execution_policy_config",
                "task_type"
            ]
        );
        assert!(!p.last().unwrap().patchable);
        let body = patch_body(&p);
        assert!(!body.contains_key("task_type"));
        assert_eq!(body["description"], json!("d"));
        assert_eq!(body.len(), 5);
    }

    #[test]
    fn validation_rejects_blank_and_credentials_without_echoing() {
        let mut s = spec();
        s.slug = "((()))".into();
        assert_eq!(
            validate(&s).unwrap_err().kind(),
            crate::ErrorKind::Validation
        );
        let secret = format!("ik_live_5c07e1aa_{}", "a".repeat(64));
        let mut s = spec();
        let mut cfg = Map::new();
        cfg.insert("env".into(), json!({"KEY": [secret.clone()]}));
        s.config = Some(cfg);
        let e = validate(&s).unwrap_err();
        assert!(e.message().contains("config.env.KEY[0]"), "{e}");
        assert!(!e.to_string().contains("5c07e1aa"));
        let mut s = spec();
        s.description = Some(secret);
        assert!(validate(&s).is_err());
        assert_eq!(validate(&spec()).unwrap(), "triage-bot");
    }
}
