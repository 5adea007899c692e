//! End to end against the local platform emulator: ensure and its drift policies,
//! delete, readiness, and the data plane, over real HTTP.

mod common;

use std::time::Duration;

use inferencekey_core::wire::ChatMessage;
use inferencekey_core::{
    ClientOptions, DataClient, EnsureAction, ErrorKind, ManagementClient, OnDrift, Phase,
    TextRequest, WorkloadSpec,
};
use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};
use serde_json::json;

async fn platform(readiness: ReadinessTimings) -> LocalPlatform {
    LocalPlatform::start(LocalConfig {
        project: "orbit".into(),
        readiness,
        failing_slugs: vec!["doomed".into()],
        ..LocalConfig::default()
    })
    .await
    .unwrap()
}

fn mgmt(p: &LocalPlatform) -> ManagementClient {
    ManagementClient::builder()
        .base_url(p.base_url())
        .project(p.project())
        .sdk_token(p.sdk_token())
        .build()
        .unwrap()
}

fn data(p: &LocalPlatform) -> DataClient {
    DataClient::builder()
        .base_url(p.base_url())
        .project(p.project())
        .api_key(p.api_key())
        .build()
        .unwrap()
}

fn chat_spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "Triage bot".into(),
        slug: "Triage Bot".into(),
        model: "Qwen/Qwen2.5-0.5B-Instruct".into(),
        backend: "vllm".into(),
        command: Some("vllm serve Qwen/Qwen2.5-0.5B-Instruct".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn ensure_created_unchanged_updated() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    let r = m
        .ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(r.action, EnsureAction::Created);
    assert_eq!(
        (r.project_slug.as_str(), r.workload_slug.as_str()),
        ("orbit", "triage-bot")
    );
    assert!(r.plan.is_empty());

    let r = m
        .ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(r.action, EnsureAction::Unchanged);

    let changed = WorkloadSpec {
        description: Some("first line".into()),
        model: "Qwen/Qwen2.5-1.5B-Instruct".into(),
        ..chat_spec()
    };
    let r = m.ensure(&changed, OnDrift::Reconcile, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::Updated);
    let fields: Vec<&str> = r.plan.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["model_name", "description"]);
    assert_eq!(r.plan[0].live, json!("Qwen/Qwen2.5-0.5B-Instruct"));
    let live = &m.list(None).await.unwrap()[0];
    assert_eq!(live.model_name, "Qwen/Qwen2.5-1.5B-Instruct");
    assert_eq!(live.description.as_deref(), Some("first line"));
    assert_eq!(
        m.ensure(&changed, OnDrift::Reconcile, None)
            .await
            .unwrap()
            .action,
        EnsureAction::Unchanged
    );
    assert_eq!(p.workloads().len(), 1);
}

#[tokio::test]
async fn drift_policies_fail_dry_run_warn_ignore() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    // dry_run on an absent workload sends nothing.
    let r = m.ensure(&chat_spec(), OnDrift::DryRun, None).await.unwrap();
    assert_eq!(
        (r.action, r.workload_slug.as_str()),
        (EnsureAction::Planned, "triage-bot")
    );
    assert!(p.workloads().is_empty());
    m.ensure(&chat_spec(), OnDrift::Fail, None).await.unwrap();
    let drifted = WorkloadSpec {
        name: "Renamed".into(),
        ..chat_spec()
    };

    let e = m.ensure(&drifted, OnDrift::Fail, None).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Validation, Some("drift_detected"))
    );
    assert!(e.message().contains("name"));

    let r = m.ensure(&drifted, OnDrift::DryRun, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::Planned);
    assert_eq!(r.plan[0].desired, json!("Renamed"));

    let r = m.ensure(&drifted, OnDrift::Ignore, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::DriftIgnored);
    let r = m.ensure(&drifted, OnDrift::Warn, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::DriftIgnored);
    assert_eq!(r.plan.len(), 1);
    assert_eq!(
        m.list(None).await.unwrap()[0].name,
        "Triage bot",
        "nothing was patched"
    );
}

#[tokio::test]
async fn task_type_is_not_patchable() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    m.ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    let s = WorkloadSpec {
        task_type: Some("embedding".into()),
        name: "New name".into(),
        ..chat_spec()
    };
    let e = m.ensure(&s, OnDrift::Reconcile, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert!(e.message().contains("task_type"));
    assert_eq!(
        m.list(None).await.unwrap()[0].name,
        "Triage bot",
        "nothing sent, not even the name"
    );
    let r = m.ensure(&s, OnDrift::DryRun, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::Planned);
    let last = r.plan.last().unwrap();
    assert_eq!((last.field.as_str(), last.patchable), ("task_type", false));
    assert_eq!(
        m.ensure(&s, OnDrift::Ignore, None).await.unwrap().action,
        EnsureAction::DriftIgnored
    );
    assert_eq!(
        m.ensure(&s, OnDrift::Fail, None).await.unwrap_err().kind(),
        ErrorKind::Validation
    );
}

#[tokio::test]
async fn config_is_compared_over_declared_keys_only() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    let full = WorkloadSpec {
        config: Some(
            json!({"max_model_len": 8192, "dtype": "auto"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..chat_spec()
    };
    m.ensure(&full, OnDrift::Reconcile, None).await.unwrap();
    let partial = WorkloadSpec {
        config: Some(json!({"max_model_len": 8192}).as_object().unwrap().clone()),
        ..chat_spec()
    };
    assert_eq!(
        m.ensure(&partial, OnDrift::Reconcile, None)
            .await
            .unwrap()
            .action,
        EnsureAction::Unchanged
    );
    let changed = WorkloadSpec {
        config: Some(json!({"max_model_len": 4096}).as_object().unwrap().clone()),
        ..chat_spec()
    };
    assert_eq!(
        m.ensure(&changed, OnDrift::Reconcile, None)
            .await
            .unwrap()
            .action,
        EnsureAction::Updated
    );
    let config = m.list(None).await.unwrap()[0].config.clone().unwrap();
    assert_eq!(config["max_model_len"], json!(4096));
    assert_eq!(
        config["dtype"],
        json!("auto"),
        "undeclared keys survive the PATCH"
    );
}

#[tokio::test]
async fn delete_true_then_false() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    m.ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert!(m.delete("Triage Bot", None).await.unwrap());
    assert!(!m.delete("triage-bot", None).await.unwrap());
    assert!(p.workloads().is_empty());
}

#[tokio::test]
async fn wait_until_ready_reports_phases_in_order() {
    let p = platform(ReadinessTimings::uniform(Duration::from_millis(50))).await;
    let m = mgmt(&p);
    let r = m
        .ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    let mut phases = Vec::new();
    m.wait_until_ready(&r.workload_slug, None, Duration::from_secs(20), |e| {
        phases.push(e.phase.clone())
    })
    .await
    .unwrap();
    assert_eq!(phases.first(), Some(&Phase::Scheduling));
    assert_eq!(phases.last(), Some(&Phase::Ready));
    // Already ready, and addressed by a non-canonical slug: a single snapshot event.
    let mut again = Vec::new();
    m.wait_until_ready("Triage Bot", None, Duration::from_secs(5), |e| {
        again.push(e.phase.clone())
    })
    .await
    .unwrap();
    assert_eq!(again, [Phase::Ready]);
}

#[tokio::test]
async fn wait_until_ready_fails_on_the_error_phase() {
    let p = platform(ReadinessTimings::uniform(Duration::from_millis(20))).await;
    let m = mgmt(&p);
    let s = WorkloadSpec {
        slug: "doomed".into(),
        ..chat_spec()
    };
    m.ensure(&s, OnDrift::Reconcile, None).await.unwrap();
    let e = m
        .wait_until_ready("doomed", None, Duration::from_secs(20), |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Api, Some("workload_error"))
    );
    let e = m
        .wait_until_ready("absent", None, Duration::from_secs(5), |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn chat_plain_and_streamed() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    let r = m
        .ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    m.wait_until_ready(&r.workload_slug, None, Duration::from_secs(10), |_| {})
        .await
        .unwrap();
    let ep = data(&p).endpoint(&r.workload_slug, None).unwrap();
    let res = ep
        .generate_text(TextRequest {
            messages: Some(vec![
                ChatMessage::new("system", "Answer in one line."),
                ChatMessage::new("user", "Summarise ticket 4411"),
            ]),
            max_tokens: Some(32),
            temperature: Some(0.3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!res.text.is_empty());
    assert!(res.finish_reason.is_some());
    let raw: serde_json::Value = serde_json::from_slice(&res.raw).unwrap();
    assert_eq!(raw["object"], json!("chat.completion"));

    let mut req = TextRequest::prompt("Summarise ticket 4411");
    req.extra
        .insert("stream_options".into(), json!({"include_usage": true}));
    let mut s = ep.generate_text_stream(req).await.unwrap();
    let mut text = String::new();
    let mut usage = None;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        text.push_str(&c.text);
        usage = usage.or(c.usage);
    }
    assert!(!text.is_empty());
    assert!(usage.is_some(), "the usage chunk is yielded as metadata");
}

#[tokio::test]
async fn embeddings_and_rerank() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    let embed = WorkloadSpec {
        name: "Embed".into(),
        slug: "triage-embed".into(),
        model: "BAAI/bge-m3".into(),
        backend: "vllm".into(),
        task_type: Some("embedding".into()),
        ..Default::default()
    };
    let rerank = WorkloadSpec {
        name: "Rerank".into(),
        slug: "triage-rerank".into(),
        model: "Qwen3-Reranker-0.6B".into(),
        backend: "llamacpp".into(),
        task_type: Some("reranker".into()),
        ..Default::default()
    };
    m.ensure(&embed, OnDrift::Reconcile, None).await.unwrap();
    m.ensure(&rerank, OnDrift::Reconcile, None).await.unwrap();
    let d = data(&p);
    let inputs: Vec<String> = ["refund policy", "2FA reset", "refund policy"]
        .map(String::from)
        .to_vec();
    let e = d
        .endpoint("triage-embed", None)
        .unwrap()
        .embed(inputs)
        .await
        .unwrap();
    assert_eq!((e.count, e.dim), (3, 384));
    assert_eq!(e.values.len(), 3 * 384);
    assert_eq!(
        e.row(0),
        e.row(2),
        "same input, same vector, in input order"
    );
    assert_ne!(e.row(0), e.row(1));

    let docs: Vec<String> = [
        "Keys are rotated from Settings.",
        "Our office is in Lyon.",
        "Rotation revokes the old key.",
    ]
    .map(String::from)
    .to_vec();
    let r = d
        .endpoint("triage-rerank", None)
        .unwrap()
        .rerank("how do I rotate a key", docs, Some(2))
        .await
        .unwrap();
    assert_eq!(r.results.len(), 2);
    assert!(r.results[0].score >= r.results[1].score);
}

#[tokio::test]
async fn server_side_permission_errors_keep_their_code() {
    let p = platform(ReadinessTimings::instant()).await;
    let m = mgmt(&p);
    m.ensure(&chat_spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    let key = p.mint_api_key(&["orbit/other-workload"]);
    let ep = data(&p).endpoint("triage-bot", Some(&key)).unwrap();
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Permission, Some("scope_insufficient"))
    );
    assert!(e.request_id().is_some());
    let ro = ManagementClient::builder()
        .base_url(p.base_url())
        .project("orbit")
        .sdk_token(p.read_only_token())
        .build()
        .unwrap();
    let e = ro
        .ensure(
            &WorkloadSpec {
                slug: "new-one".into(),
                ..chat_spec()
            },
            OnDrift::Reconcile,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Permission, Some("scope_insufficient"))
    );
    let e = m.list(Some("nebula")).await.unwrap_err();
    assert_eq!(e.code(), Some("project_scope_mismatch"));
}

/// Faults injected by the emulator's test-only layer.
mod faults {
    use super::*;
    use std::time::Instant;

    async fn faulty_platform() -> LocalPlatform {
        LocalPlatform::start(LocalConfig {
            project: "orbit".into(),
            readiness: ReadinessTimings::instant(),
            enable_faults: true,
            ..LocalConfig::default()
        })
        .await
        .unwrap()
    }

    async fn faulty(fault: &str) -> (LocalPlatform, ClientOptions) {
        let p = faulty_platform().await;
        let opts = ClientOptions {
            stream_idle_timeout: Duration::from_secs(1),
            default_headers: vec![
                ("x-ik-fault".into(), fault.into()),
                (
                    "x-ik-fault-key".into(),
                    format!("{fault}-{:?}", Instant::now()),
                ),
            ],
            ..ClientOptions::default()
        };
        mgmt(&p)
            .ensure(&chat_spec(), OnDrift::Reconcile, None)
            .await
            .unwrap();
        (p, opts)
    }

    fn ep(p: &LocalPlatform, opts: ClientOptions) -> inferencekey_core::Endpoint {
        DataClient::builder()
            .base_url(p.base_url())
            .project(p.project())
            .api_key(p.api_key())
            .options(opts)
            .build()
            .unwrap()
            .endpoint("triage-bot", None)
            .unwrap()
    }

    #[tokio::test]
    async fn lost_create_response_is_not_retried_and_no_duplicate_is_made() {
        let p = faulty_platform().await;
        let upstream = p.base_url().trim_start_matches("http://").parse().unwrap();
        let proxy = common::proxy(upstream, |req| {
            if req.method == "POST" {
                vec![("x-ik-fault".into(), "lost_response".into())]
            } else {
                Vec::new()
            }
        })
        .await;
        let m = ManagementClient::builder()
            .base_url(proxy.url())
            .project(p.project())
            .sdk_token(p.sdk_token())
            .build()
            .unwrap();
        let e = m
            .ensure(&chat_spec(), OnDrift::Reconcile, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Api);
        let posts = proxy
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(posts, 1, "the create was not retried");
        assert_eq!(p.workloads().len(), 1, "the lost create did create");
        // The next ensure finds it instead of creating a duplicate.
        let r = m
            .ensure(&chat_spec(), OnDrift::Reconcile, None)
            .await
            .unwrap();
        assert_eq!(r.action, EnsureAction::Unchanged);
        assert_eq!(p.workloads().len(), 1);
    }

    #[tokio::test]
    async fn flap_twice_then_success() {
        let (p, opts) = faulty("flap=2").await;
        let r = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap();
        assert!(!r.text.is_empty());
    }

    #[tokio::test]
    async fn flap_beyond_the_retry_budget_fails() {
        let (p, opts) = faulty("flap=3").await;
        let e = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(503));
    }

    #[tokio::test]
    async fn rate_limited_with_retry_after_over_the_cap() {
        let (p, opts) = faulty("status=429;retry_after=120").await;
        let started = Instant::now();
        let e = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(429), Some("rate_limited")));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cut_stream_is_truncated() {
        let (p, opts) = faulty("cut_after=300").await;
        let mut s = ep(&p, opts)
            .generate_text_stream(TextRequest::prompt("tell me a long story"))
            .await
            .unwrap();
        let mut last = None;
        while let Some(item) = s.next().await {
            if let Err(e) = item {
                last = Some(e);
            }
        }
        let e = last.expect("a cut stream must end in an error");
        assert_eq!(e.code(), Some("stream_truncated"));
    }

    #[tokio::test]
    async fn error_event_raises() {
        let (p, opts) = faulty("error_event").await;
        let mut s = ep(&p, opts)
            .generate_text_stream(TextRequest::prompt("hi"))
            .await
            .unwrap();
        let mut error = None;
        while let Some(item) = s.next().await {
            if let Err(e) = item {
                error = Some(e);
            }
        }
        assert_eq!(error.unwrap().code(), Some("upstream_error"));
    }

    /// A stream under `fault` ends in a timeout, well before five seconds.
    async fn stream_hits_the_idle_timeout(fault: &str) {
        let (p, opts) = faulty(fault).await;
        let started = Instant::now();
        let mut s = ep(&p, opts)
            .generate_text_stream(TextRequest::prompt("hi"))
            .await
            .unwrap();
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn keepalive_only_hits_the_idle_timeout() {
        stream_hits_the_idle_timeout("keepalive_only").await;
    }

    #[tokio::test]
    async fn drip_is_cut_by_the_idle_timeout() {
        stream_hits_the_idle_timeout("drip_ms=500").await;
    }

    #[tokio::test]
    async fn drip_on_a_plain_call_is_cut_by_the_request_timeout() {
        let (p, opts) = faulty("drip_ms=500").await;
        let mut req = TextRequest::prompt("hi");
        req.timeout = Some(Duration::from_secs(1));
        let e = ep(&p, opts).generate_text(req).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    #[tokio::test]
    async fn stalled_readiness_stream_meets_the_deadline() {
        let (p, opts) = faulty("stall").await;
        let m = ManagementClient::builder()
            .base_url(p.base_url())
            .project(p.project())
            .sdk_token(p.sdk_token())
            .options(opts)
            .build()
            .unwrap();
        let started = Instant::now();
        let e = m
            .wait_until_ready("triage-bot", None, Duration::from_secs(1), |_| {})
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn huge_invalid_and_html_bodies() {
        let (p, opts) = faulty(&format!("huge={}", 50 << 20)).await;
        let e = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.code()),
            (ErrorKind::Api, Some("malformed_response"))
        );
        let (p, opts) = faulty("invalid_json").await;
        let e = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("malformed_response"));
        let (p, mut opts) = faulty("html502").await;
        opts.max_retries = 0;
        let e = ep(&p, opts)
            .generate_text(TextRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.status()), (ErrorKind::Api, Some(502)));
        assert!(e.message().chars().count() <= 501);
    }

    #[tokio::test]
    async fn reset_before_the_response_is_retried_then_reported() {
        let (p, opts) = faulty("reset").await;
        let m = ManagementClient::builder()
            .base_url(p.base_url())
            .project(p.project())
            .sdk_token(p.sdk_token())
            .options(opts)
            .build()
            .unwrap();
        let e = m.list(None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Api);
    }
}
