//! The `x-ik-fault` test layer: every spec against a real connection.

mod common;

use std::time::Duration;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform};
use reqwest::Client;
use serde_json::{Value, json};

async fn faulty() -> LocalPlatform {
    let p = start(LocalConfig {
        enable_faults: true,
        ..instant()
    })
    .await;
    create(&p, workload("chat", "text2text")).await;
    p
}

async fn list_with(p: &LocalPlatform, spec: &str) -> reqwest::Result<reqwest::Response> {
    auth(client().get(workloads_url(p, "demo")), p.sdk_token())
        .header("x-ik-fault", spec)
        .send()
        .await
}

fn chat(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": "tell me about refunds"}]})
}

#[tokio::test]
async fn faults_are_off_by_default() {
    let p = start(instant()).await;
    let r = list_with(&p, "status=500").await.unwrap();
    assert_eq!(r.status(), 200);
    // Neither do the test-only routes exist.
    for route in ["/_faults/hits/k", "/_faults/connections"] {
        let r = client()
            .get(format!("{}{route}", p.base_url()))
            .send()
            .await
            .unwrap();
        expect_error(r, 404, "not_found").await;
    }
}

async fn get_json(p: &LocalPlatform, route: &str) -> Value {
    let r = client()
        .get(format!("{}{route}", p.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{route}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn hits_count_requests_per_key_and_method() {
    let p = faulty().await;
    assert_eq!(get_json(&p, "/_faults/hits/k1").await, json!({"total": 0}));
    for _ in 0..2 {
        let r = auth(client().get(workloads_url(&p, "demo")), p.sdk_token())
            .header("x-ik-fault-key", "k1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = auth(
        client().post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("x-ik-fault", "status=503")
    .header("x-ik-fault-key", "k1")
    .json(&chat(false))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        get_json(&p, "/_faults/hits/k1").await,
        json!({"total": 3, "GET": 2, "POST": 1})
    );
    assert_eq!(get_json(&p, "/_faults/hits/k2").await, json!({"total": 0}));
}

#[tokio::test]
async fn method_limits_a_fault_to_one_method() {
    let p = faulty().await;
    let r = list_with(&p, "status=500;method=POST").await.unwrap();
    assert_eq!(r.status(), 200, "a GET passes through");
    let r = auth(client().post(workloads_url(&p, "demo")), p.sdk_token())
        .header("x-ik-fault", "status=500;method=POST")
        .json(&workload("other", "text2text"))
        .send()
        .await
        .unwrap();
    expect_error(r, 500, "internal").await;
    expect_error(
        list_with(&p, "reset;method=NOT A METHOD").await.unwrap(),
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn connections_counts_what_the_server_holds_open() {
    let p = faulty().await;
    // A fresh client per question: only the asking connection is open.
    let open = |p: &LocalPlatform| {
        let url = format!("{}/_faults/connections", p.base_url());
        async move {
            let r = Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["open"].as_u64().unwrap()
        }
    };
    assert_eq!(open(&p).await, 1);
    let held = auth(client().get(readiness_url(&p, "chat")), p.sdk_token())
        .header("x-ik-fault", "stall")
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(open(&p).await, 2);
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open(&p).await != 1 {
        assert!(std::time::Instant::now() < deadline, "still held open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn drop_done_ends_cleanly_without_the_done_event() {
    let p = faulty().await;
    let send = |fault: &'static str| {
        auth(
            client().post(endpoint(&p, "chat", "chat/completions")),
            p.api_key(),
        )
        .header("x-ik-fault", fault)
        .json(&chat(true))
        .send()
    };
    let normal = send("flap=0").await.unwrap().text().await.unwrap();
    assert!(normal.ends_with("data: [DONE]\n\n"));
    let r = send("drop_done").await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("a clean end of the body");
    assert!(!text.contains("[DONE]"));
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    assert_eq!(
        text.matches("\n\n").count() + 1,
        normal.matches("\n\n").count()
    );
}

#[tokio::test]
async fn hold_after_done_keeps_the_body_open() {
    let p = faulty().await;
    let mut r = auth(
        client().post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("x-ik-fault", "hold_after_done")
    .json(&chat(true))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    while !text.ends_with("data: [DONE]\n\n") {
        let c = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("the real stream arrives")
            .unwrap()
            .expect("no end before [DONE]");
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    // After [DONE]: neither more bytes nor an end.
    let more = tokio::time::timeout(Duration::from_millis(300), r.chunk()).await;
    assert!(more.is_err(), "the body should stay open: {more:?}");
}

#[tokio::test]
async fn status_faults_use_the_envelope() {
    let p = faulty().await;
    let r = list_with(&p, "status=429;retry_after=1").await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, 429, "rate_limited").await;
    for (status, code) in [
        (500, "internal"),
        (502, "upstream_unavailable"),
        (503, "upstream_unavailable"),
        (504, "upstream_unavailable"),
    ] {
        let r = list_with(&p, &format!("status={status}")).await.unwrap();
        assert!(r.headers().get("retry-after").is_none());
        expect_error(r, status, code).await;
    }
    expect_error(list_with(&p, "explode").await.unwrap(), 400, "bad_request").await;
}

#[tokio::test]
async fn flap_fails_the_first_n_per_key() {
    let p = faulty().await;
    let send = |key: &'static str| {
        auth(client().get(workloads_url(&p, "demo")), p.sdk_token())
            .header("x-ik-fault", "flap=2")
            .header("x-ik-fault-key", key)
            .send()
    };
    expect_error(send("a").await.unwrap(), 503, "upstream_unavailable").await;
    expect_error(send("a").await.unwrap(), 503, "upstream_unavailable").await;
    expect_error(send("b").await.unwrap(), 503, "upstream_unavailable").await;
    assert_eq!(send("a").await.unwrap().status(), 200);
    assert_eq!(send("a").await.unwrap().status(), 200);
    expect_error(send("b").await.unwrap(), 503, "upstream_unavailable").await;
    assert_eq!(send("b").await.unwrap().status(), 200);
}

#[tokio::test]
async fn reset_is_a_connection_error() {
    let p = faulty().await;
    let err = list_with(&p, "reset").await.expect_err("no response");
    assert!(!err.is_status());
    // The server itself is fine afterwards.
    assert_eq!(list_with(&p, "flap=0").await.unwrap().status(), 200);
}

#[tokio::test]
async fn cut_after_sends_a_prefix_then_drops() {
    let p = faulty().await;
    let mut r = list_with(&p, "cut_after=10").await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let err = loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("body ended cleanly after {} bytes", got.len()),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err}"
    );
    assert_eq!(got, b"[{\"id\":\"wl");

    let mut r = auth(
        client().post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("x-ik-fault", "cut_after=30")
    .json(&chat(true))
    .send()
    .await
    .unwrap();
    let mut got = Vec::new();
    while let Ok(Some(c)) = r.chunk().await {
        got.extend_from_slice(&c);
    }
    assert_eq!(got.len(), 30);
    assert!(got.starts_with(b"data: {\"id\":\"chatcmpl-"));
}

#[tokio::test]
async fn stall_sends_headers_then_nothing() {
    let p = faulty().await;
    let mut r = auth(client().get(readiness_url(&p, "chat")), p.sdk_token())
        .header("x-ik-fault", "stall")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), r.chunk())
            .await
            .is_err(),
        "a stalled stream sends nothing"
    );
    // Shutdown ends it.
    p.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("ends");
    assert!(matches!(end, Ok(None) | Err(_)));
}

#[tokio::test]
async fn keepalive_only_never_sends_an_event() {
    let p = faulty().await;
    let mut r = auth(client().get(readiness_url(&p, "chat")), p.sdk_token())
        .header("x-ik-fault", "keepalive_only")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    while text.matches(": keepalive\n\n").count() < 3 {
        let c = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert_eq!(text.replace(": keepalive\n\n", ""), "");
}

#[tokio::test]
async fn drip_delivers_the_real_body_byte_by_byte() {
    let p = faulty().await;
    let normal = list_with(&p, "flap=0")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut r = list_with(&p, "drip_ms=1").await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(c) = r.chunk().await.unwrap() {
        got.extend_from_slice(&c);
        chunks += 1;
    }
    assert_eq!(got, normal);
    assert!(chunks > 1);
}

#[tokio::test]
async fn huge_invalid_json_and_html502() {
    let p = faulty().await;
    let r = list_with(&p, "huge=200000").await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 200_000);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    let r = list_with(&p, "invalid_json").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());

    let r = list_with(&p, "html502").await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert!(r.text().await.unwrap().starts_with("<html>"));
}

#[tokio::test]
async fn error_event_ends_a_chat_stream_without_done() {
    let p = faulty().await;
    let r = auth(
        client().post(endpoint(&p, "chat", "chat/completions")),
        p.api_key(),
    )
    .header("x-ik-fault", "error_event")
    .json(&chat(true))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let frames: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert_eq!(frames.len(), 3);
    assert!(frames[0].contains("\"role\":\"assistant\""));
    assert!(frames[1].contains("\"content\":"));
    let error: Value = serde_json::from_str(frames[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_error");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn lost_response_creates_but_never_answers() {
    let p = faulty().await;
    let r = auth(client().post(workloads_url(&p, "demo")), p.sdk_token())
        .header("x-ik-fault", "lost_response")
        .json(&workload("ghost", "text2text"))
        .send()
        .await;
    assert!(r.is_err(), "the response is lost");
    assert!(
        p.workloads().iter().any(|w| w.slug == "ghost"),
        "the create happened"
    );
}

#[tokio::test]
async fn delay_holds_the_request_then_answers() {
    let p = faulty().await;
    let slow = auth(
        reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap()
            .get(workloads_url(&p, "demo")),
        p.sdk_token(),
    )
    .header("x-ik-fault", "delay_ms=2000")
    .send()
    .await
    .expect_err("a client timeout shorter than the delay fires");
    assert!(slow.is_timeout());
    let r = list_with(&p, "delay_ms=10").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
}
