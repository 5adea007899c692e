//! The state shared by every route: configuration, registry, shutdown signal.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::config::LocalConfig;
use crate::persist::{Snapshot, StateFile, StoredProject};
use crate::registry::Registry;

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: LocalConfig,
    registry: Mutex<Registry>,
    /// Cancelled at shutdown; every streaming body watches it and ends.
    pub(crate) shutdown: CancellationToken,
    /// Client for upstream workloads.
    pub(crate) http: reqwest::Client,
    /// Counters of the fault layer (used only when faults are enabled).
    pub(crate) faults: crate::faults::FaultState,
    /// Connections accepted and not yet closed, as seen by the server.
    pub(crate) open_connections: Arc<AtomicUsize>,
    state_file: Option<StateFile>,
    generation: AtomicU64,
}

impl App {
    pub(crate) fn new(
        config: LocalConfig,
        registry: Registry,
        http: reqwest::Client,
        state_file: Option<StateFile>,
        open_connections: Arc<AtomicUsize>,
    ) -> Self {
        App {
            config,
            registry: Mutex::new(registry),
            shutdown: CancellationToken::new(),
            http,
            faults: crate::faults::FaultState::default(),
            open_connections,
            state_file,
            generation: AtomicU64::new(0),
        }
    }

    /// The registry. A panic while it was held cannot leave it inconsistent in a way
    /// that matters to an emulator, so poisoning is ignored.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists the registry after a change, when a state file is configured.
    pub(crate) fn save(&self) {
        let Some(file) = &self.state_file else {
            return;
        };
        let (generation, snapshot) = {
            let registry = self.registry();
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            (generation, snapshot_of(&registry))
        };
        if let Err(e) = file.save(generation, &snapshot) {
            tracing::error!(error = %e, "could not write the state file");
        }
    }
}

pub(crate) fn snapshot_of(registry: &Registry) -> Snapshot {
    Snapshot {
        projects: registry
            .projects
            .iter()
            .map(|p| StoredProject {
                id: p.id.clone(),
                slug: p.slug.clone(),
            })
            .collect(),
        tokens: registry.tokens.clone(),
        workloads: registry
            .workloads
            .iter()
            .map(|w| w.record.clone())
            .collect(),
    }
}
