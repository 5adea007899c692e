//! Retries, timeouts, headers and error mapping over real HTTP, against a scripted
//! server that produces each failure on demand.

mod common;

use std::time::{Duration, Instant};

use common::*;
use inferencekey_core::{ClientOptions, ErrorKind, OnDrift, TextRequest, WorkloadSpec};

const LIST: &str =
    r#"[{"id":"wl_1","slug":"triage-bot","name":"Triage bot","backend":"vllm","model_name":"m"}]"#;

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        name: "Triage bot".into(),
        slug: "triage-bot".into(),
        model: "m".into(),
        backend: "vllm".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn retry_after_429_is_honoured() {
    let server = serve(|i, _| match i {
        0 => vec![response(
            429,
            &[("retry-after", "1")],
            b"{\"error\":{\"code\":\"rate_limited\",\"message\":\"slow down\"}}",
        )],
        _ => vec![json(200, LIST)],
    })
    .await;
    let started = Instant::now();
    let list = mgmt(&server.url()).list(None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(server.count(), 2);
    // Full-jitter backoff alone could have retried at once; Retry-After says 1 s.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn two_503s_then_success_on_the_third_attempt() {
    let server = serve(|i, _| match i {
        0 | 1 => vec![json(
            503,
            r#"{"error":{"code":"upstream_unavailable","message":"x"}}"#,
        )],
        _ => vec![json(200, LIST)],
    })
    .await;
    assert_eq!(mgmt(&server.url()).list(None).await.unwrap().len(), 1);
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let server = serve(|_, _| {
        vec![json(
            503,
            r#"{"error":{"code":"upstream_unavailable","message":"down"}}"#,
        )]
    })
    .await;
    let e = mgmt(&server.url()).list(None).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.code(), Some("upstream_unavailable"));
    assert_eq!(
        server.count(),
        3,
        "one attempt plus the two default retries"
    );
}

#[tokio::test]
async fn retry_after_above_the_cap_is_not_waited_for() {
    let server = serve(|_, _| {
        vec![response(
            429,
            &[("retry-after", "120")],
            b"{\"error\":\"rate_limited\"}",
        )]
    })
    .await;
    let started = Instant::now();
    let e = mgmt(&server.url()).list(None).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(429), Some("rate_limited")));
    assert_eq!(server.count(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn deadline_bounds_retry_waits() {
    let server = serve(|_, _| vec![response(429, &[("retry-after", "5")], b"")]).await;
    let opts = ClientOptions {
        deadline: Some(Duration::from_secs(1)),
        ..options()
    };
    let client = inferencekey_core::ManagementClient::builder()
        .base_url(server.url())
        .project("orbit")
        .sdk_token(sdk_token())
        .options(opts)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.list(None).await.unwrap_err();
    assert_eq!(e.status(), Some(429));
    assert_eq!(server.count(), 1, "a 5 s wait cannot fit in a 1 s deadline");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn get_is_retried_after_a_reset_before_the_status() {
    // The first connection is closed right after the request is read.
    let server = serve(|i, _| {
        if i == 0 {
            vec![]
        } else {
            vec![json(200, LIST)]
        }
    })
    .await;
    assert_eq!(mgmt(&server.url()).list(None).await.unwrap().len(), 1);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn create_is_not_retried_after_a_lost_response() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, "[]")],
        _ => vec![], // request read, connection dropped: the workload may exist now
    })
    .await;
    let e = mgmt(&server.url())
        .ensure(&spec(), OnDrift::Reconcile, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "a second POST could create a duplicate");
}

#[tokio::test]
async fn create_is_not_retried_on_502_but_is_on_503() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, "[]")],
        _ => vec![json(
            502,
            r#"{"error":{"code":"upstream_unavailable","message":"gw"}}"#,
        )],
    })
    .await;
    let e = mgmt(&server.url())
        .ensure(&spec(), OnDrift::Reconcile, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(502));
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        1
    );

    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = posts.clone();
    let server = serve(move |_, req| match req.method.as_str() {
        "GET" => vec![json(200, "[]")],
        _ => {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                vec![json(503, r#"{"error":"upstream_unavailable"}"#)]
            } else {
                vec![json(201, r#"{"id":"wl_9","slug":"triage-bot"}"#)]
            }
        }
    })
    .await;
    let r = mgmt(&server.url())
        .ensure(&spec(), OnDrift::Reconcile, None)
        .await
        .unwrap();
    assert_eq!(r.workload_slug, "triage-bot");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn inference_post_is_not_retried_on_500_but_get_is() {
    let server = serve(|_, _| {
        vec![json(
            500,
            r#"{"error":{"code":"internal","message":"oops"}}"#,
        )]
    })
    .await;
    let ep = data(&server.url(), options()).endpoint("w", None).unwrap();
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(500), Some("internal")));
    assert_eq!(server.count(), 1);
    let e = mgmt(&server.url()).list(None).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(
        server.count(),
        4,
        "GET retried twice after the POST's single attempt"
    );
}

#[tokio::test]
async fn html_502_page_becomes_a_capped_message() {
    let page = format!(
        "<html><body><h1>502 Bad Gateway</h1>{}</body></html>",
        "x".repeat(5000)
    );
    let server = serve(move |_, _| {
        vec![response(
            502,
            &[("content-type", "text/html")],
            page.as_bytes(),
        )]
    })
    .await;
    let opts = ClientOptions {
        max_retries: 0,
        ..options()
    };
    let ep = data(&server.url(), opts).endpoint("w", None).unwrap();
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.status(), e.code()),
        (ErrorKind::Api, Some(502), None)
    );
    assert!(e.message().starts_with("<html><body><h1>502 Bad Gateway"));
    assert!(e.message().chars().count() <= 501);
}

#[tokio::test]
async fn error_envelope_kind_code_and_request_id() {
    let server = serve(|i, _| match i {
        0 => vec![response(
            403,
            &[("x-request-id", "req_header")],
            br#"{"error":{"code":"project_scope_mismatch","message":"credential belongs to project 'a'","request_id":"req_body"}}"#,
        )],
        1 => vec![response(401, &[("x-request-id", "req_h2")], br#"{"error":"unauthorized"}"#)],
        _ => vec![json(422, r#"{"object":"error","message":"bad field"}"#)],
    })
    .await;
    let m = mgmt(&server.url());
    let e = m.list(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission);
    assert_eq!(e.code(), Some("project_scope_mismatch"));
    assert_eq!(e.request_id(), Some("req_body"));
    let e = m.list(None).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.code(), e.request_id()),
        (ErrorKind::Auth, Some("unauthorized"), Some("req_h2"))
    );
    let e = m.list(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert_eq!(e.message(), "bad field");
}

#[tokio::test]
async fn invalid_json_success_body_is_an_api_error() {
    let server = serve(|_, _| vec![json(200, "{\"workloads\": [oops")]).await;
    let e = mgmt(&server.url()).list(None).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Api, Some("malformed_response"))
    );
    assert!(e.message().contains("could not be decoded"), "{e}");
    let server = serve(|_, _| vec![json(200, "<html>ok</html>")]).await;
    let ep = data(&server.url(), options()).endpoint("w", None).unwrap();
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("malformed_response"));
}

#[tokio::test]
async fn fifty_megabyte_body_is_handled() {
    let text = "a".repeat(50 << 20);
    let body = format!(
        r#"{{"model":"m","choices":[{{"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"length"}}]}}"#
    );
    let server = serve(move |_, _| vec![json(200, &body)]).await;
    let ep = data(&server.url(), options()).endpoint("w", None).unwrap();
    let r = ep.generate_text(TextRequest::prompt("hi")).await.unwrap();
    assert_eq!(r.text.len(), 50 << 20);
    assert!(r.raw.len() > 50 << 20);
}

#[tokio::test]
async fn per_call_timeout_bounds_a_stalled_request() {
    let server = serve(|_, _| vec![Step::Hold]).await;
    let ep = data(
        &server.url(),
        ClientOptions {
            max_retries: 0,
            ..options()
        },
    )
    .endpoint("w", None)
    .unwrap();
    let mut req = TextRequest::prompt("hi");
    req.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let e = ep.generate_text(req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connection_refused_is_an_api_error_after_retries() {
    let url = closed_port_url();
    let opts = ClientOptions {
        max_retries: 1,
        ..options()
    };
    let ep = data(&url, opts).endpoint("w", None).unwrap();
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
    assert!(e.message().contains("could not connect"), "{e}");
}

#[tokio::test]
async fn request_headers() {
    let server = serve(|_, req| match req.method.as_str() {
        "GET" => vec![json(200, LIST)],
        _ => vec![json(
            200,
            r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"ok"}}]}"#,
        )],
    })
    .await;
    let opts = ClientOptions {
        user_agent_suffix: Some("my-app/1.2".into()),
        default_headers: vec![("x-extra".into(), "1".into())],
        ..options()
    };
    let m = inferencekey_core::ManagementClient::builder()
        .base_url(format!("{}/", server.url()))
        .project("orbit")
        .sdk_token(sdk_token())
        .options(opts.clone())
        .build()
        .unwrap();
    m.list(None).await.unwrap();
    data(&server.url(), opts)
        .endpoint("triage-bot", None)
        .unwrap()
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap();
    let reqs = server.requests();
    let get = &reqs[0];
    assert_eq!(get.path, "/api/projects/orbit/workloads");
    assert_eq!(
        get.header("authorization"),
        Some(format!("Bearer {}", sdk_token()).as_str())
    );
    assert_eq!(get.header("accept"), Some("application/json"));
    assert_eq!(get.header("content-type"), None, "no body, no content type");
    assert_eq!(get.header("x-extra"), Some("1"));
    assert!(get.header("accept-encoding").unwrap_or("").contains("gzip"));
    let ua = get.header("user-agent").unwrap();
    assert!(
        ua.starts_with("inferencekey-rust/") && ua.ends_with(") my-app/1.2"),
        "{ua}"
    );
    let post = &reqs[1];
    assert_eq!(post.path, "/endpoint/orbit/triage-bot/v1/chat/completions");
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {}", live_key()).as_str())
    );
    assert_eq!(
        post.json(),
        serde_json::json!({"model": "triage-bot", "messages": [{"role": "user", "content": "hi"}]})
    );
}
