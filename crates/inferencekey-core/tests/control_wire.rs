//! What `ensure` and `delete` put on the wire, and list shapes the emulator never sends,
//! checked against a scripted server.

mod common;

use common::*;
use inferencekey_core::{EnsureAction, OnDrift, WorkloadSpec};
use serde_json::json;

const LIVE: &str = r#"{"id":"wl_7d1c9e20","slug":"triage-bot","name":"Triage bot","backend":"vllm",
  "model_name":"m","task_type":"text2text","config":{"command":"vllm serve m","port":8000},
  "execution_policy":"fixed","execution_policy_config":{"replicas":1}}"#;

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "Triage bot".into(),
        slug: "Triage Bot".into(),
        model: "m".into(),
        backend: "vllm".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_body_and_stored_slug() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, r#"{"workloads":null}"#)],
        _ => vec![json(201, r#"{"id":"wl_2","slug":"triage-bot-1"}"#)],
    })
    .await;
    let s = WorkloadSpec {
        command: Some("vllm serve m".into()),
        config: Some(
            json!({"vllm_version": "0.8.4", "extra": 1})
                .as_object()
                .unwrap()
                .clone(),
        ),
        vllm_version: Some("0.8.5".into()),
        ..spec()
    };
    let r = mgmt(&server.url())
        .ensure(&s, OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(r.action, EnsureAction::Created);
    assert_eq!(
        r.workload_slug, "triage-bot-1",
        "the stored slug, from the response"
    );
    assert_eq!(r.project_slug, "orbit");
    let post = &server.requests()[1];
    assert_eq!(post.path, "/api/projects/orbit/workloads");
    assert_eq!(
        post.json(),
        json!({"name": "Triage bot", "slug": "triage-bot", "task_type": "text2text",
               "backend": "vllm", "model_name": "m",
               "config": {"command": "vllm serve m", "vllm_version": "0.8.5", "extra": 1}})
    );
}

#[tokio::test]
async fn patch_holds_exactly_the_planned_fields_and_goes_by_id() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, &format!("[{LIVE}]"))],
        _ => vec![json(200, LIVE)],
    })
    .await;
    let s = WorkloadSpec {
        description: Some("first line support".into()),
        command: Some("vllm serve m --max-model-len 8192".into()),
        ..spec()
    };
    let r = mgmt(&server.url())
        .ensure(&s, OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(r.action, EnsureAction::Updated);
    let fields: Vec<&str> = r.plan.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["description", "config"]);
    let patch = &server.requests()[1];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", "/api/workloads/wl_7d1c9e20")
    );
    assert_eq!(
        patch.json(),
        json!({"description": "first line support",
               "config": {"command": "vllm serve m --max-model-len 8192", "port": 8000}})
    );
}

#[tokio::test]
async fn policy_change_sends_its_declared_config_too() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, &format!("[{LIVE}]"))],
        _ => vec![json(200, LIVE)],
    })
    .await;
    let s = WorkloadSpec {
        execution_policy: Some("scheduled".into()),
        execution_policy_config: Some(json!({"replicas": 1})),
        ..spec()
    };
    mgmt(&server.url())
        .ensure(&s, OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(
        server.requests()[1].json(),
        json!({"execution_policy": "scheduled", "execution_policy_config": {"replicas": 1}})
    );
}

#[tokio::test]
async fn odd_workloads_in_the_list_are_skipped() {
    let list = format!(
        r#"[{{"slug":"no-id"}}, "garbage", 42, {{"id":"wl_x","slug":"other","name":7}}, {LIVE}]"#
    );
    let server = serve(move |_, _| vec![json(200, &list)]).await;
    let m = mgmt(&server.url());
    let r = m.ensure(&spec(), OnDrift::Reconcile, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::Unchanged);
    assert_eq!(m.list(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn dry_run_never_mutates() {
    let server = serve(|_, _| vec![json(200, "[]")]).await;
    let m = mgmt(&server.url());
    let r = m.ensure(&spec(), OnDrift::DryRun, None).await.unwrap();
    assert_eq!(
        (r.action, r.workload_slug.as_str()),
        (EnsureAction::Planned, "triage-bot")
    );
    assert!(server.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn delete_absent_sends_no_delete_and_a_404_race_is_false() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, &format!("[{LIVE}]"))],
        _ => vec![json(
            404,
            r#"{"error":{"code":"not_found","message":"gone"}}"#,
        )],
    })
    .await;
    let m = mgmt(&server.url());
    assert!(
        !m.delete("Triage Bot", None).await.unwrap(),
        "404 after the list: a race"
    );
    let del = &server.requests()[1];
    assert_eq!(
        (del.method.as_str(), del.path.as_str()),
        ("DELETE", "/api/workloads/wl_7d1c9e20")
    );
    assert!(!m.delete("someone-else", None).await.unwrap());
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
}

#[tokio::test]
async fn explicit_project_wins_over_spec_and_client() {
    let server = serve(|_, _| vec![json(200, "[]")]).await;
    let m = mgmt(&server.url());
    let s = WorkloadSpec {
        project: Some("from-spec".into()),
        ..spec()
    };
    let r = m
        .ensure(&s, OnDrift::DryRun, Some("explicit"))
        .await
        .unwrap();
    assert_eq!(r.project_slug, "explicit");
    let r = m.ensure(&s, OnDrift::DryRun, None).await.unwrap();
    assert_eq!(r.project_slug, "from-spec");
    let r = m.ensure(&spec(), OnDrift::DryRun, None).await.unwrap();
    assert_eq!(r.project_slug, "orbit");
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/projects/explicit/workloads",
            "/api/projects/from-spec/workloads",
            "/api/projects/orbit/workloads"
        ]
    );
}
