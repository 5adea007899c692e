//! The emulator's logs never hold a token, whatever the request.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_hold_no_tokens() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("inferencekey_local=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let p = start(instant()).await;
    create(&p, workload("chat", "text2text")).await;
    let http = client();
    let bogus = format!("ik_sdk_deadbeef_{}", "ab".repeat(32));
    for token in [p.sdk_token(), p.api_key(), bogus.as_str()] {
        let _ = auth(http.get(workloads_url(&p, "demo")), token)
            .send()
            .await
            .unwrap();
        let _ = auth(http.post(endpoint(&p, "chat", "chat/completions")), token)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
    }
    let key = p.mint_api_key(&["demo/chat"]);
    assert!(p.revoke(&key));
    p.shutdown().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/api/projects/demo/workloads"),
        "requests are logged: {logs}"
    );
    assert!(logs.contains("status=401"));
    assert!(!has_secret(&logs), "{logs}");
    assert!(!logs.contains("deadbeef_"));
}
