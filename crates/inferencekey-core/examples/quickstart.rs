//! Quickstart: start the local platform emulator, ensure a chat workload, wait until it
//! serves, chat (plain and streamed), embed, and clean up.
//!
//! Run with `cargo run --release -p inferencekey-core --example quickstart`. Against the
//! real platform, drop the emulator and build the clients with `from_env()`.

use std::io::Write;
use std::time::Duration;

use inferencekey_core::{DataClient, ManagementClient, OnDrift, Result, TextRequest, WorkloadSpec};
use inferencekey_local::{LocalConfig, LocalPlatform};

#[tokio::main]
async fn main() -> Result<()> {
    let platform = LocalPlatform::start(LocalConfig::default())
        .await
        .expect("the emulator starts");
    println!("local platform at {}", platform.base_url());

    let mgmt = ManagementClient::builder()
        .base_url(platform.base_url())
        .project(platform.project())
        .sdk_token(platform.sdk_token())
        .build()?;
    let data = DataClient::builder()
        .base_url(platform.base_url())
        .project(platform.project())
        .api_key(platform.api_key())
        .build()?;

    let chat = WorkloadSpec {
        name: "Triage bot".into(),
        slug: "triage-bot".into(),
        model: "Qwen/Qwen2.5-0.5B-Instruct".into(),
        backend: "vllm".into(),
        command: Some("vllm serve Qwen/Qwen2.5-0.5B-Instruct --max-model-len 8192".into()),
        ..WorkloadSpec::default()
    };
    let embed = WorkloadSpec {
        name: "Triage embeddings".into(),
        slug: "triage-embed".into(),
        model: "BAAI/bge-m3".into(),
        backend: "vllm".into(),
        task_type: Some("embedding".into()),
        ..WorkloadSpec::default()
    };

    for spec in [&chat, &embed] {
        let ep = mgmt.ensure(spec, OnDrift::Reconcile, None).await?;
        println!("{}: {}", ep.workload_slug, ep.action.as_str());
        mgmt.wait_until_ready(&ep.workload_slug, None, Duration::from_secs(120), |event| {
            let step = event.step.as_deref().unwrap_or("");
            println!(
                "  [{:>6} ms] {:<13} {step:<16} {}",
                event.elapsed_ms,
                event.phase.as_str(),
                event.message
            );
        })
        .await?;
    }

    let bot = data.endpoint("triage-bot", None)?;
    let answer = bot
        .generate_text(TextRequest::prompt("Summarise ticket 4411"))
        .await?;
    println!("\nchat ({}): {}", answer.model, answer.text);

    print!("stream: ");
    let mut stream = bot
        .generate_text_stream(TextRequest::prompt("Explain key rotation"))
        .await?;
    while let Some(chunk) = stream.next().await {
        print!("{}", chunk?.text);
        std::io::stdout().flush().ok();
    }
    println!();

    let vectors = data
        .endpoint("triage-embed", None)?
        .embed(vec!["refund policy".into(), "2FA reset".into()])
        .await?;
    println!(
        "embeddings: {} vectors of dimension {}",
        vectors.count, vectors.dim
    );

    for slug in ["triage-bot", "triage-embed"] {
        println!("deleted {slug}: {}", mgmt.delete(slug, None).await?);
    }
    platform.shutdown().await;
    Ok(())
}
