//! Control plane: `ensure` with the drift planner, `delete`, readiness following.
//!
//! CONTRACT STUB — signatures agreed with the bindings; bodies to be implemented.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::ClientOptions;
use crate::error::Result;
use crate::wire::{ReadinessEvent, Workload};

/// What a workload should look like; keyed by its canonical `slug`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadSpec {
    pub name: String,
    pub slug: String,
    pub model: String,
    pub backend: String,
    pub task_type: Option<String>,
    pub description: Option<String>,
    pub project: Option<String>,
    pub command: Option<String>,
    pub vllm_version: Option<String>,
    pub config: Option<Map<String, Value>>,
    pub worker_id: Option<String>,
    pub gpu_resource_id: Option<String>,
    pub execution_policy: Option<String>,
    pub execution_policy_config: Option<Value>,
}

/// What `ensure` does about drift (PROTOCOL.md §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnDrift {
    #[default]
    Reconcile,
    Fail,
    DryRun,
    Warn,
    Ignore,
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnsureAction {
    Created,
    Unchanged,
    Updated,
    DriftIgnored,
    Planned,
}

/// One planned change: the field, its live value and the desired value.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftEntry {
    pub field: String,
    pub live: Value,
    pub desired: Value,
    /// `false` for `task_type`, which cannot be patched.
    pub patchable: bool,
}

/// The result of `ensure`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRef {
    pub project_slug: String,
    pub workload_slug: String,
    pub action: EnsureAction,
    pub plan: Vec<DriftEntry>,
}

/// The control-plane client. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ManagementClient {}

/// Builder for [`ManagementClient`]: explicit values win over the environment.
#[derive(Debug, Clone, Default)]
pub struct ManagementClientBuilder {}

impl ManagementClientBuilder {
    pub fn base_url(self, _url: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn project(self, _project: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn sdk_token(self, _token: impl Into<String>) -> Self {
        unimplemented!()
    }
    pub fn options(self, _options: ClientOptions) -> Self {
        unimplemented!()
    }
    pub fn build(self) -> Result<ManagementClient> {
        unimplemented!()
    }
}

impl ManagementClient {
    pub fn builder() -> ManagementClientBuilder {
        ManagementClientBuilder::default()
    }
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }
    pub fn base_url(&self) -> &str {
        unimplemented!()
    }
    pub fn project(&self) -> Option<&str> {
        unimplemented!()
    }
    pub async fn list(&self, _project: Option<&str>) -> Result<Vec<Workload>> {
        unimplemented!()
    }
    pub async fn ensure(
        &self,
        _spec: &WorkloadSpec,
        _on_drift: OnDrift,
        _project: Option<&str>,
    ) -> Result<EndpointRef> {
        unimplemented!()
    }
    pub async fn delete(&self, _workload_slug: &str, _project: Option<&str>) -> Result<bool> {
        unimplemented!()
    }
    /// Follows the readiness stream (reconnecting per §3.5) until a terminal event.
    pub fn readiness(
        &self,
        _workload_slug: &str,
        _project: Option<&str>,
    ) -> Result<ReadinessFollower> {
        unimplemented!()
    }
    pub async fn wait_until_ready(
        &self,
        _workload_slug: &str,
        _project: Option<&str>,
        _timeout: Duration,
        _on_event: impl FnMut(&ReadinessEvent) + Send,
    ) -> Result<()> {
        unimplemented!()
    }
}

/// A readiness stream that reconnects on interruption and ends after `ready`
/// (yielding it) or fails on `error`.
#[derive(Debug)]
pub struct ReadinessFollower {}

impl ReadinessFollower {
    /// The next event; `None` after the terminal `ready` was returned. An `error` event
    /// is returned as `Err` with the server's message.
    pub async fn next(&mut self) -> Option<Result<ReadinessEvent>> {
        unimplemented!()
    }
}
