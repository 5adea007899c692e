//! Readiness: the simulated phases of a workload and the SSE stream that reports them
//! (PROTOCOL.md §3.5).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use inferencekey_core::wire::{Phase, ReadinessEvent, Workload};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::App;
use crate::auth;
use crate::command::CommandRunner;
use crate::config::LocalConfig;
use crate::credentials::{Kind, SCOPE_WORKLOAD_READ};
use crate::error::ApiError;
use crate::registry::{Readiness, ReadinessLog, WorkloadEntry};
use crate::supervisor::{self, Job, ProcessSlot};

/// The message a workload fails with, if it is set up to fail: `config.simulate_failure`
/// (a string, or any other non-false value for a generic message), or a slug listed in
/// [`LocalConfig::failing_slugs`].
pub(crate) fn simulated_failure(config: &LocalConfig, workload: &Workload) -> Option<String> {
    let generic = || format!("simulated failure of workload '{}'", workload.slug);
    match workload
        .config
        .as_ref()
        .and_then(|c| c.get("simulate_failure"))
    {
        Some(serde_json::Value::String(m)) if !m.trim().is_empty() => return Some(m.clone()),
        Some(serde_json::Value::Null | serde_json::Value::Bool(false)) | None => {}
        Some(_) => return Some(generic()),
    }
    config.failing_slugs.contains(&workload.slug).then(generic)
}

/// The phases a workload walks through, each with how long it lasts. The last one is
/// terminal.
fn stages(config: &LocalConfig, workload: &Workload) -> Vec<(Readiness, Duration)> {
    let t = &config.readiness;
    let boot = |step: &'static str, message: &str, d: Duration| {
        (
            Readiness {
                phase: Phase::Bootstrapping,
                message: message.to_owned(),
                step: Some(step),
            },
            d,
        )
    };
    let mut out = vec![(
        Readiness::new(Phase::Scheduling, "Picking a worker"),
        t.scheduling,
    )];
    if workload.worker_id.is_none() {
        out.push((
            Readiness::new(Phase::Provisioning, "Acquiring a GPU"),
            t.provisioning,
        ));
    }
    out.push(boot(
        "image_pull",
        "Pulling the runtime image",
        t.image_pull,
    ));
    if let Some(message) = simulated_failure(config, workload) {
        out.push((Readiness::new(Phase::Error, message), Duration::ZERO));
        return out;
    }
    out.push(boot(
        "weights_download",
        &format!("Downloading weights of {}", workload.model_name),
        t.weights_download,
    ));
    out.push(boot(
        "model_load",
        "Loading weights onto the GPU",
        t.model_load,
    ));
    out.push(boot(
        "health_check",
        "Waiting for the runtime to answer",
        t.health_check,
    ));
    out.push((
        Readiness::new(Phase::Ready, format!("Serving {}", workload.model_name)),
        Duration::ZERO,
    ));
    out
}

/// (Re)starts a workload's readiness at `scheduling`. With instant timings the terminal
/// phase is set before this returns, so the workload serves as soon as it is created.
///
/// In command mode the phases follow a real process instead (see [`supervisor`]); a
/// process of the run before is stopped first, in the background.
pub(crate) fn restart(config: &LocalConfig, entry: &mut WorkloadEntry) {
    let previous = entry.take_process();
    if let Some(command) = supervisor::command_of(config, &entry.record) {
        let run = entry.begin_run(Readiness::new(
            Phase::Scheduling,
            "Starting the workload's command on this machine",
        ));
        let slot = Arc::new(ProcessSlot::default());
        entry.command = Some(slot.clone());
        let job = Job {
            command,
            backend: entry.record.backend.clone(),
            model: entry.record.model_name.clone(),
            runner: CommandRunner::default(),
            start_timeout: config.command_start_timeout,
            slot,
            previous,
            readiness: entry.readiness.clone(),
            run,
        };
        entry.driver = Some(tokio::spawn(supervisor::drive(job)).abort_handle());
        return;
    }
    if let Some(previous) = previous {
        tokio::spawn(async move {
            previous.stop().await;
        });
    }
    let mut stages = stages(config, &entry.record);
    if config.readiness.is_instant() {
        if let Some((last, _)) = stages.pop() {
            entry.begin_run(last);
        }
        return;
    }
    let (first, first_for) = stages.remove(0);
    let run = entry.begin_run(first);
    let tx = entry.readiness.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(first_for).await;
        for (state, lasts) in stages {
            // A driver aborted a moment too late must not touch a newer run.
            let current = tx.send_if_modified(|log| {
                if log.run == run {
                    log.history.push(state);
                    true
                } else {
                    false
                }
            });
            if !current {
                return;
            }
            if !lasts.is_zero() {
                tokio::time::sleep(lasts).await;
            }
        }
    });
    entry.driver = Some(task.abort_handle());
}

/// Marks a workload whose state was loaded from disk: it was serving (or failing)
/// before, so it comes back in its terminal phase at once. A command-mode workload
/// starts its process again and walks the real phases.
pub(crate) fn restore(config: &LocalConfig, entry: &mut WorkloadEntry) {
    if supervisor::command_of(config, &entry.record).is_some() {
        restart(config, entry);
        return;
    }
    if let Some((last, _)) = stages(config, &entry.record).pop() {
        entry.begin_run(last);
    }
}

/// `GET /api/projects/{project}/workloads/{slug}/readiness-events`.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path((project, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rx = {
        let registry = app.registry();
        let token = auth::authenticate(&registry, &headers, Kind::Sdk)?;
        auth::same_project(token, &project)?;
        auth::scope(token, SCOPE_WORKLOAD_READ)?;
        let index = registry.find_by_slug(&project, &slug).ok_or_else(|| {
            ApiError::not_found(format!("no workload '{slug}' in project '{project}'"))
        })?;
        registry.workloads[index].readiness.subscribe()
    };
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(follow(
        rx,
        tx,
        app.config.keepalive_interval,
        app.shutdown.clone(),
    ));
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(body_rx)));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Writes the snapshot, then every later phase in order and keepalives while idle,
/// until a terminal event, the client leaving, or shutdown.
async fn follow(
    mut rx: watch::Receiver<ReadinessLog>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    keepalive: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let opened = Instant::now();
    let frame = |state: &Readiness| {
        let event = ReadinessEvent {
            phase: state.phase.clone(),
            message: state.message.clone(),
            elapsed_ms: u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            step: state.step.map(str::to_owned),
        };
        let json = serde_json::to_string(&event).unwrap_or_default();
        Bytes::from(format!("data: {json}\n\n"))
    };
    // The snapshot is the current phase alone; then the run is followed from there.
    let (mut run, mut sent, mut pending) = {
        let log = rx.borrow_and_update();
        (log.run, log.history.len(), vec![log.current().clone()])
    };
    loop {
        for state in pending.drain(..) {
            if tx.send(Ok(frame(&state))).await.is_err() || state.phase.is_terminal() {
                return;
            }
        }
        let mut next_keepalive = Instant::now() + keepalive;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let log = rx.borrow_and_update();
                    if log.run != run {
                        run = log.run;
                        sent = 0;
                    }
                    pending.extend(log.history[sent.min(log.history.len())..].iter().cloned());
                    sent = log.history.len();
                    break;
                }
                _ = tokio::time::sleep_until(next_keepalive) => {
                    if tx.send(Ok(Bytes::from_static(b": keepalive\n\n"))).await.is_err() {
                        return;
                    }
                    next_keepalive = Instant::now() + keepalive;
                }
            }
        }
    }
}
