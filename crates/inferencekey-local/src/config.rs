//! Settings of the emulator, all with defaults suited to a quick demo.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long each readiness phase and bootstrap step lasts before the next one starts.
///
/// A workload walks `scheduling` → `provisioning` (skipped when it is pinned to a
/// `worker_id`, like a private worker) → `bootstrapping` with the steps `image_pull`,
/// `weights_download`, `model_load` and `health_check` → `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessTimings {
    pub scheduling: Duration,
    pub provisioning: Duration,
    pub image_pull: Duration,
    pub weights_download: Duration,
    pub model_load: Duration,
    pub health_check: Duration,
}

impl ReadinessTimings {
    /// Every phase takes no time: a workload is `ready` (or in `error`) as soon as the
    /// create or update that started it has returned. Meant for tests.
    pub fn instant() -> Self {
        ReadinessTimings {
            scheduling: Duration::ZERO,
            provisioning: Duration::ZERO,
            image_pull: Duration::ZERO,
            weights_download: Duration::ZERO,
            model_load: Duration::ZERO,
            health_check: Duration::ZERO,
        }
    }

    /// About two seconds in all, so that a demo shows every phase go by.
    pub fn demo() -> Self {
        ReadinessTimings {
            scheduling: Duration::from_millis(300),
            provisioning: Duration::from_millis(400),
            image_pull: Duration::from_millis(300),
            weights_download: Duration::from_millis(400),
            model_load: Duration::from_millis(400),
            health_check: Duration::from_millis(200),
        }
    }

    /// The same duration for every phase and step.
    pub fn uniform(each: Duration) -> Self {
        ReadinessTimings {
            scheduling: each,
            provisioning: each,
            image_pull: each,
            weights_download: each,
            model_load: each,
            health_check: each,
        }
    }

    pub(crate) fn is_instant(&self) -> bool {
        *self == ReadinessTimings::instant()
    }
}

impl Default for ReadinessTimings {
    fn default() -> Self {
        ReadinessTimings::demo()
    }
}

/// Configuration of a [`LocalPlatform`](crate::LocalPlatform).
///
/// ```
/// use inferencekey_local::{LocalConfig, ReadinessTimings};
/// let config = LocalConfig {
///     project: "orbit".into(),
///     readiness: ReadinessTimings::instant(),
///     ..LocalConfig::default()
/// };
/// assert_eq!(config.port, 0);
/// ```
///
/// Simulated failures: a workload whose slug is listed in `failing_slugs`, or whose
/// `config` holds `"simulate_failure": "<message>"`, goes through `scheduling` and
/// `provisioning`, pulls its image, then ends in the `error` phase with that message
/// (a generic one for `failing_slugs`).
///
/// Upstream mode: a workload whose slug is a key of `upstreams`, or whose `config` holds
/// `"upstream_url": "<url>"`, is served by forwarding its data-plane requests to that
/// OpenAI-compatible server. The URL is the upstream base up to and including `/v1`
/// (for example `http://127.0.0.1:8000/v1`); the part of the path after `/v1` is
/// appended to it. The caller's key is never forwarded; `upstream_api_keys` may give a
/// bearer token per slug for the upstream.
#[derive(Clone)]
pub struct LocalConfig {
    /// Slug of the project created at start (more can be added with
    /// [`LocalPlatform::add_project`](crate::LocalPlatform::add_project)).
    pub project: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub readiness: ReadinessTimings,
    /// Interval of `: keepalive` comments on an idle readiness stream.
    pub keepalive_interval: Duration,
    /// Tokens per second of streamed chat; `None` or 0 streams as fast as possible.
    pub token_rate: Option<f64>,
    /// Dimension of the built-in embeddings when a request does not ask for one.
    pub embedding_dim: usize,
    /// Largest accepted request body; larger ones get 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Workload slug → upstream base URL (including `/v1`).
    pub upstreams: HashMap<String, String>,
    /// Workload slug → bearer token sent to its upstream.
    pub upstream_api_keys: HashMap<String, String>,
    /// Workload slugs whose readiness ends in `error`.
    pub failing_slugs: Vec<String>,
    /// Enables the `x-ik-fault` request header (see the `faults` module). Tests only.
    pub enable_faults: bool,
    /// Where projects, tokens and workloads are persisted; loaded at start, rewritten
    /// atomically after every change. The file holds secrets and is created mode 0600.
    pub state_file: Option<PathBuf>,
    /// Command mode: a workload of backend `llamacpp`, `vllm`, `sglang` or `ollama` with
    /// a `config.command` (and no upstream or simulated failure) is served by running
    /// that command on this machine, in its own process group, on a free port (the
    /// `{port}` placeholder, or the backend's port flag appended). Its readiness follows
    /// the process: `provisioning` once spawned, `bootstrapping` (step `model_load`)
    /// until its health route (`/health`, else `/v1/models`) answers 200, then `ready`;
    /// an early exit ends in `error` with the last output lines. The data plane is
    /// proxied to it. Delete, an update that restarts the workload, and shutdown stop
    /// the process group (SIGTERM, then SIGKILL after 5 s); a watchdog stops it too if
    /// the emulator's process dies. Off by default.
    pub run_commands: bool,
    /// In command mode, how long a process may take to answer its health route before
    /// the workload fails.
    pub command_start_timeout: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            project: "demo".to_owned(),
            port: 0,
            readiness: ReadinessTimings::demo(),
            keepalive_interval: Duration::from_secs(15),
            token_rate: None,
            embedding_dim: 384,
            max_body_bytes: 8 * 1024 * 1024,
            upstreams: HashMap::new(),
            upstream_api_keys: HashMap::new(),
            failing_slugs: Vec::new(),
            enable_faults: false,
            state_file: None,
            run_commands: false,
            command_start_timeout: Duration::from_secs(600),
        }
    }
}

impl std::fmt::Debug for LocalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Upstream keys are secrets: only which workloads have one is shown.
        let keyed: Vec<&String> = self.upstream_api_keys.keys().collect();
        f.debug_struct("LocalConfig")
            .field("project", &self.project)
            .field("port", &self.port)
            .field("readiness", &self.readiness)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("token_rate", &self.token_rate)
            .field("embedding_dim", &self.embedding_dim)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("upstreams", &self.upstreams)
            .field("upstream_api_keys_for", &keyed)
            .field("failing_slugs", &self.failing_slugs)
            .field("enable_faults", &self.enable_faults)
            .field("state_file", &self.state_file)
            .field("run_commands", &self.run_commands)
            .field("command_start_timeout", &self.command_start_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::LocalConfig;

    #[test]
    fn debug_hides_upstream_keys() {
        let mut config = LocalConfig::default();
        config
            .upstream_api_keys
            .insert("chat".into(), "sk-very-secret".into());
        let shown = format!("{config:?}");
        assert!(shown.contains("chat"));
        assert!(!shown.contains("sk-very-secret"));
    }
}
