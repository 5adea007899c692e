use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Usage;

/// `input` of an embeddings request: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

impl EmbeddingInput {
    /// The inputs as a list, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            EmbeddingInput::One(s) => std::slice::from_ref(s),
            EmbeddingInput::Many(v) => v,
        }
    }
}

/// The body of `POST …/v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One vector of an embeddings response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingItem {
    #[serde(default = "embedding_object")]
    pub object: String,
    pub index: usize,
    pub embedding: Vec<f32>,
}

fn embedding_object() -> String {
    "embedding".to_owned()
}

/// An embeddings response. Clients order by `index`, not by position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub model: String,
    pub data: Vec<EmbeddingItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}
