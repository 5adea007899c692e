//! What the client logs through `tracing`: requests at debug level without any
//! credential, and a warning for drift under `OnDrift::Warn` (none under `Ignore`).
//!
//! The subscriber is the process-wide default, so this binary holds a single test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferencekey_core::{
    DataClient, EnsureAction, ManagementClient, OnDrift, TextRequest, WorkloadSpec,
};
use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

fn client_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("inferencekey_core"))
        .collect()
}

#[tokio::test]
async fn requests_are_logged_without_credentials_and_drift_warns() {
    let log = Captured::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish(),
    )
    .unwrap();

    let p = LocalPlatform::start(LocalConfig {
        project: "orbit".into(),
        readiness: ReadinessTimings::instant(),
        ..LocalConfig::default()
    })
    .await
    .unwrap();
    let m = ManagementClient::builder()
        .base_url(p.base_url())
        .project(p.project())
        .sdk_token(p.sdk_token())
        .build()
        .unwrap();
    let spec = WorkloadSpec {
        name: "Triage bot".into(),
        slug: "triage-bot".into(),
        model: "m".into(),
        backend: "vllm".into(),
        ..Default::default()
    };
    m.ensure(&spec, OnDrift::Reconcile, None).await.unwrap();
    m.wait_until_ready("triage-bot", None, Duration::from_secs(5), |_| {})
        .await
        .unwrap();
    DataClient::builder()
        .base_url(p.base_url())
        .project(p.project())
        .api_key(p.api_key())
        .build()
        .unwrap()
        .endpoint("triage-bot", None)
        .unwrap()
        .generate_text(TextRequest::prompt("hi"))
        .await
        .unwrap();
    let text = log.take();
    let lines = client_lines(&text);
    assert!(
        lines.iter().any(|l| l.contains("method=POST")
            && l.contains("path=/api/projects/orbit/workloads")
            && l.contains("status=201")
            && l.contains("attempt=1")
            && l.contains("elapsed_ms=")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("path=/endpoint/orbit/triage-bot/v1/chat/completions")),
        "{text}"
    );
    for secret in [p.sdk_token(), p.api_key()] {
        assert!(!text.contains(&secret[17..]), "a secret reached the logs");
    }

    let drifted = WorkloadSpec {
        name: "Renamed".into(),
        ..spec
    };
    let r = m.ensure(&drifted, OnDrift::Ignore, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::DriftIgnored);
    let text = log.take();
    assert!(!text.contains(" WARN "), "ignore is silent: {text}");
    let r = m.ensure(&drifted, OnDrift::Warn, None).await.unwrap();
    assert_eq!(r.action, EnsureAction::DriftIgnored);
    let text = log.take();
    assert!(
        client_lines(&text)
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("drifted") && l.contains("fields=name")),
        "{text}"
    );
}
