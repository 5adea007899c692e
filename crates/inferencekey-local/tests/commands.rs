//! Command mode over real HTTP: a small Python server (tests/fixtures/tiny_server.py)
//! plays the workload's command; readiness, the proxied data plane, and stopping the
//! process on update, delete, shutdown and early exit are checked against the real
//! process.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use inferencekey_local::{LocalConfig, LocalPlatform};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_server.py")
}

fn commands() -> LocalConfig {
    LocalConfig {
        run_commands: true,
        ..instant()
    }
}

/// A scratch directory for pid and gate files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ik-commands-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixture's command line; the emulator appends `--host` and `--port`.
fn tiny(pid_file: &Path, extra: &str) -> String {
    format!(
        "python3 '{}' --pid-file '{}' {extra}",
        fixture().display(),
        pid_file.display()
    )
}

fn llamacpp(slug: &str, command: &str) -> Value {
    json!({"name": slug, "slug": slug, "task_type": "text2text", "backend": "llamacpp",
           "model_name": "tiny-model", "config": {"command": command}})
}

/// Every event of a readiness stream opened now, up to its terminal event.
async fn readiness(p: &LocalPlatform, slug: &str) -> Vec<Value> {
    let r = auth(client().get(readiness_url(p, slug)), p.sdk_token())
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("the stream reaches a terminal event")
        .unwrap();
    body.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

fn phases(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect()
}

async fn read_pid(path: &Path) -> u32 {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", path.display());
}

/// Gone: no such process, or a zombie nobody reaped yet.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn post_chat(p: &LocalPlatform, slug: &str, stream: bool) -> reqwest::Response {
    auth(
        client().post(endpoint(p, slug, "chat/completions")),
        p.api_key(),
    )
    .json(&json!({"model": "any", "stream": stream,
                      "messages": [{"role": "user", "content": "hello there"}]}))
    .send()
    .await
    .unwrap()
}

async fn patch(p: &LocalPlatform, slug: &str, body: Value) {
    let r = auth(client().patch(workload_url(p, slug)), p.sdk_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn delete(p: &LocalPlatform, slug: &str) {
    let r = auth(client().delete(workload_url(p, slug)), p.sdk_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn a_command_is_run_proxied_restarted_and_stopped() {
    let scratch = Scratch::new("life");
    let platform = start(commands()).await;
    let first_pid = scratch.path("first.pid");
    let command = tiny(
        &first_pid,
        "--ready-after 1 --term-delay 1 --say 'model file: m.gguf'",
    );
    create(&platform, llamacpp("chat", &command)).await;

    // Opened right after the create: the health route answers 503 for a second, so the
    // stream sees the model load whatever phase its snapshot caught.
    let events = readiness(&platform, "chat").await;
    let seen = phases(&events);
    assert_eq!(seen.last(), Some(&"ready"), "{events:?}");
    let expected = ["scheduling", "provisioning", "bootstrapping", "ready"];
    let start = expected.iter().position(|p| *p == seen[0]).unwrap();
    assert_eq!(seen, expected[start..], "{events:?}");
    let loading = events
        .iter()
        .find(|e| e["phase"] == "bootstrapping")
        .unwrap();
    assert_eq!(loading["step"], "model_load");
    assert!(
        events.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("from `python3` on port"),
        "{events:?}"
    );
    let pid = read_pid(&first_pid).await;
    assert!(!process_gone(pid));

    // The data plane goes to the process; the caller's key does not.
    let r = post_chat(&platform, "chat", false).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["saw_authorization"], false);
    let models: Value = auth(
        client().get(endpoint(&platform, "chat", "models")),
        platform.api_key(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");

    // PATCH of the command: the old process is stopped (it takes a second to exit, so
    // `scheduling` is seen), then the new one walks every phase.
    let second_pid = scratch.path("second.pid");
    let gate = scratch.path("gate");
    let command = tiny(
        &second_pid,
        &format!("--ready-after 1 --alias tiny2 --gate '{}'", gate.display()),
    );
    patch(&platform, "chat", json!({"config": {"command": command}})).await;
    let events = readiness(&platform, "chat").await;
    assert_eq!(
        phases(&events),
        ["scheduling", "provisioning", "bootstrapping", "ready"],
        "{events:?}"
    );
    assert!(process_gone(pid), "the first process outlived its update");
    let new_pid = read_pid(&second_pid).await;
    assert_ne!(new_pid, pid);

    // Streams are passed through unbuffered: the fixture holds its stream after the
    // first event until the gate file exists, which the test creates only once that
    // event arrived through the emulator.
    let mut r = post_chat(&platform, "chat", true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("the first event arrives while the server holds the rest")
        .unwrap()
        .unwrap();
    let first = std::str::from_utf8(&first).unwrap();
    assert!(first.starts_with("data: {"), "{first}");
    assert!(first.contains("\"role\": \"assistant\""), "{first}");
    std::fs::write(&gate, "open").unwrap();
    let mut rest = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let words: String = rest
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str::<Value>(f).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(words, "echo: hello there");

    // DELETE answers once the process group is gone.
    delete(&platform, "chat").await;
    assert!(process_gone(new_pid), "the process outlived its workload");
    platform.shutdown().await;
}

#[tokio::test]
async fn an_early_exit_is_an_error_with_the_last_lines_redacted() {
    let scratch = Scratch::new("early");
    let platform = start(commands()).await;
    let secret = format!("ik_sdk_0123abcd_{}", "5a".repeat(32));
    let command = tiny(
        &scratch.path("pid"),
        &format!("--say 'loading weights' --say 'bad key {secret}' --exit-early 3"),
    );
    create(&platform, llamacpp("broken", &command)).await;
    let events = readiness(&platform, "broken").await;
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "error", "{events:?}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with("`python3` exited with code 3 before it was ready"),
        "{message}"
    );
    assert!(message.contains("loading weights"), "{message}");
    assert!(message.contains("bad key ik_sdk_0123abcd…"), "{message}");
    assert!(!has_secret(message), "{message}");
    let (phase, _) = platform.phase("demo", "broken").unwrap();
    assert_eq!(phase.as_str(), "error");
    let r = post_chat(&platform, "broken", false).await;
    expect_error(r, 503, "upstream_unavailable").await;

    // A command that cannot even be parsed fails at once, without a process.
    create(
        &platform,
        llamacpp("unquoted", "llama-server -m 'model.gguf"),
    )
    .await;
    let events = readiness(&platform, "unquoted").await;
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "error");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("unterminated single quote"),
        "{events:?}"
    );
    platform.shutdown().await;
}

#[tokio::test]
async fn a_process_that_dies_while_serving_turns_the_workload_to_error() {
    let scratch = Scratch::new("dies");
    let platform = start(commands()).await;
    let pid_file = scratch.path("pid");
    // Without a health route the emulator falls back to GET /v1/models.
    create(
        &platform,
        llamacpp("fragile", &tiny(&pid_file, "--no-health")),
    )
    .await;
    let events = readiness(&platform, "fragile").await;
    assert_eq!(phases(&events).last(), Some(&"ready"), "{events:?}");
    let pid = read_pid(&pid_file).await;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_gone(pid).await);
    let mut phase = String::new();
    for _ in 0..200 {
        let (p, message) = platform.phase("demo", "fragile").unwrap();
        if p.as_str() == "error" {
            assert!(message.contains("while serving"), "{message}");
            phase = p.as_str().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(phase, "error");
    let r = post_chat(&platform, "fragile", false).await;
    expect_error(r, 503, "upstream_unavailable").await;
    platform.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_process() {
    let scratch = Scratch::new("shutdown");
    let platform = start(commands()).await;
    let mut pids = Vec::new();
    for slug in ["one", "two"] {
        let pid_file = scratch.path(slug);
        create(&platform, llamacpp(slug, &tiny(&pid_file, ""))).await;
        let events = readiness(&platform, slug).await;
        assert_eq!(phases(&events).last(), Some(&"ready"), "{events:?}");
        pids.push(read_pid(&pid_file).await);
    }
    assert!(pids.iter().all(|pid| !process_gone(*pid)));
    platform.shutdown().await;
    for pid in pids {
        assert!(process_gone(pid), "process {pid} outlived the shutdown");
    }
}

#[tokio::test]
async fn dropping_the_platform_stops_its_processes() {
    let scratch = Scratch::new("drop");
    let platform = start(commands()).await;
    let pid_file = scratch.path("pid");
    create(&platform, llamacpp("dropped", &tiny(&pid_file, ""))).await;
    readiness(&platform, "dropped").await;
    let pid = read_pid(&pid_file).await;
    drop(platform);
    assert!(wait_gone(pid).await, "process {pid} outlived the platform");
}

#[tokio::test]
async fn other_workloads_keep_the_built_in_engines() {
    let scratch = Scratch::new("builtin");
    let pid_file = scratch.path("pid");
    let command = tiny(&pid_file, "");
    // Command mode off: the command is only a setting.
    let off = start(instant()).await;
    create(&off, llamacpp("chat", &command)).await;
    let r = post_chat(&off, "chat", false).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "tiny-model", "the built-in engine answers");
    off.shutdown().await;

    // Command mode on, but a backend without commands, or no command.
    let on = start(commands()).await;
    let mut other = llamacpp("picture", &command);
    other["backend"] = json!("stablediffusioncpp");
    create(&on, other).await;
    let mut plain = llamacpp("plain", &command);
    plain["config"] = Value::Null;
    create(&on, plain).await;
    assert_eq!(on.phase("demo", "picture").unwrap().0.as_str(), "ready");
    let r = post_chat(&on, "plain", false).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "tiny-model");
    assert!(!pid_file.exists(), "no command ran");
    on.shutdown().await;
}
