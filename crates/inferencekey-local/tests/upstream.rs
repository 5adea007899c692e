//! Upstream mode: a second emulator plays the OpenAI-compatible server.

mod common;

use std::collections::HashMap;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform};
use serde_json::{Value, json};

/// An upstream emulator with a chat and an embedding workload, and a front emulator
/// whose `proxied` workload forwards to the upstream's chat workload.
async fn pair() -> (LocalPlatform, LocalPlatform) {
    let upstream = start(instant()).await;
    create(&upstream, workload("chat", "text2text")).await;
    create(&upstream, workload("embed", "embedding")).await;
    let base = format!("{}/endpoint/demo/chat/v1", upstream.base_url());
    let front = start(LocalConfig {
        upstreams: HashMap::from([("proxied".to_owned(), base)]),
        upstream_api_keys: HashMap::from([
            ("proxied".to_owned(), upstream.api_key().to_owned()),
            ("embedder".to_owned(), upstream.api_key().to_owned()),
        ]),
        ..instant()
    })
    .await;
    // The front's task type does not limit an upstream workload.
    create(&front, workload("proxied", "text2image")).await;
    (upstream, front)
}

fn chat(stream: bool) -> Value {
    json!({"model": "proxied", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Explain the refund window"}]})
}

async fn post(p: &LocalPlatform, workload: &str, route: &str, body: &Value) -> reqwest::Response {
    auth(client().post(endpoint(p, workload, route)), p.api_key())
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_requests_are_forwarded() {
    let (upstream, front) = pair().await;
    let r = post(&front, "proxied", "chat/completions", &chat(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let via: Value = r.json().await.unwrap();
    let direct: Value = post(&upstream, "chat", "chat/completions", &chat(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        via["model"], "org/chat-model",
        "the upstream's model answers"
    );
    assert_eq!(via["choices"], direct["choices"]);
    // Upstream errors pass through with their status and body.
    let r = post(
        &front,
        "proxied",
        "chat/completions",
        &json!({"model": "x", "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "validation_error");
    // The front's own checks still come first.
    let r = auth(
        client().post(endpoint(&front, "proxied", "chat/completions")),
        front.sdk_token(),
    )
    .json(&chat(false))
    .send()
    .await
    .unwrap();
    expect_error(r, 403, "wrong_credential_type").await;
}

#[tokio::test]
async fn streams_pass_through() {
    let (upstream, front) = pair().await;
    let r = post(&front, "proxied", "chat/completions", &chat(true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let via = r.text().await.unwrap();
    let direct = post(&upstream, "chat", "chat/completions", &chat(true))
        .await
        .text()
        .await
        .unwrap();
    assert!(via.ends_with("data: [DONE]\n\n"));
    assert!(via.contains("\"choices\":[]"), "usage chunk passed through");
    // Identical apart from ids and timestamps.
    let strip = |s: &str| -> Vec<Value> {
        s.split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|f| *f != "[DONE]")
            .map(|f| {
                let mut v: Value = serde_json::from_str(f).unwrap();
                v["id"] = Value::Null;
                v["created"] = Value::Null;
                v
            })
            .collect()
    };
    assert_eq!(strip(&via), strip(&direct));
}

#[tokio::test]
async fn workload_config_names_an_upstream() {
    let (upstream, front) = pair().await;
    let mut w = workload("embedder", "embedding");
    w["config"] =
        json!({"upstream_url": format!("{}/endpoint/demo/embed/v1/", upstream.base_url())});
    create(&front, w).await;
    let body = json!({"model": "embedder", "input": ["a b", "c"]});
    let via: Value = post(&front, "embedder", "embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    let direct: Value = post(&upstream, "embed", "embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(via, direct);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let front = start(instant()).await;
    let mut w = workload("gone", "text2text");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    w["config"] = json!({"upstream_url": format!("http://127.0.0.1:{port}/v1")});
    create(&front, w).await;
    let r = post(&front, "gone", "chat/completions", &chat(false)).await;
    expect_error(r, 502, "upstream_unavailable").await;
}

/// A one-shot upstream that sends the first SSE frame, then waits for the test to say
/// it was received before finishing. A proxy that buffered the body would never let
/// the test see that first frame, and the test would time out instead of passing.
#[tokio::test]
async fn streams_are_not_buffered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head and the JSON body (small, sent at once by the proxy).
        while !request.windows(4).any(|w| w == b"\r\n\r\n") || !request.ends_with(b"}") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0);
            request.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let frame = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
        socket
            .write_all(frame("data: {\"first\":true}\n\n").as_bytes())
            .await
            .unwrap();
        seen_rx.await.unwrap();
        socket
            .write_all(frame("data: [DONE]\n\n").as_bytes())
            .await
            .unwrap();
        socket.write_all(b"0\r\n\r\n").await.unwrap();
        String::from_utf8(request).unwrap()
    });
    let front = start(instant()).await;
    let mut w = workload("live", "text2text");
    w["config"] = json!({"upstream_url": format!("http://127.0.0.1:{port}/v1")});
    create(&front, w).await;
    let mut r = post(&front, "live", "chat/completions", &chat(true)).await;
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), r.chunk())
        .await
        .expect("the first frame arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: {\"first\":true}\n\n");
    seen_tx.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"data: [DONE]\n\n");
    let request = server.await.unwrap();
    assert!(
        request.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        !request.to_lowercase().contains("authorization"),
        "the caller's key is never forwarded"
    );
}
