//! The readiness stream over real HTTP: snapshot, order, keepalives, terminal close,
//! restarts, deletion and shutdown.

mod common;

use std::time::Duration;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};
use serde_json::{Value, json};

/// Reads an SSE body frame by frame (`data:` events and `:` comments).
struct Frames {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl Frames {
    async fn open(p: &LocalPlatform, slug: &str) -> Frames {
        let r = auth(client().get(readiness_url(p, slug)), p.sdk_token())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        Frames {
            response: r,
            buffer: String::new(),
            ended: false,
        }
    }

    /// The next frame without its blank line, or `None` at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(frame);
            }
            if self.ended {
                assert!(self.buffer.is_empty(), "trailing bytes {:?}", self.buffer);
                return None;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("stream makes progress")
                .expect("stream reads cleanly");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => self.ended = true,
            }
        }
    }

    /// The next event, skipping keepalives.
    async fn event(&mut self) -> Option<Value> {
        loop {
            let frame = self.next().await?;
            if frame == ": keepalive" {
                continue;
            }
            let json = frame.strip_prefix("data: ").expect("a data line");
            assert!(!json.contains('\n'));
            return Some(serde_json::from_str(json).unwrap());
        }
    }

    async fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.event().await {
            out.push(e);
        }
        out
    }
}

fn phase_of(e: &Value) -> String {
    match e.get("step").and_then(Value::as_str) {
        Some(step) => format!("{}/{step}", e["phase"].as_str().unwrap()),
        None => e["phase"].as_str().unwrap().to_owned(),
    }
}

fn timed(ms: u64) -> LocalConfig {
    LocalConfig {
        readiness: ReadinessTimings::uniform(Duration::from_millis(ms)),
        ..LocalConfig::default()
    }
}

#[tokio::test]
async fn a_ready_workload_yields_one_ready_event_and_closes() {
    let p = start(instant()).await;
    create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    let events = s.rest().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["phase"], "ready");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("org/bot-model")
    );
    assert!(events[0]["elapsed_ms"].is_u64());
    assert!(events[0].get("step").is_none());
}

#[tokio::test]
async fn phases_come_in_order_with_steps() {
    let p = start(timed(40)).await;
    create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    let events = s.rest().await;
    let phases: Vec<String> = events.iter().map(phase_of).collect();
    assert_eq!(
        phases,
        [
            "scheduling",
            "provisioning",
            "bootstrapping/image_pull",
            "bootstrapping/weights_download",
            "bootstrapping/model_load",
            "bootstrapping/health_check",
            "ready"
        ]
    );
    let elapsed: Vec<u64> = events
        .iter()
        .map(|e| e["elapsed_ms"].as_u64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] <= w[1]), "{elapsed:?}");
    assert!(
        events
            .iter()
            .all(|e| !e["message"].as_str().unwrap().is_empty())
    );
    // A pinned workload skips provisioning.
    let mut pinned = workload("pinned", "text2text");
    pinned["worker_id"] = json!("wrk_1");
    create(&p, pinned).await;
    let phases: Vec<String> = Frames::open(&p, "pinned")
        .await
        .rest()
        .await
        .iter()
        .map(phase_of)
        .collect();
    assert_eq!(phases[..2], ["scheduling", "bootstrapping/image_pull"]);
    assert_eq!(phases.last().unwrap(), "ready");
}

#[tokio::test]
async fn keepalives_while_idle() {
    let p = start(LocalConfig {
        keepalive_interval: Duration::from_millis(30),
        ..timed(400)
    })
    .await;
    create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    assert!(
        s.next()
            .await
            .unwrap()
            .starts_with("data: {\"phase\":\"scheduling\"")
    );
    assert_eq!(s.next().await.unwrap(), ": keepalive");
    assert_eq!(s.next().await.unwrap(), ": keepalive");
}

#[tokio::test]
async fn failures_end_in_error() {
    let p = start(LocalConfig {
        failing_slugs: vec!["doomed".into()],
        ..timed(10)
    })
    .await;
    create(&p, workload("doomed", "text2text")).await;
    let mut oom = workload("oom", "text2text");
    oom["config"] = json!({"simulate_failure": "CUDA out of memory"});
    create(&p, oom).await;
    let events = Frames::open(&p, "doomed").await.rest().await;
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "error");
    assert!(last["message"].as_str().unwrap().contains("doomed"));
    let events = Frames::open(&p, "oom").await.rest().await;
    assert_eq!(events.last().unwrap()["phase"], "error");
    assert_eq!(events.last().unwrap()["message"], "CUDA out of memory");
    assert!(events.iter().all(|e| e["phase"] != "ready"));
    // Reconnecting after the failure yields the error snapshot alone.
    let again = Frames::open(&p, "oom").await.rest().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["phase"], "error");
}

#[tokio::test]
async fn delete_sends_error_deleted_and_closes() {
    let p = start(timed(2000)).await;
    let w = create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    assert_eq!(s.event().await.unwrap()["phase"], "scheduling");
    let r = auth(
        client().delete(workload_url(&p, w["id"].as_str().unwrap())),
        p.sdk_token(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let e = s.event().await.unwrap();
    assert_eq!(e["phase"], "error");
    assert_eq!(e["message"], "deleted");
    assert!(s.event().await.is_none());
}

#[tokio::test]
async fn a_patch_restarts_open_streams_at_scheduling() {
    let p = start(timed(150)).await;
    create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    assert_eq!(phase_of(&s.event().await.unwrap()), "scheduling");
    assert_eq!(phase_of(&s.event().await.unwrap()), "provisioning");
    let r = auth(client().patch(workload_url(&p, "bot")), p.sdk_token())
        .json(&json!({"model_name": "org/new-model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rest: Vec<String> = s.rest().await.iter().map(phase_of).collect();
    // The old run may have moved on once more before the PATCH landed; after it, the
    // new run is followed from its start.
    let restart = rest
        .iter()
        .position(|p| p == "scheduling")
        .expect("the restart is seen");
    assert!(restart <= 1, "{rest:?}");
    assert_eq!(rest[restart..].len(), 7, "{rest:?}");
    assert_eq!(rest.last().unwrap(), "ready");
}

#[tokio::test]
async fn shutdown_closes_open_streams() {
    let p = start(timed(5000)).await;
    create(&p, workload("bot", "text2text")).await;
    let mut s = Frames::open(&p, "bot").await;
    assert_eq!(s.event().await.unwrap()["phase"], "scheduling");
    tokio::time::timeout(Duration::from_secs(5), p.shutdown())
        .await
        .expect("shutdown returns");
    // The stream ends without a terminal event: an interruption.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = s.response.chunk().await {
            out.extend_from_slice(&chunk);
        }
        out
    })
    .await
    .expect("the stream ends");
    assert!(!String::from_utf8_lossy(&rest).contains("\"ready\""));
}

#[tokio::test]
async fn no_phase_is_skipped_however_short() {
    // Everything after scheduling happens at once; a stream still gets every step.
    let p = start(LocalConfig {
        readiness: ReadinessTimings {
            scheduling: Duration::from_millis(500),
            ..ReadinessTimings::instant()
        },
        ..LocalConfig::default()
    })
    .await;
    create(&p, workload("bot", "text2text")).await;
    let phases: Vec<String> = Frames::open(&p, "bot")
        .await
        .rest()
        .await
        .iter()
        .map(phase_of)
        .collect();
    assert_eq!(phases.len(), 7, "{phases:?}");
    assert_eq!(phases[0], "scheduling");
    assert_eq!(phases[6], "ready");
}
