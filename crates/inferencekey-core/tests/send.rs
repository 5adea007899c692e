//! Every operation's future is `Send + 'static` once the client is cloned into it, so
//! it can run on a spawned task (the Python bindings rely on this).

mod common;

use std::time::Duration;

use common::*;
use inferencekey_core::{ErrorKind, OnDrift, TextRequest, WorkloadSpec};

#[tokio::test]
async fn operations_run_on_spawned_tasks() {
    let url = closed_port_url();
    let opts = inferencekey_core::ClientOptions {
        max_retries: 0,
        ..options()
    };
    let m = mgmt(&url);
    let ep = data(&url, opts).endpoint("w", None).unwrap();
    let spec = WorkloadSpec {
        name: "n".into(),
        slug: "s".into(),
        model: "m".into(),
        backend: "vllm".into(),
        ..Default::default()
    };
    let mut handles = Vec::new();
    {
        let m = m.clone();
        handles.push(tokio::spawn(async move {
            m.ensure(&spec, OnDrift::Reconcile, None).await.map(|_| ())
        }));
    }
    {
        let m = m.clone();
        handles.push(tokio::spawn(async move {
            m.delete("s", None).await.map(|_| ())
        }));
    }
    {
        let m = m.clone();
        handles.push(tokio::spawn(async move {
            m.wait_until_ready("s", None, Duration::from_millis(200), |_| {})
                .await
        }));
    }
    {
        let ep = ep.clone();
        handles.push(tokio::spawn(async move {
            ep.generate_text(TextRequest::prompt("hi"))
                .await
                .map(|_| ())
        }));
    }
    {
        let ep = ep.clone();
        handles.push(tokio::spawn(async move {
            ep.generate_text_stream(TextRequest::prompt("hi"))
                .await
                .map(|_| ())
        }));
    }
    {
        let ep = ep.clone();
        handles.push(tokio::spawn(async move {
            ep.embed(vec!["a".into()]).await.map(|_| ())
        }));
    }
    handles.push(tokio::spawn(async move {
        ep.rerank("q", vec!["d".into()], None).await.map(|_| ())
    }));
    for h in handles {
        let e = h.await.unwrap().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Api | ErrorKind::Timeout),
            "{e}"
        );
    }
}
