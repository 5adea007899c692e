//! Control plane over real HTTP: routes, statuses, check order, slugs, PATCH semantics.

mod common;

use std::time::Duration;

use common::*;
use inferencekey_core::wire::{Phase, canonical_slug};
use inferencekey_local::{LocalConfig, ReadinessTimings};
use serde_json::{Value, json};

#[tokio::test]
async fn list_is_a_bare_array_in_creation_order() {
    let p = start(instant()).await;
    let http = client();
    let r = auth(http.get(workloads_url(&p, "demo")), p.sdk_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    for slug in ["zeta", "alpha", "mid"] {
        create(&p, workload(slug, "text2text")).await;
    }
    let r = auth(http.get(workloads_url(&p, "demo")), p.read_only_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Vec<Value> = r.json().await.unwrap();
    let slugs: Vec<&str> = list.iter().map(|w| w["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["zeta", "alpha", "mid"]);
}

#[tokio::test]
async fn create_returns_201_with_the_stored_workload() {
    let p = start(instant()).await;
    let w = create(
        &p,
        json!({"name": "Triage bot", "backend": "vllm", "model_name": "Qwen/Qwen2.5-7B-Instruct",
               "config": {"command": "vllm serve x"}, "execution_policy": "fixed",
               "execution_policy_config": {"replicas": 1}}),
    )
    .await;
    assert!(w["id"].as_str().unwrap().starts_with("wl_"));
    assert_eq!(w["slug"], "triage-bot");
    assert_eq!(w["workload_slug"], "triage-bot");
    assert_eq!(w["project_slug"], "demo");
    assert!(w["project_id"].as_str().unwrap().starts_with("prj_"));
    assert_eq!(w["task_type"], "text2text");
    assert_eq!(w["description"], Value::Null);
    assert_eq!(w["worker_id"], Value::Null);
    assert_eq!(w["config"], json!({"command": "vllm serve x"}));
    let created = w["created_at"].as_str().unwrap();
    // RFC 3339 in UTC, e.g. 2026-12-04T14:26:24.123Z.
    assert_eq!(&created[4..5], "-");
    assert_eq!(&created[10..11], "T");
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(p.workloads().len(), 1);
}

#[tokio::test]
async fn slugs_are_canonicalised_and_collisions_suffixed() {
    let p = start(instant()).await;
    let mut body = workload("x", "text2text");
    body["slug"] = json!("Triage Bot (v2)");
    assert_eq!(create(&p, body.clone()).await["slug"], "triage-bot-v2");
    assert_eq!(create(&p, body.clone()).await["slug"], "triage-bot-v2-1");
    assert_eq!(create(&p, body.clone()).await["slug"], "triage-bot-v2-2");
    let derived = create(
        &p,
        json!({"name": "  ops__Summariser..EU ", "backend": "ollama", "model_name": "m"}),
    )
    .await;
    assert_eq!(derived["slug"], "ops-summariser-eu");
    assert_eq!(derived["name"], "  ops__Summariser..EU ");

    let http = client();
    for bad in [
        json!({"name": "n", "slug": "---", "backend": "b", "model_name": "m"}),
        json!({"name": "!!!", "backend": "b", "model_name": "m"}),
    ] {
        let r = auth(http.post(workloads_url(&p, "demo")), p.sdk_token())
            .json(&bad)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "validation_error").await;
    }
}

#[tokio::test]
async fn create_validates_the_body() {
    let p = start(instant()).await;
    let http = client();
    let post = |body: String| {
        auth(http.post(workloads_url(&p, "demo")), p.sdk_token())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let m = expect_error(
        post("{\"name\": ".into()).await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert!(m.contains("JSON"), "{m}");
    expect_error(post(String::new()).await.unwrap(), 400, "bad_request").await;
    for bad in [
        json!({"backend": "vllm", "model_name": "m"}),
        json!({"name": " ", "backend": "vllm", "model_name": "m"}),
        json!({"name": "n", "backend": "vllm", "model_name": ""}),
        json!({"name": "n", "backend": "vllm", "model_name": "m", "task_type": "telepathy"}),
        json!({"name": "n", "backend": "vllm", "model_name": "m", "execution_policy": "elastic"}),
        json!({"name": "n", "backend": "vllm", "model_name": "m", "execution_policy": "scheduled"}),
        json!({"name": "n", "backend": "vllm", "model_name": "m", "execution_policy": "autoscaling",
               "execution_policy_config": {"min_workers": 0, "max_workers": 3,
               "max_hourly_cost_usd": 4.0, "workers": {"source": "cloud", "cloud_pool": {"gpu_pool": []}}}}),
        json!({"name": "n", "backend": "vllm", "model_name": "m", "config": "not an object"}),
        json!([1, 2]),
    ] {
        let r = post(bad.to_string()).await.unwrap();
        expect_error(r, 400, "validation_error").await;
    }
    let ok = json!({"name": "n", "backend": "vllm", "model_name": "m", "execution_policy": "autoscaling",
        "execution_policy_config": {"min_workers": 1, "max_workers": 2,
        "workers": {"source": "private", "private_worker_ids": ["wrk_41aa"]}}});
    assert_eq!(post(ok.to_string()).await.unwrap().status(), 201);
    assert_eq!(p.workloads().len(), 1);
}

#[tokio::test]
async fn checks_come_in_protocol_order() {
    let p = start(instant()).await;
    let other = p.add_project("Orbit Team");
    assert_eq!(other.project, "orbit-team");
    let http = client();
    let bad_body = "{not json";
    let url = workloads_url(&p, "demo");

    // 401: missing, malformed, unknown.
    let r = http.post(&url).body(bad_body).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = http
        .post(&url)
        .header("authorization", "Basic abc")
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    let unknown = format!("ik_sdk_00000000_{}", "0".repeat(64));
    let r = auth(http.post(&url), &unknown)
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;

    // 403 wrong_credential_type beats a project mismatch and a bad body.
    let r = auth(http.post(workloads_url(&p, "orbit-team")), p.api_key())
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "wrong_credential_type").await;

    // project_scope_mismatch beats missing scope and a bad body (read-only of orbit on demo).
    let r = auth(http.post(&url), &other.read_only_token)
        .body(bad_body)
        .send()
        .await
        .unwrap();
    let m = expect_error(r, 403, "project_scope_mismatch").await;
    assert!(m.contains("orbit-team") && m.contains("demo"), "{m}");
    // An unknown project addressed by a token is a mismatch, not a 404.
    let r = auth(http.get(workloads_url(&p, "nowhere")), p.sdk_token())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "project_scope_mismatch").await;

    // scope_insufficient beats a bad body and an unknown workload.
    let r = auth(http.post(&url), p.read_only_token())
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "scope_insufficient").await;
    let r = auth(
        http.patch(workload_url(&p, "wl_nothere")),
        p.read_only_token(),
    )
    .body(bad_body)
    .send()
    .await
    .unwrap();
    expect_error(r, 403, "scope_insufficient").await;
    let r = auth(
        http.delete(workload_url(&p, "wl_nothere")),
        p.read_only_token(),
    )
    .send()
    .await
    .unwrap();
    expect_error(r, 403, "scope_insufficient").await;

    // 404 beats a bad body.
    let r = auth(http.patch(workload_url(&p, "wl_nothere")), p.sdk_token())
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // A workload of another project addressed by id: mismatch, before scope.
    let w = create(&p, workload("mine", "text2text")).await;
    let id = w["id"].as_str().unwrap();
    let r = auth(http.patch(workload_url(&p, id)), &other.read_only_token)
        .body(bad_body)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "project_scope_mismatch").await;
    let r = auth(http.delete(workload_url(&p, id)), &other.sdk_token)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "project_scope_mismatch").await;
    // By slug, another project's token only sees its own project: 404.
    let r = auth(http.delete(workload_url(&p, "mine")), &other.sdk_token)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // Readiness stream: same order, JSON errors before any event.
    let r = auth(http.get(readiness_url(&p, "nothere")), p.api_key())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "wrong_credential_type").await;
    let r = auth(http.get(readiness_url(&p, "nothere")), &other.sdk_token)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "project_scope_mismatch").await;
    let r = auth(http.get(readiness_url(&p, "nothere")), p.read_only_token())
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn placement_needs_assignment_scope() {
    let p = start(instant()).await;
    let http = client();
    let writer = p.mint_sdk_token("demo", &["workload:write"]);
    let mut body = workload("pinned", "text2text");
    body["worker_id"] = json!("wrk_1");
    let r = auth(http.post(workloads_url(&p, "demo")), &writer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let m = expect_error(r, 403, "scope_insufficient").await;
    assert!(m.contains("assignment:write"), "{m}");
    let r = auth(http.post(workloads_url(&p, "demo")), &writer)
        .json(&workload("free", "text2text"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = auth(http.patch(workload_url(&p, "free")), &writer)
        .json(&json!({"gpu_resource_id": "gpu_1"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "scope_insufficient").await;
    let r = auth(http.patch(workload_url(&p, "free")), p.sdk_token())
        .json(&json!({"gpu_resource_id": "gpu_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Write implies read.
    let r = auth(http.get(workloads_url(&p, "demo")), &writer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn revoked_control_token_gets_403() {
    let p = start(instant()).await;
    let token = p.mint_sdk_token("demo", &["workload:write", "workload:read"]);
    let http = client();
    let list = || auth(http.get(workloads_url(&p, "demo")), &token).send();
    assert_eq!(list().await.unwrap().status(), 200);
    assert!(p.revoke(&token));
    expect_error(list().await.unwrap(), 403, "scope_insufficient").await;
    assert!(!p.revoke("ik_sdk_nope"));
}

#[tokio::test]
async fn patch_replaces_clears_and_keeps() {
    let p = start(instant()).await;
    let w = create(
        &p,
        json!({"name": "Bot", "slug": "bot", "description": "first", "backend": "vllm",
               "model_name": "m1", "config": {"a": 1, "b": 2}, "worker_id": "wrk_1",
               "execution_policy": "fixed", "execution_policy_config": {"replicas": 1}}),
    )
    .await;
    let id = w["id"].as_str().unwrap().to_owned();
    let http = client();
    let patch = |key: &str, body: Value| {
        auth(http.patch(workload_url(&p, key)), p.sdk_token())
            .json(&body)
            .send()
    };
    let r = patch(
        &id,
        json!({"description": null, "config": {"c": 3}, "name": "Bot 2"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["description"], Value::Null);
    assert_eq!(
        u["config"],
        json!({"c": 3}),
        "objects are replaced, not merged"
    );
    assert_eq!(u["name"], "Bot 2");
    assert_eq!(u["slug"], "bot", "a rename keeps the slug");
    assert_eq!(u["model_name"], "m1");
    assert_eq!(u["worker_id"], "wrk_1");
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["created_at"], w["created_at"]);

    // By slug, null clears placement; task_type equal is accepted, different is 400.
    let r = patch("bot", json!({"worker_id": null, "task_type": "text2text"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["worker_id"], Value::Null);
    let m = expect_error(
        patch("bot", json!({"task_type": "embedding"}))
            .await
            .unwrap(),
        400,
        "validation_error",
    )
    .await;
    assert!(m.contains("task_type"), "{m}");

    // The policy is checked against the config held after the request.
    let m = expect_error(
        patch("bot", json!({"execution_policy": "scheduled"}))
            .await
            .unwrap(),
        400,
        "validation_error",
    )
    .await;
    assert!(m.contains("cron"), "{m}");
    let r = patch(
        "bot",
        json!({"execution_policy": "scheduled", "execution_policy_config": {"cron": "30 3 * * *"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    expect_error(
        patch("bot", json!({"execution_policy_config": {"replicas": 2}}))
            .await
            .unwrap(),
        400,
        "validation_error",
    )
    .await;
    expect_error(
        patch("bot", json!({"name": ""})).await.unwrap(),
        400,
        "validation_error",
    )
    .await;
    expect_error(
        patch("bot", json!([])).await.unwrap(),
        400,
        "validation_error",
    )
    .await;
    let stored = &p.workloads()[0];
    assert_eq!(stored.execution_policy.as_deref(), Some("scheduled"));
    assert_eq!(stored.name, "Bot 2");
}

async fn wait_phase(p: &inferencekey_local::LocalPlatform, slug: &str, phase: Phase) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.phase("demo", slug).map(|s| s.0) != Some(phase.clone()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{slug} never reached {phase}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn changing_what_runs_restarts_readiness() {
    let p = start(LocalConfig {
        readiness: ReadinessTimings::uniform(Duration::from_millis(200)),
        ..LocalConfig::default()
    })
    .await;
    create(&p, workload("bot", "text2text")).await;
    assert_ne!(p.phase("demo", "bot").unwrap().0, Phase::Ready);
    wait_phase(&p, "bot", Phase::Ready).await;
    let http = client();
    let patch = |body: Value| {
        auth(http.patch(workload_url(&p, "bot")), p.sdk_token())
            .json(&body)
            .send()
    };
    // Same values and descriptive fields do not restart.
    assert_eq!(
        patch(json!({"description": "d", "model_name": "org/bot-model"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(p.phase("demo", "bot").unwrap().0, Phase::Ready);
    for change in [
        json!({"model_name": "other"}),
        json!({"backend": "sglang"}),
        json!({"config": {"command": "x"}}),
        json!({"gpu_resource_id": "gpu_9"}),
    ] {
        assert_eq!(patch(change.clone()).await.unwrap().status(), 200);
        // Over a second from ready again, so a slow machine still sees the restart.
        assert_ne!(p.phase("demo", "bot").unwrap().0, Phase::Ready, "{change}");
        wait_phase(&p, "bot", Phase::Ready).await;
    }
}

#[tokio::test]
async fn delete_by_id_or_slug() {
    let p = start(instant()).await;
    let a = create(&p, workload("a", "text2text")).await;
    create(&p, workload("b", "text2text")).await;
    let http = client();
    let del = |key: String| auth(http.delete(workload_url(&p, &key)), p.sdk_token()).send();
    let r = del(a["id"].as_str().unwrap().to_owned()).await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = del("b".into()).await.unwrap();
    assert_eq!(r.status(), 204);
    expect_error(del("b".into()).await.unwrap(), 404, "not_found").await;
    assert!(p.workloads().is_empty());
    // The slug is free again.
    assert_eq!(create(&p, workload("a", "text2text")).await["slug"], "a");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let p = start(instant()).await;
    let http = client();
    let r = auth(
        http.get(format!("{}/api/nothing", p.base_url())),
        p.sdk_token(),
    )
    .send()
    .await
    .unwrap();
    expect_error(r, 404, "not_found").await;
    let r = auth(http.put(workloads_url(&p, "demo")), p.sdk_token())
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn projects_are_isolated() {
    let p = start(LocalConfig {
        project: "Nebula".into(),
        ..instant()
    })
    .await;
    assert_eq!(p.project(), "nebula");
    let orbit = p.add_project("orbit");
    assert_eq!(
        p.add_project("orbit"),
        orbit,
        "adding twice returns the same credentials"
    );
    let http = client();
    let r = auth(http.post(workloads_url(&p, "orbit")), &orbit.sdk_token)
        .json(&workload("bot", "text2text"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["project_slug"], "orbit");
    create(&p, workload("bot", "text2text")).await;
    let list: Vec<Value> = auth(http.get(workloads_url(&p, "nebula")), p.sdk_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["slug"], "bot", "slugs are unique per project only");
    assert_eq!(canonical_slug(p.project()), "nebula");
}

/// Both ends of 1,000 connections live in this process: make sure the descriptor limit
/// allows it (CI machines often default to a soft limit of 1024).
fn raise_descriptor_limit() {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else {
        return;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (
        fields[3].parse::<u64>(),
        fields[4].parse::<u64>().unwrap_or(u64::MAX),
    );
    if soft.is_ok_and(|s| s < 2500) {
        let target = hard.min(4096);
        let _ = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={target}:"),
            ])
            .status();
    }
}

#[tokio::test]
async fn a_thousand_concurrent_connections() {
    raise_descriptor_limit();
    let p = start(instant()).await;
    create(&p, workload("bot", "text2text")).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = workloads_url(&p, "demo");
    let requests = (0..1000).map(|_| {
        let r = auth(http.get(&url), p.sdk_token()).send();
        async move {
            let r = r.await.expect("request succeeds");
            assert_eq!(r.status(), 200);
            r.json::<Vec<Value>>().await.unwrap().len()
        }
    });
    let lens = futures_util::future::join_all(requests).await;
    assert_eq!(lens.len(), 1000);
    assert!(lens.iter().all(|n| *n == 1));
}

#[tokio::test]
async fn a_thousand_streams_open_at_once() {
    raise_descriptor_limit();
    let p = start(LocalConfig {
        readiness: ReadinessTimings::uniform(Duration::from_secs(60)),
        ..LocalConfig::default()
    })
    .await;
    create(&p, workload("slow", "text2text")).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = readiness_url(&p, "slow");
    // Every stream stays open (the workload takes a minute per phase), so each one
    // holds its own connection until all have read their snapshot.
    let opens = (0..1000).map(|_| {
        let r = auth(http.get(&url), p.sdk_token()).send();
        async move {
            let mut r = r.await.expect("stream opens");
            assert_eq!(r.status(), 200);
            let first = r.chunk().await.unwrap().unwrap();
            assert!(first.starts_with(b"data: {\"phase\":\"scheduling\""));
            r
        }
    });
    let streams = futures_util::future::join_all(opens).await;
    assert_eq!(streams.len(), 1000);
    tokio::time::timeout(Duration::from_secs(10), p.shutdown())
        .await
        .expect("shutdown closes a thousand streams");
    for mut s in streams {
        let end = tokio::time::timeout(Duration::from_secs(5), s.chunk())
            .await
            .expect("each stream ends");
        assert!(matches!(end, Ok(None) | Err(_)));
    }
}
