//! The state file: workloads and tokens survive a restart; writes are atomic.

mod common;

use common::*;
use inferencekey_core::wire::Phase;
use inferencekey_local::{LocalConfig, LocalPlatform};
use serde_json::json;

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ik-local-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn state_round_trips_through_a_restart() {
    let dir = scratch_dir("state");
    let file = dir.join("platform.json");
    let config = || LocalConfig {
        state_file: Some(file.clone()),
        failing_slugs: vec!["doomed".into()],
        ..instant()
    };
    let p = start(config()).await;
    assert!(file.exists(), "credentials are saved at start");
    create(&p, workload("keep", "text2text")).await;
    create(&p, workload("drop", "embedding")).await;
    create(&p, workload("doomed", "text2text")).await;
    let r = auth(client().patch(workload_url(&p, "keep")), p.sdk_token())
        .json(&json!({"description": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = auth(client().delete(workload_url(&p, "drop")), p.sdk_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let extra_key = p.mint_api_key(&["demo/keep"]);
    let before = p.workloads();
    let (sdk, key) = (p.sdk_token().to_owned(), p.api_key().to_owned());
    p.shutdown().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the state file holds secrets");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("platform.json")]);

    let p: LocalPlatform = start(config()).await;
    assert_eq!(p.workloads(), before);
    assert_eq!(p.sdk_token(), sdk);
    assert_eq!(p.api_key(), key);
    assert_eq!(p.workloads()[0].description.as_deref(), Some("kept"));
    assert_eq!(p.phase("demo", "keep").unwrap().0, Phase::Ready);
    assert_eq!(p.phase("demo", "doomed").unwrap().0, Phase::Error);
    let r = auth(
        client().post(endpoint(&p, "keep", "chat/completions")),
        &extra_key,
    )
    .json(&json!({"model": "keep", "messages": [{"role": "user", "content": "hi"}]}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "minted keys survive too");
    // The slug counter sees restored workloads.
    assert_eq!(
        create(&p, workload("keep", "text2text")).await["slug"],
        "keep-1"
    );
    p.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_corrupt_state_file_is_an_error() {
    let dir = scratch_dir("corrupt");
    let file = dir.join("state.json");
    std::fs::write(&file, b"{not json").unwrap();
    let err = LocalPlatform::start(LocalConfig {
        state_file: Some(file),
        ..instant()
    })
    .await
    .expect_err("refuses to start");
    assert!(err.to_string().contains("state"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
