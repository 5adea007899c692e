//! An embedded emulator of the InferenceKey platform, for local development and tests.
//!
//! It serves the control plane (workloads, readiness stream) and the OpenAI-compatible
//! data plane of the protocol on 127.0.0.1, with the platform's status codes, error
//! envelope and order of checks. Inference comes from built-in simulated engines
//! (deterministic text, hashed embeddings, cosine rerank; no model weights) or from an
//! upstream OpenAI-compatible server per workload.
//!
//! # Credentials
//! Each project gets an `ik_sdk_` token with `workload:write`, `assignment:write` and
//! `workload:read`, a read-only `ik_sdk_` token (`workload:read`), and an `ik_live_` key
//! granted `project/*`. More can be minted and revoked through [`LocalPlatform`]. Tokens
//! are random, of the exact shape `ik_<kind>_<8 hex>_<64 hex>`, and are never logged.
//!
//! # Readiness
//! A created workload walks `scheduling`, `provisioning` (skipped when pinned to a
//! `worker_id`), `bootstrapping` (steps `image_pull`, `weights_download`, `model_load`,
//! `health_check`) and `ready`, with the durations of [`ReadinessTimings`]. A PATCH of
//! `backend`, `model_name`, `config`, `worker_id` or `gpu_resource_id` starts it over.
//! See [`LocalConfig`] for simulated failures and for upstream workloads.
//!
//! # Engines (simulated)
//! - `text2text` and `omni` workloads serve chat completions: a deterministic templated
//!   reply reusing words of the last user message, one token per word, honouring
//!   `max_tokens` (`finish_reason` `length`) and streamed at
//!   [`LocalConfig::token_rate`].
//! - `embedding` (and `reranker`) workloads serve embeddings: word unigrams and
//!   character trigrams hashed (FNV-1a) into an L2-normalised vector of
//!   [`LocalConfig::embedding_dim`] components, or `dimensions` when the request asks.
//! - `reranker` workloads serve rerank: cosine similarity of those embeddings, sorted
//!   highest first, cut at `top_n`.
//!
//! Any other route or task type answers 400 `unsupported_task`, unless the workload is
//! served by an upstream or a command.
//!
//! # Command mode
//! With [`LocalConfig::run_commands`], a workload of backend `llamacpp`, `vllm`, `sglang`
//! or `ollama` whose `config` holds a `command` runs that command on this machine (for
//! example `llama-server -m model.gguf`), in its own process group and on a free port:
//! a `{port}` placeholder in the command is replaced, else the backend's port flag is
//! appended (`--port N`; `OLLAMA_HOST` for ollama), with `--host 127.0.0.1` unless the
//! command picks a host. The command is split like a shell would split it but runs
//! without a shell. Readiness follows the process: `provisioning` when it is spawned,
//! `bootstrapping` with step `model_load` until `GET /health` (or `/v1/models` where
//! there is no `/health`) answers 200, then `ready`; an early exit ends in `error` with
//! the last output lines, tokens redacted. Data-plane requests are proxied to it and
//! streamed through as they come. Deleting the workload, an update that restarts it,
//! and [`LocalPlatform::shutdown`] stop the process group (SIGTERM, then SIGKILL after a
//! grace period); a small watchdog does the same when the emulator's process dies in
//! any way, so no process is left behind.
//!
//! # Command line
//! The `inferencekey-local` binary runs the same emulator in the foreground:
//! `inferencekey-local --port 8080 --project demo --state platform.json --upstream
//! chat=http://127.0.0.1:8000/v1 --readiness demo --print-env` (add `--run-commands`
//! for command mode). With `--print-env` it
//! prints `export INFERENCEKEY_BASE_URL=…`, `…_PROJECT`, `…_SDK_TOKEN` and `…_API_KEY`
//! lines once it listens; it stops gracefully on Ctrl-C or SIGTERM.
//!
//! # State file
//! With [`LocalConfig::state_file`], projects, tokens and workloads are loaded at start
//! (workloads come back in their terminal phase, as they were serving before) and saved
//! atomically after every change.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};
//!
//! let platform = LocalPlatform::start(LocalConfig {
//!     readiness: ReadinessTimings::instant(),
//!     ..LocalConfig::default()
//! })
//! .await
//! .unwrap();
//! assert!(platform.base_url().starts_with("http://127.0.0.1:"));
//! assert_eq!(platform.project(), "demo");
//! assert!(platform.sdk_token().starts_with("ik_sdk_"));
//! platform.shutdown().await;
//! # }
//! ```

mod app;
mod auth;
mod command;
mod config;
mod connection;
mod control;
mod credentials;
mod data;
mod engines;
mod error;
pub mod faults;
mod persist;
mod policy;
mod readiness;
mod registry;
mod server;
mod supervisor;
mod upstream;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use inferencekey_core::wire::{Phase, Workload, canonical_slug, redact_token};
use tokio::task::JoinHandle;

pub use config::{LocalConfig, ReadinessTimings};
pub use credentials::ProjectCredentials;

use app::App;
use connection::{Connection, KillableListener};
use credentials::TokenRecord;
use persist::StateFile;
use registry::{Project, Registry, WorkloadEntry};

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("could not bind 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("could not load the state file: {0}")]
    State(#[source] std::io::Error),
    #[error("could not build the upstream HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A running emulator. Dropping it shuts the server down too; [`shutdown`] also waits
/// for open connections to finish.
///
/// [`shutdown`]: LocalPlatform::shutdown
pub struct LocalPlatform {
    app: Arc<App>,
    addr: SocketAddr,
    base_url: String,
    credentials: ProjectCredentials,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPlatform")
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl LocalPlatform {
    /// Binds 127.0.0.1 on `config.port` (0 picks a free port), loads the state file if
    /// any, creates the configured project with its credentials, and starts serving.
    /// Must be called inside a tokio runtime, which then runs the server.
    pub async fn start(mut config: LocalConfig) -> Result<LocalPlatform, StartError> {
        let project = canonical_slug(&config.project);
        if project.is_empty() {
            return Err(StartError::Config(format!(
                "project '{}' has no ASCII letters or digits",
                config.project
            )));
        }
        config.project.clone_from(&project);
        if config.keepalive_interval.is_zero() {
            return Err(StartError::Config(
                "keepalive_interval must be greater than zero".into(),
            ));
        }
        // reqwest is built without a default TLS provider; ring is the workspace's choice.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(StartError::Client)?;

        let state_file = config.state_file.clone().map(StateFile::new);
        let mut registry = Registry::default();
        if let Some(file) = &state_file {
            if let Some(snapshot) = file.load().map_err(StartError::State)? {
                registry.projects = snapshot
                    .projects
                    .into_iter()
                    .map(|p| Project {
                        id: p.id,
                        slug: p.slug,
                    })
                    .collect();
                registry.tokens = snapshot.tokens;
                for record in snapshot.workloads {
                    let mut entry = WorkloadEntry::new(record);
                    readiness::restore(&config, &mut entry);
                    registry.workloads.push(entry);
                }
            }
        }
        let credentials = registry.ensure_project(&project);

        let port = config.port;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| StartError::Bind { port, source })?;
        let open_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = KillableListener::new(listener, open_connections.clone());
        let addr = listener
            .socket_addr()
            .map_err(|source| StartError::Bind { port, source })?;

        let app = Arc::new(App::new(
            config,
            registry,
            http,
            state_file,
            open_connections,
        ));
        app.save();
        let router = server::router(app.clone());
        let shutdown = app.shutdown.clone();
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<Connection>();
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "the local platform stopped");
            }
        });
        tracing::info!(%addr, project = %project, "local platform listening");
        Ok(LocalPlatform {
            app,
            addr,
            base_url: format!("http://{addr}"),
            credentials,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured project's slug.
    pub fn project(&self) -> &str {
        &self.credentials.project
    }

    /// The configured project's full `ik_sdk_` token.
    pub fn sdk_token(&self) -> &str {
        &self.credentials.sdk_token
    }

    /// The configured project's `ik_sdk_` token with `workload:read` only.
    pub fn read_only_token(&self) -> &str {
        &self.credentials.read_only_token
    }

    /// The configured project's `ik_live_` key granted `project/*`.
    pub fn api_key(&self) -> &str {
        &self.credentials.api_key
    }

    /// All credentials of the configured project.
    pub fn credentials(&self) -> &ProjectCredentials {
        &self.credentials
    }

    pub fn config(&self) -> &LocalConfig {
        &self.app.config
    }

    /// Adds a project (its name is canonicalised into a slug; a name without ASCII
    /// letters or digits becomes `project`) and returns its credentials; for an
    /// existing project, returns its current credentials.
    pub fn add_project(&self, name: &str) -> ProjectCredentials {
        let slug = canonical_slug(name);
        let slug = if slug.is_empty() {
            "project".to_owned()
        } else {
            slug
        };
        let credentials = self.app.registry().ensure_project(&slug);
        self.app.save();
        credentials
    }

    /// Mints an `ik_live_` key for the configured project with the given grants, each
    /// `project/workload` or `project/*`.
    pub fn mint_api_key(&self, grants: &[&str]) -> String {
        self.mint_api_key_in(self.project(), grants)
    }

    /// Mints an `ik_live_` key belonging to `project` with the given grants.
    pub fn mint_api_key_in(&self, project: &str, grants: &[&str]) -> String {
        self.mint(TokenRecord::mint_live(project, grants))
    }

    /// Mints an `ik_sdk_` token for `project` with the given scopes
    /// (`workload:read`, `workload:write`, `assignment:write`).
    pub fn mint_sdk_token(&self, project: &str, scopes: &[&str]) -> String {
        self.mint(TokenRecord::mint_sdk(project, scopes))
    }

    fn mint(&self, record: TokenRecord) -> String {
        let token = record.token.clone();
        self.app.registry().tokens.push(record);
        self.app.save();
        token
    }

    /// Revokes a token: a control token then gets 403 `scope_insufficient`, a data key
    /// 401. Returns whether the token was known.
    pub fn revoke(&self, token: &str) -> bool {
        let found = {
            let mut registry = self.app.registry();
            match registry.tokens.iter_mut().find(|t| t.token == token) {
                Some(t) => {
                    t.revoked = true;
                    true
                }
                None => false,
            }
        };
        if found {
            tracing::info!(token = %redact_token(token), "token revoked");
            self.app.save();
        }
        found
    }

    /// A snapshot of every workload of every project, in creation order.
    pub fn workloads(&self) -> Vec<Workload> {
        self.app
            .registry()
            .workloads
            .iter()
            .map(|w| w.record.clone())
            .collect()
    }

    /// The current readiness phase and message of a workload.
    pub fn phase(&self, project: &str, slug: &str) -> Option<(Phase, String)> {
        let registry = self.app.registry();
        let index = registry.find_by_slug(project, slug)?;
        let state = registry.workloads[index].phase();
        Some((state.phase, state.message))
    }

    /// Stops accepting connections, ends open streams, stops the processes of
    /// command-mode workloads, and waits (at most 10 s) for connections to close.
    pub async fn shutdown(mut self) {
        self.app.shutdown.cancel();
        let processes = self.take_processes();
        futures_util::future::join_all(processes.iter().map(|p| p.stop())).await;
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(10), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl LocalPlatform {
    /// Takes every command-mode process out of the registry; the workloads stay.
    fn take_processes(&self) -> Vec<Arc<command::RunningWorkload>> {
        self.app
            .registry()
            .workloads
            .iter_mut()
            .filter_map(WorkloadEntry::take_process)
            .collect()
    }
}

impl Drop for LocalPlatform {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
        // Without waiting: each watchdog stops its process group once the last handle
        // of its process is gone.
        drop(self.take_processes());
    }
}
