//! Command mode: a workload served by a real process started from its `config.command`,
//! with readiness that follows what the process does (see [`crate::command`] for how
//! the process is started and stopped).
//!
//! Phases: `scheduling` until the previous process of the workload (if any) has
//! stopped, `provisioning` once the command is spawned, `bootstrapping` with step
//! `model_load` until the server's health route answers 200, then `ready`. A process
//! that exits, or never answers, ends in `error` with its last output lines (secrets
//! redacted). A process that exits after `ready` turns the workload to `error` too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferencekey_core::wire::{Phase, Workload};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::command::{CommandRunner, ExitInfo, HealthError, RunningWorkload};
use crate::config::LocalConfig;
use crate::registry::{Readiness, ReadinessLog};
use crate::{readiness, upstream};

/// Backends whose `config.command` command mode runs.
pub(crate) const COMMAND_BACKENDS: &[&str] = &["llamacpp", "vllm", "sglang", "ollama"];

/// How many output lines an error message quotes.
const QUOTED_LINES: usize = 8;

/// The command `workload` runs, when the emulator runs commands and the workload is
/// eligible: a command backend, a non-blank `config.command`, and neither an upstream
/// nor a simulated failure (those explicit settings win).
pub(crate) fn command_of(config: &LocalConfig, workload: &Workload) -> Option<String> {
    if !config.run_commands || !COMMAND_BACKENDS.contains(&workload.backend.as_str()) {
        return None;
    }
    if upstream::target(config, workload).is_some()
        || readiness::simulated_failure(config, workload).is_some()
    {
        return None;
    }
    workload
        .config
        .as_ref()?
        .get("command")?
        .as_str()
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned)
}

/// Where a command-mode workload keeps its process. One slot per run: the driver puts
/// the process in, whoever stops the workload closes the slot and takes it out.
#[derive(Debug, Default)]
pub(crate) struct ProcessSlot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    process: Option<Arc<RunningWorkload>>,
    closed: bool,
}

impl ProcessSlot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the process; gives it back when the slot was closed in the meantime.
    fn install(&self, process: Arc<RunningWorkload>) -> Result<(), Arc<RunningWorkload>> {
        let mut state = self.state();
        if state.closed {
            return Err(process);
        }
        state.process = Some(process);
        Ok(())
    }

    /// Closes the slot and takes its process out. Dropping the last handle of a process
    /// stops it (through its watchdog) without waiting; [`RunningWorkload::stop`] waits.
    pub(crate) fn close(&self) -> Option<Arc<RunningWorkload>> {
        let mut state = self.state();
        state.closed = true;
        state.process.take()
    }

    /// `http://127.0.0.1:<port>` of the running process.
    pub(crate) fn base_url(&self) -> Option<String> {
        self.state().process.as_ref().map(|p| p.base_url())
    }
}

/// Everything the driver of one run needs.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) command: String,
    pub(crate) backend: String,
    pub(crate) model: String,
    pub(crate) runner: CommandRunner,
    pub(crate) start_timeout: Duration,
    pub(crate) slot: Arc<ProcessSlot>,
    /// The workload's process of the run before, stopped before this one starts (a
    /// command with a fixed port could not bind it otherwise).
    pub(crate) previous: Option<Arc<RunningWorkload>>,
    pub(crate) readiness: watch::Sender<ReadinessLog>,
    pub(crate) run: u64,
}

impl Job {
    /// Appends a phase to this run; false when a newer run has replaced it.
    fn publish(&self, state: Readiness) -> bool {
        self.readiness.send_if_modified(|log| {
            if log.run == self.run {
                log.history.push(state);
                true
            } else {
                false
            }
        })
    }
}

fn boot(step: &'static str, message: String) -> Readiness {
    Readiness {
        phase: Phase::Bootstrapping,
        message,
        step: Some(step),
    }
}

/// Runs one command-mode run of a workload to its end.
pub(crate) async fn drive(mut job: Job) {
    if let Some(previous) = job.previous.take() {
        previous.stop().await;
    }
    let process = match job.runner.spawn(&job.command, &job.backend) {
        Ok(process) => Arc::new(process),
        Err(err) => {
            job.publish(Readiness::new(Phase::Error, err.to_string()));
            return;
        }
    };
    let program = process.program().to_owned();
    let port = process.port();
    if let Err(process) = job.slot.install(process.clone()) {
        process.stop().await;
        return;
    }
    tracing::info!(program = %program, port, pgid = process.pgid(), "command-mode workload started");
    let started = job.publish(Readiness::new(
        Phase::Provisioning,
        format!(
            "Started `{program}` (process group {}) on port {port}",
            process.pgid()
        ),
    )) && job.publish(boot(
        "model_load",
        format!(
            "Loading {}: waiting for `{program}` to answer its health route",
            job.model
        ),
    ));
    if !started {
        return;
    }
    let deadline = Instant::now() + job.start_timeout;
    match process.wait_healthy(deadline).await {
        Ok(()) => {
            job.publish(Readiness::new(
                Phase::Ready,
                format!("Serving {} from `{program}` on port {port}", job.model),
            ));
        }
        Err(HealthError::Exited(info)) => {
            job.publish(Readiness::new(
                Phase::Error,
                exit_message(&program, "before it was ready", &info),
            ));
            return;
        }
        Err(HealthError::TimedOut { last_lines }) => {
            job.publish(Readiness::new(
                Phase::Error,
                format!(
                    "`{program}` did not answer its health route within {} s{}",
                    job.start_timeout.as_secs(),
                    quote(&last_lines)
                ),
            ));
            if let Some(process) = job.slot.close() {
                process.stop().await;
            }
            return;
        }
    }
    // Serving: a later exit (a crash, or a kill from outside) turns the workload to
    // `error`. A stop asked for by the emulator aborts this task first.
    let info = process.wait_exit().await;
    job.publish(Readiness::new(
        Phase::Error,
        exit_message(&program, "while serving", &info),
    ));
}

fn exit_message(program: &str, when: &str, info: &ExitInfo) -> String {
    let how = match (info.code, info.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    };
    format!("`{program}` {how} {when}{}", quote(&info.last_lines))
}

/// `; last output: a | b | c`, from the last non-blank lines (already redacted).
fn quote(lines: &[String]) -> String {
    let kept: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    let tail = &kept[kept.len().saturating_sub(QUOTED_LINES)..];
    format!("; last output: {}", tail.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workload(backend: &str, config: serde_json::Value) -> Workload {
        serde_json::from_value(json!({
            "id": "wl_1", "project_id": "prj_1", "project_slug": "demo", "name": "w",
            "slug": "w", "workload_slug": "w", "task_type": "text2text",
            "backend": backend, "model_name": "m", "config": config,
            "created_at": "", "updated_at": "",
        }))
        .unwrap()
    }

    #[test]
    fn eligibility() {
        let on = LocalConfig {
            run_commands: true,
            ..LocalConfig::default()
        };
        let cmd = json!({"command": "llama-server -m x.gguf"});
        assert_eq!(
            command_of(&on, &workload("llamacpp", cmd.clone())).as_deref(),
            Some("llama-server -m x.gguf")
        );
        for backend in ["vllm", "sglang", "ollama"] {
            assert!(command_of(&on, &workload(backend, cmd.clone())).is_some());
        }
        // Off by default.
        assert!(command_of(&LocalConfig::default(), &workload("llamacpp", cmd.clone())).is_none());
        assert!(command_of(&on, &workload("stablediffusioncpp", cmd.clone())).is_none());
        assert!(command_of(&on, &workload("llamacpp", json!({"command": "  "}))).is_none());
        assert!(command_of(&on, &workload("llamacpp", json!({"command": 3}))).is_none());
        assert!(command_of(&on, &workload("llamacpp", json!(null))).is_none());
        let upstream = json!({"command": "x", "upstream_url": "http://127.0.0.1:9/v1"});
        assert!(command_of(&on, &workload("llamacpp", upstream)).is_none());
        let failing = json!({"command": "x", "simulate_failure": "no"});
        assert!(command_of(&on, &workload("llamacpp", failing)).is_none());
    }

    #[test]
    fn messages_quote_the_last_lines() {
        let info = ExitInfo {
            code: Some(1),
            signal: None,
            last_lines: (0..12).map(|i| format!("line {i} ")).collect(),
        };
        let message = exit_message("srv", "before it was ready", &info);
        assert_eq!(
            message,
            "`srv` exited with code 1 before it was ready; last output: line 4 | line 5 | \
             line 6 | line 7 | line 8 | line 9 | line 10 | line 11"
        );
        let quiet = ExitInfo {
            code: None,
            signal: Some(9),
            last_lines: vec![" ".into()],
        };
        assert_eq!(
            exit_message("srv", "while serving", &quiet),
            "`srv` was killed by signal 9 while serving"
        );
    }
}
