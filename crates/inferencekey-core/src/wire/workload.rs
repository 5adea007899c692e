use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A field that can be absent, explicitly `null`, or set (PATCH semantics, §3.4).
///
/// `None` is absent (unchanged), `Some(None)` is JSON `null` (cleared), `Some(Some(v))`
/// replaces the stored value.
pub type Nullable<T> = Option<Option<T>>;

fn default_task_type() -> String {
    "text2text".to_owned()
}

/// The workload object (PROTOCOL.md §3.1).
///
/// On read only `id` and `slug` are required; every other field falls back to a default
/// so that a sparse or newer server response still parses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub id: String,
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub project_slug: String,
    #[serde(default)]
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub workload_slug: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_task_type")]
    pub task_type: String,
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub model_name: String,
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub gpu_resource_id: Option<String>,
    #[serde(default)]
    pub execution_policy: Option<String>,
    #[serde(default)]
    pub execution_policy_config: Option<Value>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

/// The body of `POST /api/projects/{project}/workloads`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateWorkload {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    pub backend: String,
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_policy_config: Option<Value>,
}

/// The body of `PATCH /api/workloads/{id}`: absent fields are unchanged, `null` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatchWorkload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Nullable<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub config: Nullable<Map<String, Value>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub worker_id: Nullable<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub gpu_resource_id: Nullable<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_policy: Nullable<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_policy_config: Nullable<Value>,
    /// Immutable: accepted when equal to the stored value, 400 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
}

/// A field that is present in the JSON, `null` included, becomes `Some(..)`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Decodes a list response in any of the shapes of §3.4: a bare array,
/// `{"workloads": [...]}`, `null` or `{"workloads": null}`.
///
/// Entries that do not parse as a [`Workload`] are skipped, and their count is returned
/// beside the list, so that one odd workload never breaks a list or an `ensure`.
pub fn decode_workload_list(body: &[u8]) -> Result<(Vec<Workload>, usize), serde_json::Error> {
    let value: Value = serde_json::from_slice(body)?;
    let items = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        Value::Object(mut map) => match map.remove("workloads") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => Vec::new(),
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a list of workloads or an object with `workloads`",
                ));
            }
        },
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a list of workloads, got {}",
                kind_of(&other)
            )));
        }
    };
    let mut skipped = 0;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match serde_json::from_value::<Workload>(item) {
            Ok(w) => out.push(w),
            Err(_) => skipped += 1,
        }
    }
    Ok((out, skipped))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_shapes() {
        let one = r#"{"id":"wl_1","slug":"a"}"#;
        for body in [format!("[{one}]"), format!(r#"{{"workloads":[{one}]}}"#)] {
            let (l, skipped) = decode_workload_list(body.as_bytes()).unwrap();
            assert_eq!((l.len(), skipped), (1, 0));
            assert_eq!(l[0].task_type, "text2text");
        }
        for body in ["null", r#"{"workloads":null}"#, "[]"] {
            assert_eq!(decode_workload_list(body.as_bytes()).unwrap().0.len(), 0);
        }
        assert!(decode_workload_list(b"42").is_err());
    }

    #[test]
    fn odd_entries_are_skipped() {
        let body =
            r#"[{"id":"wl_1","slug":"a"},{"slug":"no-id"},{"id":"wl_3","slug":"c","name":7},"x"]"#;
        let (l, skipped) = decode_workload_list(body.as_bytes()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(skipped, 3);
    }

    #[test]
    fn patch_tri_state() {
        let p: PatchWorkload =
            serde_json::from_str(r#"{"description":null,"worker_id":"w1"}"#).unwrap();
        assert_eq!(p.description, Some(None));
        assert_eq!(p.worker_id, Some(Some("w1".into())));
        assert_eq!(p.gpu_resource_id, None);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"description":null,"worker_id":"w1"}"#
        );
    }
}
