//! Keeping runtime threads out of the interpreter while it shuts down.
//!
//! A runtime thread that is inside a Python call when finalization starts (for example
//! in `call_soon_threadsafe`, which releases the GIL around its socket write) is killed
//! by the interpreter with `pthread_exit` when it tries to take the GIL back, and that
//! forced unwind through Rust frames aborts the process. So every entry into Python
//! from a runtime thread goes through [`with_python`], and an `atexit` hook
//! ([`before_exit`]) closes that door and waits for the threads already inside.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static EXITING: AtomicBool = AtomicBool::new(false);
static INSIDE: AtomicUsize = AtomicUsize::new(0);

struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` attached to the interpreter, unless it is shutting down.
pub(crate) fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    if EXITING.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Registered with `atexit`: refuses new entries from runtime threads, then waits (at
/// most two seconds, without the GIL) for those already inside to leave.
#[pyfunction]
pub(crate) fn before_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + Duration::from_secs(2);
        while INSIDE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
