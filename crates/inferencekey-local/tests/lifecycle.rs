//! Starting and stopping: the handle, dropping it, and the binary.

mod common;

use std::time::Duration;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform, StartError};
use serde_json::{Value, json};

#[test]
fn the_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<LocalPlatform>();
}

#[tokio::test]
async fn credentials_have_the_token_shape() {
    let p = start(instant()).await;
    for (token, prefix) in [
        (p.sdk_token(), "ik_sdk_"),
        (p.read_only_token(), "ik_sdk_"),
        (p.api_key(), "ik_live_"),
    ] {
        let rest = token.strip_prefix(prefix).unwrap();
        let (id, secret) = rest.split_once('_').unwrap();
        assert_eq!((id.len(), secret.len()), (8, 64));
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
    assert_ne!(p.sdk_token(), p.read_only_token());
    let debug = format!("{p:?}");
    assert!(!has_secret(&debug), "{debug}");
    // Two platforms never share tokens.
    let q = start(instant()).await;
    assert_ne!(p.sdk_token(), q.sdk_token());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let p = start(instant()).await;
    let addr = p.addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(p);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_configuration_and_busy_ports_are_errors() {
    let err = LocalPlatform::start(LocalConfig {
        project: "***".into(),
        ..instant()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StartError::Config(_)), "{err}");
    let p = start(instant()).await;
    let err = LocalPlatform::start(LocalConfig {
        port: p.addr().port(),
        ..instant()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StartError::Bind { .. }), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_prints_env_and_stops_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_inferencekey-local"))
        .args([
            "--port",
            "0",
            "--project",
            "orbit",
            "--readiness",
            "instant",
            "--print-env",
        ])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env = std::collections::HashMap::new();
    while env.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("prints the env")
            .unwrap()
            .expect("a line");
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .expect("an export line");
        env.insert(name.to_owned(), value.to_owned());
    }
    assert_eq!(env["INFERENCEKEY_PROJECT"], "orbit");
    assert!(env["INFERENCEKEY_SDK_TOKEN"].starts_with("ik_sdk_"));
    assert!(env["INFERENCEKEY_API_KEY"].starts_with("ik_live_"));
    let base = &env["INFERENCEKEY_BASE_URL"];
    let http = client();
    let r = auth(
        http.post(format!("{base}/api/projects/orbit/workloads")),
        &env["INFERENCEKEY_SDK_TOKEN"],
    )
    .json(&json!({"name": "bot", "backend": "vllm", "model_name": "m"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = auth(
        http.post(format!("{base}/endpoint/orbit/bot/v1/chat/completions")),
        &env["INFERENCEKEY_API_KEY"],
    )
    .json(&json!({"model": "bot", "messages": [{"role": "user", "content": "hi"}]}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["object"],
        "chat.completion"
    );
    // The fault header is inert without the hidden flag.
    let r = auth(
        http.get(format!("{base}/api/projects/orbit/workloads")),
        &env["INFERENCEKEY_SDK_TOKEN"],
    )
    .header("x-ik-fault", "status=500")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
