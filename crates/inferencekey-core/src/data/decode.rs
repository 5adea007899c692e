//! Decoding and checking data-plane response bodies.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;

use super::embeddings_scan::scan_embeddings;
use super::{EmbedResult, RerankItem, RerankResult, TextChunk, TextResult};
use crate::error::{Error, Result};
use crate::transport::{malformed, scrub_secrets};
use crate::wire::{self, ChatChunkChoice, ChatCompletion, DONE_SENTINEL, RerankResponse, Usage};

impl TextResult {
    /// Decodes a non-streaming chat completion body. `null` content is empty text.
    pub fn from_response(raw: Bytes) -> Result<TextResult> {
        let completion: ChatCompletion = serde_json::from_slice(&raw)
            .map_err(|e| malformed(format!("the chat completion could not be decoded: {e}")))?;
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(malformed("the chat completion has no choices"));
        };
        Ok(TextResult {
            text: choice.message.content.unwrap_or_default(),
            model: completion.model,
            finish_reason: choice.finish_reason,
            usage: completion.usage,
            raw,
        })
    }
}

/// The fields of a stream event the client reads; an `error` member marks a failure
/// reported after the headers were sent.
#[derive(Deserialize)]
struct StreamEvent {
    #[serde(default)]
    choices: Vec<ChatChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

/// What one `data` payload of a chat stream means.
#[derive(Debug)]
pub(crate) enum StreamPayload {
    Chunk(TextChunk),
    Done,
}

impl TextChunk {
    /// Decodes the `data` payload of one chat stream event (not `[DONE]`).
    ///
    /// A chunk with empty `choices` is metadata: empty text, `usage` set when present.
    /// An event carrying `error` is returned as an error with its code and message.
    pub fn from_event(data: &str) -> Result<TextChunk> {
        // serde would also read a JSON array as the struct's fields in order, so `[]`
        // would pass for an empty chunk: only an object is an event.
        if !data.trim_start().starts_with('{') {
            return Err(malformed("a chat stream event is not a JSON object"));
        }
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|e| malformed(format!("a chat stream event is not a valid chunk: {e}")))?;
        if let Some(err) = event.error {
            let decoded =
                wire::decode_error_body(serde_json::json!({ "error": err }).to_string().as_bytes());
            let mut e = Error::api(format!(
                "the stream reported an error: {}",
                decoded
                    .message
                    .map(|m| scrub_secrets(&m))
                    .unwrap_or_else(|| "no message".to_owned())
            ));
            if let Some(code) = decoded.code {
                e = e.with_code(code);
            }
            return Err(e.with_request_id(decoded.request_id));
        }
        let raw = Bytes::copy_from_slice(data.as_bytes());
        let Some(choice) = event.choices.into_iter().next() else {
            return Ok(TextChunk {
                text: String::new(),
                finish_reason: None,
                usage: event.usage,
                raw,
            });
        };
        Ok(TextChunk {
            text: choice.delta.content.unwrap_or_default(),
            finish_reason: choice.finish_reason,
            usage: event.usage,
            raw,
        })
    }
}

pub(crate) fn stream_payload(data: &str) -> Result<StreamPayload> {
    if data.trim() == DONE_SENTINEL {
        return Ok(StreamPayload::Done);
    }
    TextChunk::from_event(data).map(StreamPayload::Chunk)
}

impl EmbedResult {
    /// Decodes an embeddings body for `expected` inputs: vectors are ordered by `index`,
    /// and the count, the index set and the dimension are checked.
    ///
    /// The floats are decoded straight into one row-major buffer, so a large response
    /// is never held as one allocation per vector. A body of the usual shape is read by
    /// [`scan_embeddings`] in one pass; anything else goes through serde, which gives
    /// the same result or a precise error.
    pub fn from_response(raw: Bytes, expected: usize) -> Result<EmbedResult> {
        let (flat, model, usage) = match scan_embeddings(&raw, expected) {
            Some(scanned) => (
                Flat {
                    values: scanned.values,
                    dim: scanned.dim,
                    order: Some(scanned.order),
                },
                scanned.model,
                scanned.usage,
            ),
            None => {
                let mut flat = Flat::default();
                let mut de = serde_json::Deserializer::from_slice(&raw);
                let (model, usage) = BodySeed(&mut flat)
                    .deserialize(&mut de)
                    .and_then(|v| de.end().map(|()| v))
                    .map_err(|e| {
                        malformed(format!("the embeddings response could not be decoded: {e}"))
                    })?;
                (flat, model, usage)
            }
        };
        let Some(order) = flat.order else {
            return Err(malformed("the embeddings response has no `data`"));
        };
        if order.len() != expected {
            return Err(malformed(format!(
                "the embeddings response holds {} vectors for {expected} inputs",
                order.len()
            )));
        }
        let dim = flat.dim.unwrap_or(0);
        if expected > 0 && dim == 0 {
            return Err(malformed("the embeddings response holds empty vectors"));
        }
        let mut seen = vec![false; expected];
        for &index in &order {
            if index >= expected || seen[index] {
                return Err(malformed(format!(
                    "the embeddings response's indices do not match the {expected} inputs \
                     (index {index} is out of range or repeated)"
                )));
            }
            seen[index] = true;
        }
        let in_order = order.iter().enumerate().all(|(pos, &index)| pos == index);
        let values = if in_order {
            flat.values
        } else {
            let mut sorted = vec![0f32; expected * dim];
            for (pos, &index) in order.iter().enumerate() {
                sorted[index * dim..(index + 1) * dim]
                    .copy_from_slice(&flat.values[pos * dim..(pos + 1) * dim]);
            }
            sorted
        };
        Ok(EmbedResult {
            count: expected,
            dim,
            values,
            model,
            usage,
            raw,
        })
    }
}

/// Vectors in arrival order, with the `index` of each.
#[derive(Default)]
struct Flat {
    values: Vec<f32>,
    dim: Option<usize>,
    /// `None` until `data` is seen.
    order: Option<Vec<usize>>,
}

/// The response object: `data` goes into [`Flat`]; `model` and `usage` are returned.
struct BodySeed<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = (String, Option<Usage>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = (String, Option<Usage>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an embeddings response object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut model = String::new();
        let mut usage = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "data" => {
                    self.0.order = Some(Vec::new());
                    map.next_value_seed(DataSeed(self.0))?;
                }
                "model" => model = map.next_value::<Option<String>>()?.unwrap_or_default(),
                "usage" => usage = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((model, usage))
    }
}

struct DataSeed<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of embeddings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(ItemSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct ItemSeed<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an embedding object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let flat = self.0;
        let start = flat.values.len();
        let mut index = None;
        let mut has_vector = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "index" => index = Some(map.next_value::<usize>()?),
                "embedding" if !has_vector => {
                    has_vector = true;
                    map.next_value_seed(RowSeed(&mut flat.values))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let index = index.ok_or_else(|| A::Error::missing_field("index"))?;
        if !has_vector {
            return Err(A::Error::missing_field("embedding"));
        }
        let len = flat.values.len() - start;
        match flat.dim {
            None => flat.dim = Some(len),
            Some(dim) if dim != len => {
                return Err(A::Error::custom(format!(
                    "vectors of dimensions {dim} and {len} are mixed"
                )));
            }
            Some(_) => {}
        }
        flat.order.get_or_insert_with(Vec::new).push(index);
        Ok(())
    }
}

/// One vector, appended to the shared buffer.
struct RowSeed<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.reserve(n);
        }
        while let Some(v) = seq.next_element::<f32>()? {
            self.0.push(v);
        }
        Ok(())
    }
}

impl RerankResult {
    /// Decodes a rerank body for `documents` documents: indices are checked, results
    /// sorted by score (highest first) and cut to `top_n`.
    pub fn from_response(raw: Bytes, documents: usize, top_n: Option<u32>) -> Result<RerankResult> {
        let resp: RerankResponse = serde_json::from_slice(&raw)
            .map_err(|e| malformed(format!("the rerank response could not be decoded: {e}")))?;
        let mut results = Vec::with_capacity(resp.results.len());
        for r in resp.results {
            if r.index >= documents {
                return Err(malformed(format!(
                    "the rerank response names document {} of {documents}",
                    r.index
                )));
            }
            results.push(RerankItem {
                index: r.index,
                score: r.relevance_score,
                document: r.document,
            });
        }
        results.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(n) = top_n {
            results.truncate(n as usize);
        }
        Ok(RerankResult {
            results,
            model: resp.model,
            usage: resp.usage,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Usage;

    #[test]
    fn null_content_is_empty_text() {
        let r = TextResult::from_response(Bytes::from_static(
            br#"{"model":"m","choices":[{"message":{"role":"assistant","content":null},"finish_reason":"tool_calls"}]}"#,
        ))
        .unwrap();
        assert_eq!(r.text, "");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert!(r.usage.is_none());
        assert!(TextResult::from_response(Bytes::from_static(b"{\"choices\":[]}")).is_err());
        assert!(TextResult::from_response(Bytes::from_static(b"<html>")).is_err());
    }

    #[test]
    fn chunks_usage_and_errors() {
        let c = TextChunk::from_event(
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.usage.unwrap().total_tokens), ("", 3));
        let c = TextChunk::from_event(
            r#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(c.text, "hi");
        let e = TextChunk::from_event(r#"{"error":{"code":"upstream_error","message":"boom"}}"#)
            .unwrap_err();
        assert_eq!(e.code(), Some("upstream_error"));
        assert!(e.message().contains("boom"));
        assert!(TextChunk::from_event("{not json").is_err());
        assert!(matches!(
            stream_payload("[DONE]").unwrap(),
            StreamPayload::Done
        ));
    }

    /// Found by `fuzz_chat_event_any_json`: serde reads a JSON array as the struct's
    /// fields in order, so `[]` passed for an empty chunk.
    #[test]
    fn regression_array_event_is_malformed() {
        for data in ["[]", " [[], null]", "null", "3", "\"chunk\""] {
            let e = TextChunk::from_event(data).unwrap_err();
            assert_eq!(e.code(), Some("malformed_response"), "{data}");
        }
    }

    #[test]
    fn embeddings_are_ordered_by_index_and_checked() {
        let body = br#"{"model":"e","data":[{"index":1,"embedding":[3,4]},{"index":0,"embedding":[1,2]}]}"#;
        let r = EmbedResult::from_response(Bytes::from_static(body), 2).unwrap();
        assert_eq!((r.count, r.dim), (2, 2));
        assert_eq!(r.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(EmbedResult::from_response(Bytes::from_static(body), 3).is_err());
        let dup = br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
        assert!(EmbedResult::from_response(Bytes::from_static(dup), 2).is_err());
        let dims = br#"{"data":[{"index":0,"embedding":[1]},{"index":1,"embedding":[2,3]}]}"#;
        assert!(EmbedResult::from_response(Bytes::from_static(dims), 2).is_err());
        for bad in [
            &br#"{"model":"e"}"#[..],
            br#"{"data":[{"embedding":[1]}]}"#,
            br#"{"data":[{"index":0}]}"#,
            br#"{"data":[{"index":1,"embedding":[1]}]}"#,
            br#"{"data":[{"index":0,"embedding":["x"]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1]}]} trailing"#,
            b"[]",
        ] {
            let e = EmbedResult::from_response(Bytes::from_static(bad), 1).unwrap_err();
            assert_eq!(e.code(), Some("malformed_response"));
        }
        let ok = br#"{"object":"list","data":[{"object":"embedding","embedding":[0.5,1e-3],"index":0,"x":{"y":[1]}}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let r = EmbedResult::from_response(Bytes::from_static(ok), 1).unwrap();
        assert_eq!(r.values, vec![0.5, 0.001]);
        assert_eq!(r.usage.unwrap().total_tokens, 2);
    }

    /// Values, order, model and usage.
    type Decoded = (Vec<f32>, Vec<usize>, String, Option<Usage>);

    /// The serde decoder alone: what `from_response` falls back to.
    fn serde_decode(body: &[u8]) -> Option<Decoded> {
        let mut flat = Flat::default();
        let mut de = serde_json::Deserializer::from_slice(body);
        let (model, usage) = BodySeed(&mut flat).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some((flat.values, flat.order?, model, usage))
    }

    fn scan_decode(body: &[u8]) -> Option<Decoded> {
        let s = scan_embeddings(body, 1)?;
        Some((s.values, s.order, s.model, s.usage))
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn embedding_numbers_in_every_json_spelling() {
        let body = br#"{"data":[{"index":0,"embedding":[ -0.0123456789 ,3,-0,1E2,2.5e-5,
            0.30000001192092896,-7.006e+3,16777217, 123456789012345, 0.0 ]}]}"#;
        let r = EmbedResult::from_response(Bytes::from_static(body), 1).unwrap();
        let fast = scan_decode(body).expect("the usual shape is scanned");
        let slow = serde_decode(body).unwrap();
        assert!(same_bits(&fast.0, &slow.0), "{:?} {:?}", fast.0, slow.0);
        assert!(same_bits(&r.values, &slow.0));
        assert!(r.values[2].is_sign_negative());
        let empty = br#"{"data":[{"index":0,"embedding":[ ]}]}"#;
        assert!(EmbedResult::from_response(Bytes::from_static(empty), 1).is_err());
        for bad in [
            &br#"{"data":[{"index":0,"embedding":[1,null]}]}"#[..],
            br#"{"data":[{"index":0,"embedding":[1,[2]]}]}"#,
            br#"{"data":[{"index":0,"embedding":[true]}]}"#,
            br#"{"data":[{"index":0,"embedding":[{"a":1}]}]}"#,
            br#"{"data":[{"index":0,"embedding":"1,2"}]}"#,
            br#"{"data":[{"index":0,"embedding":[1,2,]}]}"#,
            br#"{"data":[{"index":0,"embedding":[NaN]}]}"#,
            br#"{"data":[{"index":0,"embedding":[+1]}]}"#,
            br#"{"data":[{"index":0,"embedding":[01]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1.]}]}"#,
            br#"{"data":[{"index":0,"embedding":[.5]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1e]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1-2]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1]}]"#,
            br#"{"data":[{"index":0,"embedding":[1]}]}}"#,
            br#"{"data":[{"index":-1,"embedding":[1]}]}"#,
            br#"{"data":[{"index":0.0,"embedding":[1]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1]}],"usage":{"total_tokens":-1}}"#,
            br#"{"data":[{"index":0,"embedding":[1]}],"model":7}"#,
        ] {
            assert!(
                scan_decode(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            let e = EmbedResult::from_response(Bytes::from_static(bad), 1).unwrap_err();
            assert_eq!(
                e.code(),
                Some("malformed_response"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unusual_bodies_go_through_serde_with_the_same_result() {
        for body in [
            // An escaped string, an unknown key, a duplicate, a non-string `object`.
            &br#"{"model":"a\u0062","data":[{"index":0,"embedding":[1.5]}]}"#[..],
            br#"{"data":[{"index":0,"embedding":[1.5],"extra":{"x":[1,2]}}],"id":"x"}"#,
            br#"{"data":[{"index":0,"index":0,"embedding":[1.5]}]}"#,
            br#"{"object":null,"data":[{"index":0,"embedding":[1.5]}]}"#,
            br#"{"data":[{"index":0,"embedding":[1.5]}],"usage":{"total_tokens":2,"x":"y"}}"#,
        ] {
            assert!(
                scan_decode(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
            let r = EmbedResult::from_response(Bytes::copy_from_slice(body), 1).unwrap();
            assert_eq!(r.values, vec![1.5]);
        }
        let body = br#"{"model":"a\u0062","data":[{"index":0,"embedding":[1.5]}]}"#;
        let r = EmbedResult::from_response(Bytes::from_static(body), 1).unwrap();
        assert_eq!(r.model, "ab");
    }

    proptest::proptest! {
        /// Whatever the spelling, order and spacing, the one-pass reader gives exactly
        /// what serde gives (same bits), or leaves the body to serde.
        #[test]
        fn scanning_agrees_with_serde(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        -1.0f64..1.0,
                        0u8..6,
                        -8i32..6,
                        0usize..16,
                    ),
                    1..6,
                ),
                1..4,
            ),
            model in "[a-zA-Z0-9/._-]{0,12}",
            usage in proptest::option::of((0u64..1000, 0u64..1000)),
            spaced in proptest::bool::ANY,
            reversed in proptest::bool::ANY,
        ) {
            let dim = rows[0].len();
            let sp = if spaced { " \n " } else { "" };
            let mut items = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let mut numbers = Vec::new();
                for j in 0..dim {
                    let (raw, style, scale, decimals) = row[j % row.len()];
                    let v = raw * 10f64.powi(scale);
                    numbers.push(match style {
                        0 => format!("{v}"),
                        1 => format!("{v:e}"),
                        2 => serde_json::to_string(&v).unwrap(),
                        3 => format!("{}", v as i64),
                        _ => format!("{v:.decimals$}"),
                    });
                }
                let vector = format!("[{sp}{}{sp}]", numbers.join(&format!(",{sp}")));
                let mut members = [
                    format!("\"object\"{sp}:{sp}\"embedding\""),
                    format!("\"index\":{sp}{i}"),
                    format!("\"embedding\":{vector}"),
                ];
                if reversed {
                    members.reverse();
                }
                items.push(format!("{{{}}}", members.join(",")));
            }
            let mut members = vec![
                format!("\"data\":{sp}[{}]", items.join(&format!("{sp},"))),
                format!("\"model\":\"{model}\""),
                "\"object\":\"list\"".to_owned(),
            ];
            if let Some((p, t)) = usage {
                members.push(format!("\"usage\":{{\"prompt_tokens\":{p},\"total_tokens\":{t}}}"));
            }
            if reversed {
                members.reverse();
            }
            let body = format!("{sp}{{{}}}{sp}", members.join(","));
            let slow = serde_decode(body.as_bytes());
            let fast = scan_decode(body.as_bytes());
            // These bodies have the usual shape: only a number serde refuses (a value
            // beyond f64) makes either refuse it.
            proptest::prop_assert_eq!(fast.is_some(), slow.is_some(), "{}", body);
            if let (Some(fast), Some(slow)) = (fast, slow) {
                proptest::prop_assert!(same_bits(&fast.0, &slow.0), "{body}");
                proptest::prop_assert_eq!(&fast.1, &slow.1);
                proptest::prop_assert_eq!(&fast.2, &slow.2);
                proptest::prop_assert_eq!(fast.3, slow.3);
            }
        }
    }

    #[test]
    fn rerank_sorts_accepts_score_alias_and_cuts() {
        let body = br#"{"results":[{"index":0,"score":0.1},{"index":2,"relevance_score":0.9},{"index":1,"score":0.5}]}"#;
        let r = RerankResult::from_response(Bytes::from_static(body), 3, Some(2)).unwrap();
        let idx: Vec<usize> = r.results.iter().map(|i| i.index).collect();
        assert_eq!(idx, vec![2, 1]);
        assert!(r.model.is_none());
        assert!(RerankResult::from_response(Bytes::from_static(body), 2, None).is_err());
    }
}
