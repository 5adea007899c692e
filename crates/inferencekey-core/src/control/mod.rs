//! Control plane: `ensure` with the drift planner, `delete`, readiness following.

mod plan;
mod readiness;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde_json::{Map, Value};

use crate::config::{self, ClientOptions};
use crate::error::{Error, Result};
use crate::transport::{self, Call, RetryClass, Transport, malformed};
use crate::wire::{self, ReadinessEvent, TokenKind, Workload, codes, redact_token};

/// What a workload should look like; keyed by its canonical `slug`.
///
/// `None` (or an empty `config`) means "not declared": `ensure` leaves the live value
/// as it is. `name`, `backend` and `model` are always compared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadSpec {
    pub name: String,
    pub slug: String,
    /// The model the backend serves; sent as `model_name`.
    pub model: String,
    pub backend: String,
    /// Sent on create (default `text2text`); immutable afterwards.
    pub task_type: Option<String>,
    pub description: Option<String>,
    /// Picks the project when `ensure` is not given one explicitly.
    pub project: Option<String>,
    /// Overlaid on `config` as `config.command`.
    pub command: Option<String>,
    /// Overlaid on `config` as `config.vllm_version`.
    pub vllm_version: Option<String>,
    /// Backend launch settings; compared over its declared keys only.
    pub config: Option<Map<String, Value>>,
    pub worker_id: Option<String>,
    pub gpu_resource_id: Option<String>,
    pub execution_policy: Option<String>,
    /// Compared as a whole object.
    pub execution_policy_config: Option<Value>,
}

/// What `ensure` does about drift (PROTOCOL.md §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnDrift {
    /// Create when absent, PATCH drift. A non-patchable change is a validation error.
    #[default]
    Reconcile,
    /// Create when absent; drift is a validation error naming the fields.
    Fail,
    /// Never send anything that changes state: return the plan as `Planned`.
    DryRun,
    /// Create when absent; log drift with `tracing::warn!` and leave it.
    Warn,
    /// Create when absent; leave drift silently.
    Ignore,
}

impl fmt::Display for OnDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OnDrift {
    type Err = Error;

    /// Parses the snake_case name (`reconcile`, `fail`, `dry_run`, `warn`, `ignore`),
    /// case-insensitively; `-` is accepted for `_`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "reconcile" => Ok(OnDrift::Reconcile),
            "fail" => Ok(OnDrift::Fail),
            "dry_run" => Ok(OnDrift::DryRun),
            "warn" => Ok(OnDrift::Warn),
            "ignore" => Ok(OnDrift::Ignore),
            _ => Err(Error::validation(format!(
                "unknown on_drift {s:?}: expected reconcile, fail, dry_run, warn or ignore"
            ))),
        }
    }
}

impl OnDrift {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Reconcile => "reconcile",
            OnDrift::Fail => "fail",
            OnDrift::DryRun => "dry_run",
            OnDrift::Warn => "warn",
            OnDrift::Ignore => "ignore",
        }
    }
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

impl fmt::Display for EnsureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EnsureAction {
    /// The snake_case name (`created`, `unchanged`, `updated`, `drift_ignored`, `planned`).
    pub fn as_str(self) -> &'static str {
        match self {
            EnsureAction::Created => "created",
            EnsureAction::Unchanged => "unchanged",
            EnsureAction::Updated => "updated",
            EnsureAction::DriftIgnored => "drift_ignored",
            EnsureAction::Planned => "planned",
        }
    }
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
    /// The project used in the path.
    pub project_slug: String,
    /// The stored slug (from the create response), or the would-be canonical slug.
    pub workload_slug: String,
    pub action: EnsureAction,
    /// Empty unless there was drift.
    pub plan: Vec<DriftEntry>,
}

struct Inner {
    transport: Arc<Transport>,
    project: Option<String>,
    token: Arc<str>,
}

/// The control-plane client. Cheap to clone; clones share one connection pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> inferencekey_core::Result<()> {
/// use std::time::Duration;
/// use inferencekey_core::{EnsureAction, ManagementClient, OnDrift, WorkloadSpec};
/// # let platform = inferencekey_local::LocalPlatform::start(Default::default()).await.unwrap();
/// # let (base_url, project, sdk_token) =
/// #     (platform.base_url(), platform.project(), platform.sdk_token());
///
/// // Or `ManagementClient::from_env()` with the INFERENCEKEY_* variables.
/// let mgmt = ManagementClient::builder()
///     .base_url(base_url)
///     .project(project)
///     .sdk_token(sdk_token)
///     .build()?;
/// let spec = WorkloadSpec {
///     name: "Triage bot".into(),
///     slug: "triage-bot".into(),
///     model: "Qwen/Qwen2.5-0.5B-Instruct".into(),
///     backend: "vllm".into(),
///     command: Some("vllm serve Qwen/Qwen2.5-0.5B-Instruct".into()),
///     ..WorkloadSpec::default()
/// };
/// let ep = mgmt.ensure(&spec, OnDrift::Reconcile, None).await?;
/// assert_eq!(ep.action, EnsureAction::Created);
/// mgmt.wait_until_ready(&ep.workload_slug, None, Duration::from_secs(60), |event| {
///     println!("{}: {}", event.phase, event.message);
/// })
/// .await?;
/// // Ensuring again is a no-op.
/// let again = mgmt.ensure(&spec, OnDrift::Reconcile, None).await?;
/// assert_eq!(again.action, EnsureAction::Unchanged);
/// assert!(mgmt.delete("triage-bot", None).await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ManagementClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementClient")
            .field("base_url", &self.inner.transport.base_url())
            .field("project", &self.inner.project)
            .field("sdk_token", &redact_token(&self.inner.token))
            .finish()
    }
}

/// Builder for [`ManagementClient`]: explicit values win over the environment.
#[derive(Clone, Default)]
pub struct ManagementClientBuilder {
    base_url: Option<String>,
    project: Option<String>,
    sdk_token: Option<String>,
    options: Option<ClientOptions>,
}

impl fmt::Debug for ManagementClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementClientBuilder")
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .field("sdk_token", &self.sdk_token.as_deref().map(redact_token))
            .field("options", &self.options)
            .finish()
    }
}

impl ManagementClientBuilder {
    /// Default: `INFERENCEKEY_BASE_URL`, else the production URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// Default: `INFERENCEKEY_PROJECT`. Operations may also name a project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
    /// Default: `INFERENCEKEY_SDK_TOKEN`.
    pub fn sdk_token(mut self, token: impl Into<String>) -> Self {
        self.sdk_token = Some(token.into());
        self
    }
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = Some(options);
        self
    }
    /// Resolves the configuration; a missing token or a bad base URL is a
    /// configuration error. No request is made.
    pub fn build(self) -> Result<ManagementClient> {
        let base_url = config::resolve_base_url(self.base_url)?;
        let token = config::resolve(self.sdk_token, config::ENV_SDK_TOKEN)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::configuration(format!(
                    "no SDK token: pass one or set {}",
                    config::ENV_SDK_TOKEN
                ))
            })?;
        let project = match config::resolve(self.project, config::ENV_PROJECT) {
            Some(p) => Some(config::checked_project(&p)?),
            None => None,
        };
        let transport = Transport::new(base_url, self.options.unwrap_or_default())?;
        Ok(ManagementClient {
            inner: Arc::new(Inner {
                transport: Arc::new(transport),
                project,
                token: token.into(),
            }),
        })
    }
}

impl ManagementClient {
    pub fn builder() -> ManagementClientBuilder {
        ManagementClientBuilder::default()
    }

    /// A client configured from the `INFERENCEKEY_*` environment variables alone.
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }

    /// The normalised base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.inner.transport.base_url()
    }

    /// The client's default project, if any.
    pub fn project(&self) -> Option<&str> {
        self.inner.project.as_deref()
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        self.inner.transport.options()
    }

    /// The token's kind is checked locally before every operation, so that a data key
    /// never travels to the control plane.
    fn check_token(&self) -> Result<()> {
        match wire::token_kind(&self.inner.token) {
            Some(TokenKind::Sdk) => Ok(()),
            Some(TokenKind::Live) => Err(Error::new(
                crate::ErrorKind::Permission,
                format!(
                    "the management client needs an SDK token (ik_sdk_…), got a data key {}",
                    redact_token(&self.inner.token)
                ),
            )
            .with_code(codes::WRONG_CREDENTIAL_TYPE)),
            None => Err(Error::configuration(format!(
                "the SDK token {} does not start with ik_sdk_",
                redact_token(&self.inner.token)
            ))),
        }
    }

    /// The project for an operation: explicit argument > client project.
    fn project_for(&self, explicit: Option<&str>) -> Result<String> {
        match explicit.or(self.inner.project.as_deref()) {
            Some(p) => config::checked_project(p),
            None => Err(Error::configuration(format!(
                "no project: pass one or set {}",
                config::ENV_PROJECT
            ))),
        }
    }

    fn call(&self, method: Method, path: String, class: RetryClass) -> Call<'_> {
        Call::new(method, path, &self.inner.token, class)
    }

    /// Lists the project's workloads; entries that cannot be parsed are skipped.
    pub async fn list(&self, project: Option<&str>) -> Result<Vec<Workload>> {
        self.check_token()?;
        let project = self.project_for(project)?;
        self.list_in(&project).await
    }

    async fn list_in(&self, project: &str) -> Result<Vec<Workload>> {
        let path = transport::path(&["api", "projects", project, "workloads"]);
        let call = self.call(Method::GET, path, RetryClass::Idempotent);
        let resp = self.inner.transport.send(&call).await?;
        let (list, skipped) = wire::decode_workload_list(&resp.body).map_err(|e| {
            malformed(format!(
                "the workload list of project '{project}' could not be decoded: {e}"
            ))
        })?;
        if skipped > 0 {
            tracing::debug!(
                project,
                skipped,
                "skipped workloads that could not be parsed"
            );
        }
        Ok(list)
    }

    /// Makes the workload match `spec` (PROTOCOL.md §5), idempotent by canonical slug.
    ///
    /// The project is `project`, else `spec.project`, else the client's. The spec and
    /// token are validated before any request.
    pub async fn ensure(
        &self,
        spec: &WorkloadSpec,
        on_drift: OnDrift,
        project: Option<&str>,
    ) -> Result<EndpointRef> {
        let slug = plan::validate(spec)?;
        self.check_token()?;
        let project = self.project_for(project.or(spec.project.as_deref()))?;
        let live = self
            .list_in(&project)
            .await?
            .into_iter()
            .find(|w| w.slug == slug);
        let Some(live) = live else {
            if on_drift == OnDrift::DryRun {
                return Ok(EndpointRef {
                    project_slug: project,
                    workload_slug: slug,
                    action: EnsureAction::Planned,
                    plan: Vec::new(),
                });
            }
            let stored = self.create(&project, spec, &slug).await?;
            return Ok(EndpointRef {
                project_slug: project,
                workload_slug: stored,
                action: EnsureAction::Created,
                plan: Vec::new(),
            });
        };
        let drift = plan::plan(spec, &live);
        let reference = |action, plan| EndpointRef {
            project_slug: project.clone(),
            workload_slug: live.slug.clone(),
            action,
            plan,
        };
        if drift.is_empty() {
            return Ok(reference(EnsureAction::Unchanged, drift));
        }
        let fields = drift
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let non_patchable: Vec<&DriftEntry> = drift.iter().filter(|e| !e.patchable).collect();
        match on_drift {
            OnDrift::DryRun => Ok(reference(EnsureAction::Planned, drift)),
            OnDrift::Ignore => Ok(reference(EnsureAction::DriftIgnored, drift)),
            OnDrift::Warn => {
                tracing::warn!(
                    project = %project,
                    workload = %live.slug,
                    fields = %fields,
                    "workload drifted from its spec; leaving it as is"
                );
                Ok(reference(EnsureAction::DriftIgnored, drift))
            }
            OnDrift::Fail => Err(Error::validation(format!(
                "workload '{}' in project '{project}' drifted from its spec: {fields}",
                live.slug
            ))
            .with_code(codes::DRIFT_DETECTED)),
            OnDrift::Reconcile if !non_patchable.is_empty() => {
                let what = non_patchable
                    .iter()
                    .map(|e| format!("{} (live {}, desired {})", e.field, e.live, e.desired))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(Error::validation(format!(
                    "workload '{}' in project '{project}' differs in fields that cannot be \
                     changed after creation: {what}; delete and recreate it",
                    live.slug
                ))
                .with_code(codes::DRIFT_DETECTED))
            }
            OnDrift::Reconcile => {
                let body = plan::patch_body(&drift);
                let path = transport::path(&["api", "workloads", &live.id]);
                let call = self
                    .call(Method::PATCH, path, RetryClass::Idempotent)
                    .json(&body)?;
                self.inner.transport.send(&call).await?;
                Ok(reference(EnsureAction::Updated, drift))
            }
        }
    }

    /// POSTs the workload; returns the slug the server stored.
    async fn create(&self, project: &str, spec: &WorkloadSpec, slug: &str) -> Result<String> {
        let body = plan::create_body(spec, slug);
        let path = transport::path(&["api", "projects", project, "workloads"]);
        let call = self
            .call(Method::POST, path, RetryClass::Create)
            .json(&body)?;
        let resp = self.inner.transport.send(&call).await?;
        // Any 2xx is a success; a body without a usable slug still means the workload
        // exists, under the slug we asked for.
        match serde_json::from_slice::<Workload>(&resp.body) {
            Ok(w) if !w.slug.is_empty() => Ok(w.slug),
            _ => {
                tracing::debug!(
                    project,
                    slug,
                    "create response carried no workload; using the requested slug"
                );
                Ok(slug.to_owned())
            }
        }
    }

    /// Deletes the workload with this (canonicalised) slug. `Ok(false)` when it did not
    /// exist, `Ok(true)` when it was deleted.
    pub async fn delete(&self, workload_slug: &str, project: Option<&str>) -> Result<bool> {
        let slug = wire::canonical_slug(workload_slug);
        if slug.is_empty() {
            return Err(Error::validation(
                "the workload slug is blank or has no ASCII letter or digit",
            ));
        }
        self.check_token()?;
        let project = self.project_for(project)?;
        let Some(live) = self
            .list_in(&project)
            .await?
            .into_iter()
            .find(|w| w.slug == slug)
        else {
            return Ok(false);
        };
        let path = transport::path(&["api", "workloads", &live.id]);
        let call = self.call(Method::DELETE, path, RetryClass::Idempotent);
        match self.inner.transport.send(&call).await {
            Ok(_) => Ok(true),
            // Deleted by someone else between the list and the DELETE.
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Follows the readiness stream (reconnecting per §3.5) until a terminal event.
    /// The slug is canonicalised, as in `ensure` and `delete`.
    ///
    /// No request is made until the follower is polled. It has no deadline of its own:
    /// wrap it in one, or use [`wait_until_ready`](Self::wait_until_ready). A connection
    /// silent for [`stream_idle_timeout`](ClientOptions::stream_idle_timeout) (not even a
    /// keepalive comment) counts as an interruption and is reopened.
    pub fn readiness(
        &self,
        workload_slug: &str,
        project: Option<&str>,
    ) -> Result<ReadinessFollower> {
        let slug = wire::canonical_slug(workload_slug);
        if slug.is_empty() {
            return Err(Error::validation(
                "the workload slug is blank or has no ASCII letter or digit",
            ));
        }
        self.check_token()?;
        let project = self.project_for(project)?;
        let path = transport::path(&[
            "api",
            "projects",
            &project,
            "workloads",
            &slug,
            "readiness-events",
        ]);
        let follow = readiness::Follow::new(
            self.inner.transport.clone(),
            self.inner.token.clone(),
            path,
            slug.clone(),
        );
        Ok(ReadinessFollower {
            inner: follow.into_stream(),
            slug,
        })
    }

    /// Waits until the workload is `ready`, calling `on_event` for every event before
    /// it (and for `ready`). Fails with the server's message on `error`, and with an
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error once `timeout` has passed,
    /// even while a read is blocked or a reconnect is waiting.
    pub async fn wait_until_ready(
        &self,
        workload_slug: &str,
        project: Option<&str>,
        timeout: Duration,
        mut on_event: impl FnMut(&ReadinessEvent) + Send,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut follower = self.readiness(workload_slug, project)?;
        let follow = async {
            while let Some(item) = follower.next().await {
                let event = item?;
                on_event(&event);
                if event.phase == wire::Phase::Ready {
                    return Ok(());
                }
            }
            Err(Error::api(
                "the readiness stream ended without a terminal event",
            ))
        };
        match tokio::time::timeout_at(deadline, follow).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(format!(
                "workload '{}' was not ready within {:.1} s",
                wire::canonical_slug(workload_slug),
                timeout.as_secs_f64()
            ))),
        }
    }
}

/// A readiness stream that reconnects on interruption and ends after `ready`
/// (yielding it) or fails on `error`.
///
/// It is `Send + 'static` (it owns a handle on the client's connection pool) and also a
/// [`Stream`], so it can be driven from any task.
pub struct ReadinessFollower {
    inner: readiness::EventStream,
    slug: String,
}

impl fmt::Debug for ReadinessFollower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadinessFollower")
            .field("workload_slug", &self.slug)
            .finish_non_exhaustive()
    }
}

impl ReadinessFollower {
    /// The next event; `None` after the terminal `ready` was returned. An `error` event
    /// is returned as `Err` with the server's message.
    pub async fn next(&mut self) -> Option<Result<ReadinessEvent>> {
        self.inner.next().await
    }
}

impl Stream for ReadinessFollower {
    type Item = Result<ReadinessEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_drift_names_round_trip() {
        for d in [
            OnDrift::Reconcile,
            OnDrift::Fail,
            OnDrift::DryRun,
            OnDrift::Warn,
            OnDrift::Ignore,
        ] {
            assert_eq!(d.to_string().parse::<OnDrift>().unwrap(), d);
        }
        assert_eq!("DRY-RUN".parse::<OnDrift>().unwrap(), OnDrift::DryRun);
        assert_eq!(
            "merge".parse::<OnDrift>().unwrap_err().kind(),
            crate::ErrorKind::Validation
        );
        assert_eq!(EnsureAction::DriftIgnored.to_string(), "drift_ignored");
    }
}
