//! Property-based fuzzing of everything that decodes bytes from the network: the SSE
//! decoder, chat stream events, error bodies, and the success-body decoders, plus the
//! same decoders behind a real HTTP connection.
//!
//! Every target is named `fuzz_*`. `cargo test --release` runs each with proptest's
//! default case count (256, fewer for the HTTP ones); a longer run is
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release -p inferencekey-core --test fuzz
//! ```
//!
//! A failing case is shrunk and printed by proptest; it then becomes a named regression
//! test at the end of this file (the `regression_*` tests).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use inferencekey_core::sse::{SseDecoder, SseItem};
use inferencekey_core::wire::{
    ErrorEnvelope, MAX_QUOTED_BODY_CHARS, decode_error_body, decode_workload_list, quote_body,
};
use inferencekey_core::{
    ClientOptions, DataClient, EmbedResult, ErrorKind, RerankResult, TextChunk, TextRequest,
    TextResult,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// Generators

/// Bytes that exercise the SSE grammar more often than uniform noise would.
fn sse_noise() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"data".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é😀".as_bytes().to_vec()),
        Just(b"[DONE]".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
}

/// Splits `bytes` at the given points (each an index into `0..=len`).
fn split<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(&bytes[last..p]);
        last = p;
    }
    out.push(&bytes[last..]);
    out
}

fn decode(chunks: &[&[u8]]) -> inferencekey_core::Result<Vec<SseItem>> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        decoder.feed(c, &mut out)?;
    }
    Ok(out)
}

fn events(items: &[SseItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            SseItem::Event(s) => Some(s.clone()),
            SseItem::Comment => None,
        })
        .collect()
}

/// A line that is not blank and carries no data: comments and ignored fields.
fn noise_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\r\n]{0,12}".prop_map(|t| format!(":{t}")),
        "[^\r\n]{0,12}".prop_map(|t| format!("event: {t}")),
        "[0-9]{1,4}".prop_map(|t| format!("id: {t}")),
        "[0-9]{1,4}".prop_map(|t| format!("retry: {t}")),
        "[a-z]{1,6}".prop_map(|t| format!("x{t}: y")),
    ]
}

/// One event: some noise lines, then one or more data lines.
fn sse_event() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    (
        prop::collection::vec(noise_line(), 0..3),
        prop::collection::vec("[^\r\n]{0,16}", 1..4),
    )
}

/// Encodes events with the chosen line endings (0: LF, 1: CRLF, 2: CR).
fn encode(events: &[(Vec<String>, Vec<String>)], endings: &[u8], bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut k = 0;
    let mut eol = |out: &mut Vec<u8>| {
        let mut e: &[u8] = match endings[k % endings.len()] % 3 {
            0 => b"\n",
            1 => b"\r\n",
            _ => b"\r",
        };
        // A CR ending followed by an LF ending reads as one CRLF; SSE itself cannot
        // tell them apart, so that sequence is never generated.
        if e == b"\n" && out.last() == Some(&b'\r') {
            e = b"\r\n";
        }
        k += 1;
        out.extend_from_slice(e);
    };
    for (noise, data) in events {
        for line in noise {
            out.extend_from_slice(line.as_bytes());
            eol(&mut out);
        }
        for line in data {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            eol(&mut out);
        }
        eol(&mut out);
    }
    out
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("error"),
            Just("code"),
            Just("message"),
            Just("choices")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("error".to_owned()),
            Just("code".to_owned()),
            Just("message".to_owned()),
            Just("type".to_owned()),
            Just("request_id".to_owned()),
            Just("detail".to_owned()),
            Just("object".to_owned()),
            Just("choices".to_owned()),
            Just("delta".to_owned()),
            Just("content".to_owned()),
            Just("usage".to_owned()),
            Just("data".to_owned()),
            Just("embedding".to_owned()),
            Just("index".to_owned()),
            Just("results".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A token with its secret part; the secret must never show up anywhere.
fn token() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![Just("ik_live_"), Just("ik_sdk_")],
        "[0-9a-f]{8}",
        "[0-9a-f]{64}",
    )
        .prop_map(|(kind, id, secret)| (format!("{kind}{id}_{secret}"), secret))
}

fn cases(default: u32) -> Config {
    // PROPTEST_CASES, when set, raises every target's budget alike.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Failures are kept as named regression tests, not in a seed file.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------
// The SSE decoder

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary bytes never panic, and how they are split into reads never changes
    /// the outcome (the items, or whether it fails).
    #[test]
    fn fuzz_sse_decoder_any_bytes_any_split(
        bytes in sse_noise(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let whole = decode(&[&bytes]);
        let pieces = decode(&split(&bytes, &cuts));
        let byte_by_byte: Vec<&[u8]> = bytes.chunks(1).collect();
        let single = decode(&byte_by_byte);
        match (&whole, &pieces, &single) {
            (Ok(a), Ok(b), Ok(c)) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, c);
            }
            (Err(_), Err(_), Err(_)) => {}
            _ => prop_assert!(false, "whole {:?}, split {:?}, bytewise {:?}", whole, pieces, single),
        }
        if let Err(e) = whole {
            prop_assert_eq!(e.kind(), ErrorKind::Api);
            prop_assert_eq!(e.code(), Some("malformed_response"));
        }
    }

    /// Well-formed streams (any text, comments and ignored fields, any line endings,
    /// an optional BOM) decode to exactly their events, however they are split.
    #[test]
    fn fuzz_sse_decoder_round_trip(
        evts in prop::collection::vec(sse_event(), 0..8),
        endings in prop::collection::vec(0u8..3, 1..16),
        bom in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let bytes = encode(&evts, &endings, bom);
        let expected: Vec<String> = evts.iter().map(|(_, data)| data.join("\n")).collect();
        let items = decode(&split(&bytes, &cuts)).unwrap();
        prop_assert_eq!(events(&items), expected);
    }
}

// ---------------------------------------------------------------------------------
// Chat stream events

proptest! {
    #![proptest_config(cases(256))]

    /// Any payload decodes to a chunk or an error, never a panic; any non-null
    /// `error` member is an error.
    #[test]
    fn fuzz_chat_event_any_json(value in json_value()) {
        let data = value.to_string();
        let decoded = TextChunk::from_event(&data);
        let has_error = value.get("error").is_some_and(|e| !e.is_null());
        if has_error || !value.is_object() {
            prop_assert!(decoded.is_err(), "{data} decoded as a chunk");
        }
    }

    /// Arbitrary text as an event payload never panics.
    #[test]
    fn fuzz_chat_event_any_text(data in ".{0,64}") {
        let _ = TextChunk::from_event(&data);
    }

    /// Well-formed chunks give back their text and finish reason, whatever else they
    /// carry.
    #[test]
    fn fuzz_chat_event_chunks(
        content in proptest::option::of(".{0,24}"),
        finish in proptest::option::of(prop_oneof![Just("stop"), Just("length"), Just("tool_calls")]),
        extra in proptest::option::of(json_value()),
    ) {
        let mut chunk = json!({
            "id": "c-1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        });
        if let Some(extra) = extra {
            chunk["unknown_field"] = extra;
        }
        let got = TextChunk::from_event(&chunk.to_string()).unwrap();
        prop_assert_eq!(got.text, content.unwrap_or_default());
        prop_assert_eq!(got.finish_reason.as_deref(), finish);
    }

    /// An error event raises with the server's code, and never repeats a secret it
    /// quotes.
    #[test]
    fn fuzz_chat_error_event_hides_secrets(
        code in "[a-z_]{1,16}",
        before in ".{0,16}",
        after in ".{0,16}",
        (token, secret) in token(),
    ) {
        let event = json!({"error": {"code": code, "message": format!("{before}{token}{after}")}});
        let e = TextChunk::from_event(&event.to_string()).unwrap_err();
        prop_assert_eq!(e.code(), Some(code.as_str()));
        let shown = format!("{e} {e:?}");
        prop_assert!(!shown.contains(&secret), "{}", shown);
    }
}

// ---------------------------------------------------------------------------------
// Error bodies

proptest! {
    #![proptest_config(cases(256))]

    /// Any bytes decode without panicking; a body that is not a JSON object is quoted
    /// as the message, whitespace folded and capped.
    #[test]
    fn fuzz_error_body_any_bytes(body in sse_noise()) {
        let d = decode_error_body(&body);
        if serde_json::from_slice::<Value>(&body).is_err() {
            prop_assert_eq!(d.code, None);
            if let Some(m) = d.message {
                prop_assert!(m.chars().count() <= MAX_QUOTED_BODY_CHARS + 1);
                prop_assert!(!m.is_empty());
            }
        }
    }

    /// Any JSON decodes without panicking, and the code, when found, is never blank.
    #[test]
    fn fuzz_error_body_any_json(value in json_value()) {
        let d = decode_error_body(value.to_string().as_bytes());
        if let Some(code) = &d.code {
            prop_assert!(!code.trim().is_empty());
        }
        if let Some(message) = &d.message {
            prop_assert!(!message.trim().is_empty());
        }
    }

    /// The platform's envelope round-trips: code, message and request id.
    #[test]
    fn fuzz_error_envelope_round_trip(
        code in "[a-z][a-z_]{0,24}",
        message in ".{0,40}".prop_filter("a blank message counts as none", |m| !m.trim().is_empty()),
        request_id in proptest::option::of("req_[0-9a-f]{8}"),
    ) {
        let mut envelope = ErrorEnvelope::new(&code, &message);
        if let Some(id) = &request_id {
            envelope = envelope.with_request_id(id);
        }
        let d = decode_error_body(&serde_json::to_vec(&envelope).unwrap());
        prop_assert_eq!(d.code, Some(code));
        prop_assert_eq!(d.message, Some(message));
        prop_assert_eq!(d.request_id, request_id);
    }

    /// The variants in circulation: a bare string code with a sibling message, and
    /// OpenAI's shape whose code is null (the type is used) or a number.
    #[test]
    fn fuzz_error_body_variants(
        code in "[a-z][a-z_]{0,16}",
        kind in "[a-z][a-z_]{0,16}",
        number in any::<i32>(),
        message in "[a-zA-Z0-9][a-zA-Z0-9 ]{0,30}",
    ) {
        let bare = decode_error_body(json!({"error": code, "message": message}).to_string().as_bytes());
        prop_assert_eq!(bare.code.as_deref(), Some(code.as_str()));
        prop_assert_eq!(bare.message.as_deref(), Some(message.as_str()));
        let null_code = json!({"error": {"message": message, "type": kind, "code": null}});
        let d = decode_error_body(null_code.to_string().as_bytes());
        prop_assert_eq!(d.code.as_deref(), Some(kind.as_str()));
        let numeric = json!({"error": {"message": message, "type": kind, "code": number}});
        let d = decode_error_body(numeric.to_string().as_bytes());
        prop_assert_eq!(d.code, Some(number.to_string()));
        let object = json!({"object": "error", "message": message, "code": number});
        let d = decode_error_body(object.to_string().as_bytes());
        prop_assert_eq!(d.message.as_deref(), Some(message.as_str()));
    }

    /// A quoted body is one line of single-spaced words, at most the cap (plus `…`).
    #[test]
    fn fuzz_quote_body(body in prop::collection::vec(any::<u8>(), 0..1500)) {
        let q = quote_body(&body);
        prop_assert!(q.chars().count() <= MAX_QUOTED_BODY_CHARS + 1);
        prop_assert!(!q.contains("  "));
        prop_assert!(!q.starts_with(' ') && !q.ends_with(' '));
        prop_assert!(!q.contains(['\n', '\r', '\t']));
    }
}

// ---------------------------------------------------------------------------------
// Success bodies

proptest! {
    #![proptest_config(cases(256))]

    /// The success-body decoders never panic on any JSON or any bytes.
    #[test]
    fn fuzz_success_bodies_never_panic(
        value in json_value(),
        noise in sse_noise(),
        expected in 0usize..4,
        top_n in proptest::option::of(1u32..4),
    ) {
        for body in [Bytes::from(value.to_string()), Bytes::from(noise)] {
            let _ = TextResult::from_response(body.clone());
            let _ = EmbedResult::from_response(body.clone(), expected);
            let _ = RerankResult::from_response(body.clone(), expected, top_n);
            let _ = decode_workload_list(&body);
        }
    }
}

// ---------------------------------------------------------------------------------
// The same decoders behind a real connection

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn quick() -> ClientOptions {
    ClientOptions {
        max_retries: 0,
        timeout: Duration::from_secs(10),
        stream_idle_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn endpoint(url: &str) -> inferencekey_core::Endpoint {
    DataClient::builder()
        .base_url(url)
        .project("p")
        .api_key(format!("ik_live_0badc0de_{}", "0".repeat(64)))
        .options(quick())
        .build()
        .unwrap()
        .endpoint("w", None)
        .unwrap()
}

/// The event-stream body for `texts`, each in one chunk event, then `[DONE]` if asked.
fn stream_body(texts: &[String], done: bool, crlf: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for t in texts {
        let chunk =
            json!({"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}{eol}{eol}"));
    }
    let last = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    out.push_str(&format!(": keepalive{eol}data: {last}{eol}{eol}"));
    if done {
        out.push_str(&format!("data: [DONE]{eol}{eol}"));
    }
    out.into_bytes()
}

proptest! {
    #![proptest_config(cases(48))]

    /// A chat stream written in arbitrary pieces over HTTP yields exactly its texts
    /// when it ends with `[DONE]`, and fails as truncated when it does not.
    #[test]
    fn fuzz_chat_stream_over_http(
        texts in prop::collection::vec(".{0,12}", 0..6),
        done in any::<bool>(),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let body = stream_body(&texts, done, crlf);
        let mut steps = vec![sse_head()];
        for piece in split(&body, &cuts) {
            steps.push(Step::Write(piece.to_vec()));
            steps.push(Step::Sleep(Duration::from_millis(1)));
        }
        let (got, end) = runtime().block_on(async move {
            let server = serve(move |_, _| steps.clone()).await;
            let mut stream = endpoint(&server.url())
                .generate_text_stream(TextRequest::prompt("hi"))
                .await
                .unwrap();
            let mut got = String::new();
            let mut end = None;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(c) => got.push_str(&c.text),
                    Err(e) => end = Some(e),
                }
            }
            (got, end)
        });
        prop_assert_eq!(got, texts.concat());
        if done {
            prop_assert!(end.is_none(), "{:?}", end);
        } else {
            prop_assert_eq!(end.map(|e| e.code().map(str::to_owned)), Some(Some("stream_truncated".to_owned())));
        }
    }

    /// An error response with any body becomes an error carrying its status, with a
    /// bounded message that never repeats a secret the body quotes.
    #[test]
    fn fuzz_error_responses_over_http(
        status in prop_oneof![Just(400u16), Just(401), Just(403), Just(404), Just(422), Just(500), Just(502)],
        value in json_value(),
        noise in sse_noise(),
        (token, secret) in token(),
        shape in 0u8..4,
    ) {
        let body: Vec<u8> = match shape {
            0 => value.to_string().into_bytes(),
            1 => noise,
            2 => json!({"error": {"code": "x", "message": format!("bad {token}")}}).to_string().into_bytes(),
            _ => format!("<html><body>proxy error {token}</body></html>").into_bytes(),
        };
        let e = runtime().block_on(async move {
            let server = serve(move |_, _| vec![response(status, &[], &body)]).await;
            endpoint(&server.url())
                .generate_text(TextRequest::prompt("hi"))
                .await
                .unwrap_err()
        });
        prop_assert_eq!(e.status(), Some(status));
        let text = format!("{e} {e:?}");
        prop_assert!(!text.contains(&secret), "{}", text);
    }
}
