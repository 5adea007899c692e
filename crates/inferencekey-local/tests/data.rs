//! Data plane over real HTTP: chat (plain and streamed), embeddings, rerank, routing,
//! checks, readiness gating and body limits.

mod common;

use std::time::Duration;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};
use serde_json::{Value, json};

async fn chat_platform() -> LocalPlatform {
    let p = start(instant()).await;
    create(&p, workload("chat", "text2text")).await;
    p
}

fn chat_body(prompt: &str) -> Value {
    json!({"model": "chat", "messages": [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": prompt}]})
}

async fn post(p: &LocalPlatform, workload: &str, route: &str, body: &Value) -> reqwest::Response {
    auth(client().post(endpoint(p, workload, route)), p.api_key())
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn chat_completion_plain() {
    let p = chat_platform().await;
    let r = post(
        &p,
        "chat",
        "chat/completions",
        &chat_body("Summarise ticket 4411 about refunds"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        c["model"], "org/chat-model",
        "the served model, not the one sent"
    );
    assert!(c["created"].as_i64().unwrap() > 1_600_000_000);
    let choice = &c["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("Summarise") && text.contains("4411") && text.contains("refunds"),
        "{text}"
    );
    assert_eq!(choice["finish_reason"], "stop");
    let u = &c["usage"];
    assert_eq!(u["completion_tokens"], text.split_whitespace().count());
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    // Deterministic.
    let again: Value = post(
        &p,
        "chat",
        "chat/completions",
        &chat_body("Summarise ticket 4411 about refunds"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["choices"][0]["message"]["content"], text);
}

/// Splits an SSE body into its frames, asserting each ends with a blank line.
fn frames(body: &str) -> Vec<&str> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body[..body.len() - 2].split("\n\n").collect()
}

#[tokio::test]
async fn chat_stream_framing_is_exact() {
    let p = chat_platform().await;
    let mut body = chat_body("Reset my 2FA token please");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&p, "chat", "chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let raw = r.text().await.unwrap();
    assert!(raw.ends_with("\n\ndata: [DONE]\n\n"), "{raw:?}");
    let frames = frames(&raw);
    for f in &frames {
        assert!(f.starts_with("data: ") && !f[6..].contains('\n'), "{f:?}");
    }
    assert_eq!(*frames.last().unwrap(), "data: [DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(&f[6..]).unwrap())
        .collect();
    let first = &chunks[0];
    let (id, created) = (
        first["id"].as_str().unwrap(),
        first["created"].as_i64().unwrap(),
    );
    assert_eq!(
        frames[0],
        format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\
             \"model\":\"org/chat-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\"}},\
             \"finish_reason\":null}}]}}"
        )
    );
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let content: Vec<&Value> = chunks[1..chunks.len() - 2].iter().collect();
    assert!(!content.is_empty());
    let mut text = String::new();
    for c in &content {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        assert!(c["choices"][0]["delta"].get("role").is_none());
        text.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(
        chunks
            .iter()
            .filter(|c| !c["choices"][0]["finish_reason"].is_null()
                && c["choices"].as_array().is_some_and(|a| !a.is_empty()))
            .count(),
        1
    );
    assert_eq!(usage_chunk["usage"]["completion_tokens"], content.len());
    let plain: Value = post(
        &p,
        "chat",
        "chat/completions",
        &chat_body("Reset my 2FA token please"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(plain["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(plain["usage"], usage_chunk["usage"]);
}

#[tokio::test]
async fn chat_stream_without_usage_and_with_a_token_rate() {
    let p = start(LocalConfig {
        token_rate: Some(500.0),
        ..instant()
    })
    .await;
    create(&p, workload("chat", "text2text")).await;
    let mut body = chat_body("hello there general");
    body["stream"] = json!(true);
    let raw = post(&p, "chat", "chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let frames = frames(&raw);
    assert_eq!(*frames.last().unwrap(), "data: [DONE]");
    let before_done: Value = serde_json::from_str(&frames[frames.len() - 2][6..]).unwrap();
    assert_eq!(before_done["choices"][0]["finish_reason"], "stop");
    assert!(!raw.contains("\"usage\""));
}

#[tokio::test]
async fn max_tokens_ends_with_length() {
    let p = chat_platform().await;
    let mut body = chat_body("tell me about quarterly revenue forecasts");
    body["max_tokens"] = json!(3);
    let c: Value = post(&p, "chat", "chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    assert_eq!(c["usage"]["completion_tokens"], 3);
    assert_eq!(
        c["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        3
    );
    body["stream"] = json!(true);
    let raw = post(&p, "chat", "chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let frames = frames(&raw);
    // role + 3 content + finish + [DONE]
    assert_eq!(frames.len(), 6, "{raw}");
    assert!(frames[4].contains("\"finish_reason\":\"length\""));
    // A generous limit does not cut.
    body["stream"] = json!(false);
    body["max_tokens"] = json!(1000);
    let c: Value = post(&p, "chat", "chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_bodies_are_validated() {
    let p = chat_platform().await;
    let http = client();
    let raw = auth(
        http.post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("content-type", "application/json")
    .body("{\"model\": \"chat\", \"messages\": [")
    .send()
    .await
    .unwrap();
    let m = expect_error(raw, 400, "bad_request").await;
    assert!(m.contains("JSON"), "{m}");
    for bad in [
        json!({"model": "chat", "messages": []}),
        json!({"messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "chat", "messages": [{"role": "wizard", "content": "hi"}]}),
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}),
        json!({"model": "chat", "messages": "hi"}),
        json!("just a string"),
    ] {
        expect_error(
            post(&p, "chat", "chat/completions", &bad).await,
            400,
            "validation_error",
        )
        .await;
    }
    // Unknown OpenAI fields pass.
    let ok = json!({"model": "Qwen/Qwen2.5", "messages": [{"role": "user", "content": "hi"}],
                    "top_p": 0.9, "seed": 7, "stop": ["\n"]});
    assert_eq!(
        post(&p, "chat", "chat/completions", &ok).await.status(),
        200
    );
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn vector(item: &Value) -> Vec<f64> {
    item["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn embeddings_are_indexed_normalised_and_meaningful() {
    let p = start(instant()).await;
    create(&p, workload("embed", "embedding")).await;
    let inputs = [
        "refund policy for orders",
        "2FA reset",
        "what is the refund policy",
    ];
    let r = post(
        &p,
        "embed",
        "embeddings",
        &json!({"model": "embed", "input": inputs}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["object"], "list");
    assert_eq!(e["model"], "org/embed-model");
    let data = e["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f64>> = data.iter().map(vector).collect();
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["object"], "embedding");
        assert_eq!(vectors[i].len(), 384);
        assert!((norm(&vectors[i]) - 1.0).abs() < 1e-4);
    }
    assert!(dot(&vectors[0], &vectors[2]) > dot(&vectors[0], &vectors[1]));
    assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(e["usage"]["total_tokens"], e["usage"]["prompt_tokens"]);

    // One string, and `dimensions`.
    let one: Value = post(
        &p,
        "embed",
        "embeddings",
        &json!({"model": "embed", "input": "refund policy for orders", "dimensions": 64}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["index"], 0);
    assert_eq!(vector(&one["data"][0]).len(), 64);
    // Same text, same vector.
    let again: Value = post(
        &p,
        "embed",
        "embeddings",
        &json!({"model": "embed", "input": ["refund policy for orders"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(vector(&again["data"][0]), vectors[0]);

    for bad in [
        json!({"model": "embed", "input": []}),
        json!({"model": "embed", "input": [1, 2]}),
        json!({"model": "embed", "input": "x", "dimensions": 0}),
        json!({"model": "embed", "input": "x", "encoding_format": "base64"}),
        json!({"model": "embed"}),
    ] {
        expect_error(
            post(&p, "embed", "embeddings", &bad).await,
            400,
            "validation_error",
        )
        .await;
    }
}

#[tokio::test]
async fn rerank_is_sorted_and_cut() {
    let p = start(instant()).await;
    create(&p, workload("rerank", "reranker")).await;
    let docs = [
        "Keys are rotated from Settings.",
        "Our office is in Lyon.",
        "Rotate a key to revoke the old key.",
    ];
    let body = json!({"model": "rerank", "query": "how do I rotate a key", "documents": docs});
    let r: Value = post(&p, "rerank", "rerank", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["model"], "org/rerank-model");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let scores: Vec<f64> = results
        .iter()
        .map(|x| x["relevance_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let mut indices: Vec<u64> = results
        .iter()
        .map(|x| x["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices[0], 2);
    assert_eq!(indices[2], 1, "the Lyon office is least relevant");
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    assert!(r["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let mut top = body.clone();
    top["top_n"] = json!(2);
    top["return_documents"] = json!(true);
    let r: Value = post(&p, "rerank", "rerank", &top)
        .await
        .json()
        .await
        .unwrap();
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 2);
    assert_eq!(results[0]["document"]["text"], docs[2]);

    for bad in [
        json!({"model": "r", "query": " ", "documents": docs}),
        json!({"model": "r", "query": "q", "documents": []}),
        json!({"model": "r", "query": "q", "documents": docs, "top_n": 0}),
    ] {
        expect_error(
            post(&p, "rerank", "rerank", &bad).await,
            400,
            "validation_error",
        )
        .await;
    }
    // A reranker also embeds.
    let e = post(
        &p,
        "rerank",
        "embeddings",
        &json!({"model": "r", "input": "x"}),
    )
    .await;
    assert_eq!(e.status(), 200);
}

#[tokio::test]
async fn the_task_type_decides_the_routes() {
    let p = start(instant()).await;
    create(&p, workload("chat", "text2text")).await;
    create(&p, workload("embed", "embedding")).await;
    create(&p, workload("pic", "text2image")).await;
    let chat = chat_body("hi");
    let embed = json!({"model": "m", "input": "x"});
    let rerank = json!({"model": "m", "query": "q", "documents": ["d"]});
    for (w, route, body) in [
        ("embed", "chat/completions", &chat),
        ("chat", "embeddings", &embed),
        ("chat", "rerank", &rerank),
        ("embed", "rerank", &rerank),
        ("pic", "chat/completions", &chat),
        ("pic", "images/generations", &json!({"prompt": "a cat"})),
    ] {
        let m = expect_error(post(&p, w, route, body).await, 400, "unsupported_task").await;
        assert!(m.contains(w) || m.contains(route), "{m}");
    }
    let models: Value = auth(client().get(endpoint(&p, "embed", "models")), p.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "org/embed-model");
    let r = auth(
        client().get(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .send()
    .await
    .unwrap();
    expect_error(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn data_plane_checks_come_in_protocol_order() {
    let p = chat_platform().await;
    create(&p, workload("other", "text2text")).await;
    let orbit = p.add_project("orbit");
    let http = client();
    let url = endpoint(&p, "chat", "chat/completions");
    let bad = "{broken";
    let send = |token: Option<String>, url: String| {
        let mut r = http.post(url).body(bad);
        if let Some(t) = token {
            r = auth(r, &t);
        }
        r.send()
    };
    expect_error(send(None, url.clone()).await.unwrap(), 401, "unauthorized").await;
    let unknown = format!("ik_live_00000000_{}", "0".repeat(64));
    expect_error(
        send(Some(unknown), url.clone()).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        send(Some(p.sdk_token().into()), url.clone()).await.unwrap(),
        403,
        "wrong_credential_type",
    )
    .await;
    expect_error(
        send(Some(orbit.api_key.clone()), url.clone())
            .await
            .unwrap(),
        403,
        "project_scope_mismatch",
    )
    .await;
    let narrow = p.mint_api_key(&["demo/other"]);
    expect_error(
        send(Some(narrow.clone()), url.clone()).await.unwrap(),
        403,
        "scope_insufficient",
    )
    .await;
    // Scope comes before existence: a narrow key on an unknown workload is 403.
    expect_error(
        send(
            Some(narrow.clone()),
            endpoint(&p, "ghost", "chat/completions"),
        )
        .await
        .unwrap(),
        403,
        "scope_insufficient",
    )
    .await;
    expect_error(
        send(
            Some(p.api_key().into()),
            endpoint(&p, "ghost", "chat/completions"),
        )
        .await
        .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Auth passes, the body is what fails.
    expect_error(
        send(Some(p.api_key().into()), url.clone()).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    let granted = p.mint_api_key(&["demo/chat"]);
    let r = auth(http.post(&url), &granted)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A revoked data key is unknown.
    assert!(p.revoke(&granted));
    let r = auth(http.post(&url), &granted)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    // The wildcard covers workloads created later.
    create(&p, workload("later", "text2text")).await;
    assert_eq!(
        post(&p, "later", "chat/completions", &chat_body("hi"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn not_ready_is_503() {
    let p = start(LocalConfig {
        readiness: ReadinessTimings::uniform(Duration::from_millis(150)),
        failing_slugs: vec!["doomed".into()],
        ..LocalConfig::default()
    })
    .await;
    create(&p, workload("chat", "text2text")).await;
    create(&p, workload("doomed", "text2text")).await;
    let m = expect_error(
        post(&p, "chat", "chat/completions", &chat_body("hi")).await,
        503,
        "upstream_unavailable",
    )
    .await;
    assert!(m.contains("not ready"), "{m}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(&p, "chat", "chat/completions", &chat_body("hi")).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = expect_error(
        post(&p, "doomed", "chat/completions", &chat_body("hi")).await,
        503,
        "upstream_unavailable",
    )
    .await;
    assert!(m.contains("error"), "{m}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let p = start(LocalConfig {
        max_body_bytes: 1024,
        ..instant()
    })
    .await;
    create(&p, workload("chat", "text2text")).await;
    let big = chat_body(&"word ".repeat(1000));
    expect_error(
        post(&p, "chat", "chat/completions", &big).await,
        413,
        "payload_too_large",
    )
    .await;
    let r = auth(client().post(workloads_url(&p, "demo")), p.sdk_token())
        .json(&json!({"name": "x".repeat(2000), "backend": "b", "model_name": "m"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let r = auth(
        client().post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("content-type", "application/json")
    .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )))
    .send()
    .await
    .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    // Under the limit is fine.
    assert_eq!(
        post(&p, "chat", "chat/completions", &chat_body("hi"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_body_far_over_the_default_limit_still_gets_413() {
    let p = chat_platform().await;
    let big = chat_body(&"word ".repeat(2 * 1024 * 1024)); // about 10 MiB
    for _ in 0..3 {
        expect_error(
            post(&p, "chat", "chat/completions", &big).await,
            413,
            "payload_too_large",
        )
        .await;
    }
}
