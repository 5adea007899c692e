use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST …/v1/rerank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankRequest {
    pub model: String,
    pub query: String,
    pub documents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One scored document; `score` is accepted as an alias of `relevance_score`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankResultItem {
    pub index: usize,
    #[serde(alias = "score")]
    pub relevance_score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
}

/// A rerank response; `model` may be missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub results: Vec<RerankResultItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}
