//! Streaming chat rules (PROTOCOL.md §4.1) over real HTTP, against a scripted server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use inferencekey_core::{ClientOptions, ErrorKind, TextRequest};

fn quick_idle() -> ClientOptions {
    ClientOptions {
        stream_idle_timeout: Duration::from_millis(500),
        ..options()
    }
}

async fn open(steps: Vec<Step>, opts: ClientOptions) -> (Server, inferencekey_core::TextStream) {
    let server = serve(move |_, _| steps.clone()).await;
    let stream = data(&server.url(), opts)
        .endpoint("w", None)
        .unwrap()
        .generate_text_stream(TextRequest::prompt("hi"))
        .await
        .unwrap();
    (server, stream)
}

#[tokio::test]
async fn done_ends_the_stream_and_the_body_is_streamed() {
    let (server, mut s) = open(
        vec![
            sse_head(),
            bytes("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n"),
            bytes(&chunk_event("Hello")),
            bytes(&chunk_event(", world")),
            bytes("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"),
            bytes("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n"),
            bytes("data: [DONE]\n\n"),
            // Anything after [DONE] is never read.
            bytes(&chunk_event("ignored")),
        ],
        options(),
    )
    .await;
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        text.push_str(&c.text);
        finish = finish.or(c.finish_reason);
        usage = usage.or(c.usage);
    }
    assert_eq!(text, "Hello, world");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(usage.unwrap().total_tokens, 5);
    assert!(s.next().await.is_none());
    let sent = &server.requests()[0];
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert_eq!(sent.json()["stream"], serde_json::json!(true));
}

#[tokio::test]
async fn eof_before_done_is_a_truncated_stream_error() {
    let (server, mut s) = open(
        vec![
            sse_head(),
            bytes(&chunk_event("abc")),
            bytes(&chunk_event("de")),
        ],
        options(),
    )
    .await;
    assert_eq!(s.next().await.unwrap().unwrap().text, "abc");
    assert_eq!(s.next().await.unwrap().unwrap().text, "de");
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Api, Some("stream_truncated"))
    );
    assert!(
        e.message().contains("2 chunks") && e.message().contains("5 characters"),
        "{e}"
    );
    assert!(s.next().await.is_none());
    assert_eq!(
        server.count(),
        1,
        "a stream that delivered events is never retried"
    );
}

#[tokio::test]
async fn error_event_raises_with_its_code() {
    let (_server, mut s) = open(
        vec![
            sse_head(),
            bytes(&chunk_event("x")),
            bytes("data: {\"error\":{\"code\":\"upstream_error\",\"message\":\"runtime crashed\"}}\n\n"),
        ],
        options(),
    )
    .await;
    assert!(s.next().await.unwrap().is_ok());
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some("upstream_error"));
    assert!(e.message().contains("runtime crashed"));
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn invalid_json_event_raises() {
    let (_server, mut s) = open(
        vec![
            sse_head(),
            bytes("data: {\"choices\": [\n\n"),
            bytes("data: [DONE]\n\n"),
        ],
        options(),
    )
    .await;
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some("malformed_response"));
}

#[tokio::test]
async fn keepalives_do_not_reset_the_idle_timeout() {
    let mut steps = vec![sse_head(), bytes(&chunk_event("a"))];
    for _ in 0..40 {
        steps.push(Step::Sleep(Duration::from_millis(100)));
        steps.push(bytes(": keepalive\n\n"));
    }
    let (_server, mut s) = open(steps, quick_idle()).await;
    let started = Instant::now();
    assert!(s.next().await.unwrap().is_ok());
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // Keepalives arrive every 100 ms for 4 s; only ignoring them gives a timeout near 0.5 s.
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_drip_of_bytes_does_not_reset_the_idle_timeout() {
    let event = chunk_event("slow");
    let mut steps = vec![sse_head()];
    for b in event.as_bytes() {
        steps.push(Step::Write(vec![*b]));
        steps.push(Step::Sleep(Duration::from_millis(100)));
    }
    let (_server, mut s) = open(steps, quick_idle()).await;
    let started = Instant::now();
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the drip lasts ~10 s"
    );
}

#[tokio::test]
async fn next_batch_returns_every_decoded_chunk() {
    let burst: String = (0..5).map(|i| chunk_event(&format!("t{i}"))).collect();
    let (_server, mut s) = open(
        vec![
            sse_head(),
            bytes(&burst),
            Step::Sleep(Duration::from_millis(300)),
            bytes(&chunk_event("late")),
            bytes("data: [DONE]\n\n"),
        ],
        options(),
    )
    .await;
    let batch = s.next_batch(64).await.unwrap();
    let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["t0", "t1", "t2", "t3", "t4"]);
    let batch = s.next_batch(3).await.unwrap();
    assert_eq!(batch[0].text, "late");
    assert!(s.next_batch(3).await.unwrap().is_empty());
}

#[tokio::test]
async fn next_batch_keeps_a_trailing_error_for_the_next_call() {
    let (_server, mut s) = open(
        vec![
            sse_head(),
            bytes(&format!("{}{}", chunk_event("a"), chunk_event("b"))),
        ],
        options(),
    )
    .await;
    let batch = s.next_batch(10).await.unwrap();
    assert_eq!(batch.len(), 2);
    let e = s.next_batch(10).await.unwrap_err();
    assert_eq!(e.code(), Some("stream_truncated"));
}

#[tokio::test]
async fn close_and_drop_release_the_connection() {
    let steps = vec![sse_head(), bytes(&chunk_event("a")), Step::Hold];
    let (server, mut s) = open(steps.clone(), options()).await;
    assert!(s.next().await.unwrap().is_ok());
    s.close();
    assert!(s.next().await.is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.released() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.released(), 1, "close must drop the connection");

    let (server, mut s) = open(steps, options()).await;
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.released() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.released(),
        1,
        "dropping the stream must drop the connection"
    );
}

/// Regression: closing a stream while another task waited on a read left that read
/// (and the connection) hanging until the idle timeout.
#[tokio::test]
async fn a_closer_interrupts_a_waiting_read_from_another_task() {
    let steps = vec![sse_head(), bytes(&chunk_event("a")), Step::Hold];
    let (server, mut s) = open(steps, options()).await;
    assert!(s.next().await.unwrap().is_ok());
    let closer = s.closer();
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let next = s.next().await.map(|r| r.map(|c| c.text));
        (next, started.elapsed(), s.next().await.is_none())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    closer.close();
    let (next, waited, then_none) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the waiting read returns")
        .unwrap();
    assert!(next.is_none(), "{next:?}");
    assert!(then_none);
    assert!(waited < Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.released() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.released(), 1, "the closer must drop the connection");
    closer.close();
}

#[tokio::test]
async fn opening_is_retried_but_errors_surface_at_open() {
    let server = serve(|i, _| match i {
        0 => vec![json(
            503,
            r#"{"error":{"code":"upstream_unavailable","message":"not ready"}}"#,
        )],
        1 => vec![
            sse_head(),
            bytes(&chunk_event("ok")),
            bytes("data: [DONE]\n\n"),
        ],
        _ => vec![json(
            403,
            r#"{"error":{"code":"scope_insufficient","message":"no grant"}}"#,
        )],
    })
    .await;
    let ep = data(&server.url(), options()).endpoint("w", None).unwrap();
    let mut s = ep
        .generate_text_stream(TextRequest::prompt("hi"))
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().text, "ok");
    let e = ep
        .generate_text_stream(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Permission, Some("scope_insufficient"))
    );
}

#[tokio::test]
async fn stream_is_usable_from_a_spawned_task_as_a_futures_stream() {
    let (_server, s) = open(
        vec![
            sse_head(),
            bytes(&chunk_event("a")),
            bytes(&chunk_event("b")),
            bytes("data: [DONE]\n\n"),
        ],
        options(),
    )
    .await;
    let texts = tokio::spawn(async move { s.map(|c| c.unwrap().text).collect::<Vec<_>>().await })
        .await
        .unwrap();
    assert_eq!(texts, ["a", "b"]);
}

#[tokio::test]
async fn a_slow_consumer_is_not_timed_out_by_content_that_arrived_in_time() {
    let (_server, mut s) = open(
        vec![
            sse_head(),
            bytes(&chunk_event("a")),
            Step::Sleep(Duration::from_millis(100)),
            bytes(&chunk_event("b")),
            bytes("data: [DONE]\n\n"),
        ],
        quick_idle(),
    )
    .await;
    assert_eq!(s.next().await.unwrap().unwrap().text, "a");
    // The consumer pauses for longer than the idle timeout; "b" is already waiting.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.next().await.unwrap().unwrap().text, "b");
    assert!(s.next().await.is_none());
}
