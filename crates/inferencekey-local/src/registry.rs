//! The emulator's state: projects, tokens and workloads with their readiness.

use std::sync::Arc;

use inferencekey_core::wire::{Phase, Workload};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::command::RunningWorkload;
use crate::credentials::{
    ProjectCredentials, SCOPE_ASSIGNMENT_WRITE, SCOPE_WORKLOAD_READ, SCOPE_WORKLOAD_WRITE,
    TokenRecord, random_hex,
};
use crate::supervisor::ProcessSlot;

/// One published phase of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) phase: Phase,
    pub(crate) message: String,
    pub(crate) step: Option<&'static str>,
}

impl Readiness {
    pub(crate) fn new(phase: Phase, message: impl Into<String>) -> Self {
        Readiness {
            phase,
            message: message.into(),
            step: None,
        }
    }
}

/// The phases published since the workload last (re)started, newest last.
///
/// Readiness streams keep their place in `history`, so a phase that lasts less than a
/// stream takes to wake up is still sent: no change is ever skipped. A restart (or a
/// deletion) begins a new `run`, which streams notice and follow from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadinessLog {
    pub(crate) run: u64,
    pub(crate) history: Vec<Readiness>,
}

impl ReadinessLog {
    pub(crate) fn current(&self) -> &Readiness {
        // Never empty: every run starts with one entry.
        &self.history[self.history.len() - 1]
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) slug: String,
}

#[derive(Debug)]
pub(crate) struct WorkloadEntry {
    pub(crate) record: Workload,
    pub(crate) readiness: watch::Sender<ReadinessLog>,
    /// The task walking the phases, if they are still going by (in command mode, the
    /// task watching the process, as long as it runs).
    pub(crate) driver: Option<AbortHandle>,
    /// In command mode, where the current run keeps its process.
    pub(crate) command: Option<Arc<ProcessSlot>>,
}

impl WorkloadEntry {
    pub(crate) fn new(record: Workload) -> Self {
        let (readiness, _) = watch::channel(ReadinessLog {
            run: 0,
            history: vec![Readiness::new(Phase::Scheduling, "Picking a worker")],
        });
        WorkloadEntry {
            record,
            readiness,
            driver: None,
            command: None,
        }
    }

    /// Stops driving the current run and takes its process out, if it has one. The
    /// caller stops the process (or drops it, which stops it without waiting).
    pub(crate) fn take_process(&mut self) -> Option<Arc<RunningWorkload>> {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
        self.command.take().and_then(|slot| slot.close())
    }

    pub(crate) fn phase(&self) -> Readiness {
        self.readiness.borrow().current().clone()
    }

    /// Starts a new run whose history begins with `first`.
    pub(crate) fn begin_run(&self, first: Readiness) -> u64 {
        let mut run = 0;
        self.readiness.send_modify(|log| {
            log.run += 1;
            log.history = vec![first];
            run = log.run;
        });
        run
    }
}

impl Drop for WorkloadEntry {
    fn drop(&mut self) {
        // A process nobody stopped yet is stopped by its watchdog once its last handle
        // is gone.
        drop(self.take_process());
    }
}

/// Everything the emulator knows, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) projects: Vec<Project>,
    pub(crate) tokens: Vec<TokenRecord>,
    /// All workloads of all projects, in creation order.
    pub(crate) workloads: Vec<WorkloadEntry>,
}

impl Registry {
    pub(crate) fn project(&self, slug: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.slug == slug)
    }

    pub(crate) fn token(&self, token: &str) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.token == token)
    }

    /// Creates a project with a full SDK token, a read-only one and a wildcard key, or
    /// returns the existing project's first credentials of each sort.
    pub(crate) fn ensure_project(&mut self, slug: &str) -> ProjectCredentials {
        if self.project(slug).is_none() {
            self.projects.push(Project {
                id: format!("prj_{}", random_hex(4)),
                slug: slug.to_owned(),
            });
        }
        let sdk = self.find_or_mint(
            slug,
            |t| t.has_scope(SCOPE_WORKLOAD_WRITE),
            || {
                TokenRecord::mint_sdk(
                    slug,
                    &[
                        SCOPE_WORKLOAD_WRITE,
                        SCOPE_ASSIGNMENT_WRITE,
                        SCOPE_WORKLOAD_READ,
                    ],
                )
            },
        );
        let read_only = self.find_or_mint(
            slug,
            |t| t.has_scope(SCOPE_WORKLOAD_READ) && !t.has_scope(SCOPE_WORKLOAD_WRITE),
            || TokenRecord::mint_sdk(slug, &[SCOPE_WORKLOAD_READ]),
        );
        let wildcard = format!("{slug}/*");
        let api_key = self.find_or_mint(
            slug,
            |t| !t.revoked && t.grants.contains(&wildcard),
            || TokenRecord::mint_live(slug, &[&wildcard]),
        );
        ProjectCredentials {
            project: slug.to_owned(),
            sdk_token: sdk,
            read_only_token: read_only,
            api_key,
        }
    }

    fn find_or_mint(
        &mut self,
        project: &str,
        fits: impl Fn(&TokenRecord) -> bool,
        mint: impl FnOnce() -> TokenRecord,
    ) -> String {
        if let Some(t) = self
            .tokens
            .iter()
            .find(|t| t.project == project && !t.revoked && fits(t))
        {
            return t.token.clone();
        }
        let record = mint();
        let token = record.token.clone();
        self.tokens.push(record);
        token
    }

    /// The index of a workload in `project` by slug (exact, then canonical form).
    pub(crate) fn find_by_slug(&self, project: &str, slug: &str) -> Option<usize> {
        let pos = |s: &str| {
            self.workloads
                .iter()
                .position(|w| w.record.project_slug == project && w.record.slug == s)
        };
        pos(slug).or_else(|| pos(&inferencekey_core::wire::canonical_slug(slug)))
    }

    /// The index of a workload addressed by id (any project) or by slug within
    /// `project`, the caller's own project.
    pub(crate) fn find_by_id_or_slug(&self, project: &str, key: &str) -> Option<usize> {
        self.workloads
            .iter()
            .position(|w| w.record.id == key)
            .or_else(|| self.find_by_slug(project, key))
    }

    pub(crate) fn slug_taken(&self, project: &str, slug: &str) -> bool {
        self.workloads
            .iter()
            .any(|w| w.record.project_slug == project && w.record.slug == slug)
    }
}
