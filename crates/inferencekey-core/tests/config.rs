//! Configuration errors, redaction, and local validation that
//! happens before any request (the clients point at a closed port: a request would
//! surface as a connection error instead of the expected kind).

mod common;

use common::*;
use inferencekey_core::wire::ChatMessage;
use inferencekey_core::{
    DataClient, ErrorKind, ManagementClient, OnDrift, TextRequest, WorkloadSpec,
};
use serde_json::json;

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
async fn tokens_never_appear_in_debug_or_errors() {
    let url = closed_port_url();
    let m = ManagementClient::builder()
        .base_url(&url)
        .project("orbit")
        .sdk_token(live_key())
        .build()
        .unwrap();
    let secret = &live_key()[17..];
    assert!(!format!("{m:?}").contains(secret));
    assert!(format!("{m:?}").contains("ik_live_5c07e1aa…"));
    let builder = ManagementClient::builder().sdk_token(sdk_token());
    assert!(!format!("{builder:?}").contains(&sdk_token()[16..]));
    // A data key on the control plane is refused locally, redacted.
    let e = m
        .ensure(&spec(), OnDrift::Reconcile, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Permission, Some("wrong_credential_type"))
    );
    assert!(e.to_string().contains("ik_live_5c07e1aa…"));
    assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));
    assert_eq!(
        m.delete("x", None).await.unwrap_err().code(),
        Some("wrong_credential_type")
    );

    let d = DataClient::builder()
        .base_url(&url)
        .project("orbit")
        .api_key(sdk_token())
        .build()
        .unwrap();
    assert!(!format!("{d:?}").contains(&sdk_token()[16..]));
    let ep = d.endpoint("w", None).unwrap();
    assert!(!format!("{ep:?}").contains(&sdk_token()[16..]));
    let e = ep
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Permission, Some("wrong_credential_type"))
    );
    assert!(!e.to_string().contains(&sdk_token()[16..]));
}

#[tokio::test]
async fn ensure_validates_before_any_request() {
    let m = mgmt(&closed_port_url());
    let cases: Vec<(WorkloadSpec, &str)> = vec![
        (
            WorkloadSpec {
                name: " ".into(),
                ..spec()
            },
            "`name` is blank",
        ),
        (
            WorkloadSpec {
                slug: "".into(),
                ..spec()
            },
            "`slug` is blank",
        ),
        (
            WorkloadSpec {
                model: "".into(),
                ..spec()
            },
            "`model` is blank",
        ),
        (
            WorkloadSpec {
                slug: "(((".into(),
                ..spec()
            },
            "canonical form is empty",
        ),
        (
            WorkloadSpec {
                command: Some(live_key()),
                ..spec()
            },
            "`command`",
        ),
        (
            WorkloadSpec {
                config: Some(
                    json!({"env": {"TOKEN": sdk_token()}})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                ..spec()
            },
            "`config.env.TOKEN`",
        ),
    ];
    for (s, needle) in cases {
        let e = m.ensure(&s, OnDrift::Reconcile, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation, "{needle}: {e}");
        assert!(e.message().contains(needle), "{needle}: {e}");
        assert!(!e.to_string().contains("a1a1a1") && !e.to_string().contains("b2b2b2"));
    }
    // Project resolution: none anywhere is a configuration error, before any request.
    let no_project = ManagementClient::builder()
        .base_url(closed_port_url())
        .sdk_token(sdk_token())
        .build()
        .unwrap();
    let e = no_project
        .ensure(&spec(), OnDrift::Reconcile, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration);
    let e = no_project.delete("x", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration);
    // With a project from the spec the request is attempted: a connection error now.
    let e = no_project
        .ensure(
            &WorkloadSpec {
                project: Some("orbit".into()),
                ..spec()
            },
            OnDrift::Reconcile,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Api);
}

#[tokio::test]
async fn data_calls_validate_before_any_request() {
    let ep = data(&closed_port_url(), options())
        .endpoint("w", None)
        .unwrap();
    let bad: Vec<TextRequest> = vec![
        TextRequest::default(),
        TextRequest {
            prompt: Some("a".into()),
            messages: Some(vec![ChatMessage::new("user", "b")]),
            ..Default::default()
        },
        TextRequest::prompt(" \n"),
        TextRequest::messages(vec![]),
        TextRequest::messages(vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", ""),
        ]),
        TextRequest {
            max_tokens: Some(0),
            ..TextRequest::prompt("x")
        },
        TextRequest {
            temperature: Some(-0.1),
            ..TextRequest::prompt("x")
        },
        TextRequest {
            temperature: Some(2.01),
            ..TextRequest::prompt("x")
        },
    ];
    for req in bad {
        let e = ep.generate_text(req.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation, "{req:?}: {e}");
        let e = ep.generate_text_stream(req.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation, "{req:?}: {e}");
    }
    assert_eq!(
        ep.embed(vec![]).await.unwrap_err().kind(),
        ErrorKind::Validation
    );
    assert_eq!(
        ep.rerank(" ", vec!["d".into()], None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Validation
    );
    assert_eq!(
        ep.rerank("q", vec![], None).await.unwrap_err().kind(),
        ErrorKind::Validation
    );
    assert_eq!(
        ep.rerank("q", vec!["d".into()], Some(0))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Validation
    );
    // Boundaries are accepted: these reach the network and fail to connect.
    let ok = TextRequest {
        temperature: Some(2.0),
        max_tokens: Some(1),
        ..TextRequest::prompt("x")
    };
    assert_eq!(
        ep.generate_text(ok).await.unwrap_err().kind(),
        ErrorKind::Api
    );
}
