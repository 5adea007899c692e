//! Helpers shared by the integration tests: a platform on 127.0.0.1 and a real client.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

pub fn instant() -> LocalConfig {
    LocalConfig {
        readiness: ReadinessTimings::instant(),
        ..LocalConfig::default()
    }
}

pub async fn start(config: LocalConfig) -> LocalPlatform {
    LocalPlatform::start(config).await.expect("platform starts")
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn workloads_url(p: &LocalPlatform, project: &str) -> String {
    format!("{}/api/projects/{project}/workloads", p.base_url())
}

pub fn workload_url(p: &LocalPlatform, id: &str) -> String {
    format!("{}/api/workloads/{id}", p.base_url())
}

pub fn endpoint(p: &LocalPlatform, workload: &str, route: &str) -> String {
    format!(
        "{}/endpoint/{}/{workload}/v1/{route}",
        p.base_url(),
        p.project()
    )
}

pub fn readiness_url(p: &LocalPlatform, slug: &str) -> String {
    format!(
        "{}/api/projects/{}/workloads/{slug}/readiness-events",
        p.base_url(),
        p.project()
    )
}

pub fn auth(req: RequestBuilder, token: &str) -> RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

/// Creates a workload in the platform's project and returns the stored object.
pub async fn create(p: &LocalPlatform, body: Value) -> Value {
    let r = auth(client().post(workloads_url(p, p.project())), p.sdk_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "create failed: {}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

pub fn workload(slug: &str, task_type: &str) -> Value {
    json!({"name": slug, "slug": slug, "task_type": task_type, "backend": "vllm",
           "model_name": format!("org/{slug}-model")})
}

/// Asserts an error response: status, envelope code, request id in body and header.
pub async fn expect_error(r: Response, status: u16, code: &str) -> String {
    assert_eq!(r.status().as_u16(), status, "status");
    let header_id = r
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert_eq!(body["error"]["request_id"], header_id.as_str());
    assert!(header_id.starts_with("req_"));
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(!message.is_empty());
    assert!(!has_secret(&message), "{message}");
    message
}

/// Whether text holds something shaped like a token secret (64 hex characters in a row).
pub fn has_secret(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= 64 {
            return true;
        }
    }
    false
}
