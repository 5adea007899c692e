//! The one tokio runtime of the process, rebuilt in a forked child.
//!
//! A runtime inherited through `fork` has no worker threads left in the child: anything
//! spawned on it would wait forever. The runtime is therefore tagged with the process id
//! that built it, and a child that finds a foreign id builds its own. The parent's
//! runtime is leaked on purpose: dropping it would try to join threads that do not exist
//! in this process.

use std::sync::{Arc, Mutex};

use tokio::runtime::{Builder, Runtime};

struct Owned {
    pid: u32,
    runtime: Arc<Runtime>,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// The runtime of this process, built on first use (and again after a fork).
pub(crate) fn get() -> std::io::Result<Arc<Runtime>> {
    let pid = std::process::id();
    // A lock poisoned by a panic elsewhere still guards a consistent Option.
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(owned) = slot.as_ref() {
        if owned.pid == pid {
            return Ok(owned.runtime.clone());
        }
    }
    let runtime = Arc::new(
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("inferencekey-io")
            .enable_all()
            .build()?,
    );
    if let Some(stale) = slot.replace(Owned {
        pid,
        runtime: runtime.clone(),
    }) {
        std::mem::forget(stale);
    }
    Ok(runtime)
}
