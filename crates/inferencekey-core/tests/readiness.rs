//! Readiness following (PROTOCOL.md §3.5) over real HTTP, against a scripted server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use inferencekey_core::{ErrorKind, Phase};

async fn wait(server: &Server, timeout: Duration) -> (inferencekey_core::Result<()>, Vec<String>) {
    let mut phases = Vec::new();
    let r = mgmt(&server.url())
        .wait_until_ready("triage-bot", None, timeout, |e| {
            phases.push(e.phase.to_string())
        })
        .await;
    (r, phases)
}

#[tokio::test]
async fn reconnects_after_eof_before_a_terminal_event() {
    let server = serve(|i, _| match i {
        0 => vec![sse_head(), bytes(&ready_event("scheduling", "picking"))],
        _ => vec![
            sse_head(),
            bytes(&ready_event("bootstrapping", "loading")),
            bytes(&ready_event("ready", "serving")),
        ],
    })
    .await;
    let (r, phases) = wait(&server, Duration::from_secs(10)).await;
    r.unwrap();
    assert_eq!(phases, ["scheduling", "bootstrapping", "ready"]);
    assert_eq!(server.count(), 2);
    assert_eq!(
        server.requests()[0].path,
        "/api/projects/orbit/workloads/triage-bot/readiness-events"
    );
    assert_eq!(
        server.requests()[0].header("accept"),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn reconnects_after_503_and_accepts_unknown_phases() {
    let server = serve(|i, _| match i {
        0 => vec![json(503, r#"{"error":"upstream_unavailable"}"#)],
        _ => vec![
            sse_head(),
            bytes(": keepalive\n\n"),
            bytes(&ready_event("warming", "new phase")),
            bytes(&ready_event("ready", "serving")),
        ],
    })
    .await;
    let (r, phases) = wait(&server, Duration::from_secs(10)).await;
    r.unwrap();
    assert_eq!(phases, ["warming", "ready"]);
}

#[tokio::test]
async fn stops_on_404_without_reconnecting() {
    let server = serve(|_, _| {
        vec![json(
            404,
            r#"{"error":{"code":"not_found","message":"no workload"}}"#,
        )]
    })
    .await;
    let (r, _) = wait(&server, Duration::from_secs(10)).await;
    let e = r.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(404), Some("not_found")));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn error_event_fails_with_the_server_message() {
    let server = serve(|_, _| {
        vec![
            sse_head(),
            bytes(&ready_event("bootstrapping", "x")),
            bytes(&ready_event("error", "image pull failed")),
        ]
    })
    .await;
    let (r, phases) = wait(&server, Duration::from_secs(10)).await;
    let e = r.unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Api, Some("workload_error"))
    );
    assert!(e.message().contains("image pull failed"));
    assert_eq!(phases, ["bootstrapping"]);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn undecodable_event_stops_the_follower() {
    let server = serve(|_, _| vec![sse_head(), bytes("data: {\"phase\":\"ready\"}\n\n")]).await;
    let (r, _) = wait(&server, Duration::from_secs(10)).await;
    assert_eq!(r.unwrap_err().code(), Some("malformed_response"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn deadline_holds_while_a_read_is_blocked() {
    let server = serve(|_, _| {
        vec![
            sse_head(),
            bytes(&ready_event("scheduling", "x")),
            Step::Hold,
        ]
    })
    .await;
    let started = Instant::now();
    let (r, phases) = wait(&server, Duration::from_millis(800)).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(phases, ["scheduling"]);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn deadline_holds_while_a_reconnect_is_sleeping() {
    let server = serve(|_, _| vec![json(503, r#"{"error":"upstream_unavailable"}"#)]).await;
    let started = Instant::now();
    let (r, _) = wait(&server, Duration::from_millis(1500)).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
    // Backoff 1 s then 2 s: the deadline cuts the second sleep.
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(server.count() >= 1 && server.count() <= 2);
}

#[tokio::test]
async fn follower_yields_ready_then_ends() {
    let server = serve(|_, _| vec![sse_head(), bytes(&ready_event("ready", "serving"))]).await;
    let mut f = mgmt(&server.url()).readiness("triage-bot", None).unwrap();
    let ev = f.next().await.unwrap().unwrap();
    assert_eq!(ev.phase, Phase::Ready);
    assert!(f.next().await.is_none());
}

#[tokio::test]
async fn backoff_resets_after_every_event() {
    // Four interruptions, each after an event: with the reset every wait is about 1 s
    // (at most 4.8 s in all); without it they would grow to 1, 2, 4 and 5 s (9.6 s or more).
    let server = serve(|i, _| match i {
        0..=3 => vec![sse_head(), bytes(&ready_event("bootstrapping", "step"))],
        _ => vec![sse_head(), bytes(&ready_event("ready", "serving"))],
    })
    .await;
    let started = Instant::now();
    let (r, phases) = wait(&server, Duration::from_secs(30)).await;
    r.unwrap();
    assert_eq!(phases.len(), 5);
    assert_eq!(server.count(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
