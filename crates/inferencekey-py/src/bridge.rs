//! Runs core futures on the shared runtime for asyncio callers and blocking callers.
//!
//! Every network method of the native classes returns an [`Operation`]: a future that has
//! not started yet. Python then either
//!
//! - calls `start(loop, on_done)`: the future is spawned on the runtime and, when it
//!   completes, `on_done(ok, value)` is scheduled on the event loop with
//!   `call_soon_threadsafe` (skipped when the loop is already closed). `cancel()` aborts
//!   the spawned task, which drops the future and with it any open connection; or
//! - calls `wait()`: the future is spawned and the calling thread waits for it with the
//!   GIL released, in short slices between which pending signals are handled. A
//!   `KeyboardInterrupt` (or any exception raised by a signal handler) aborts the task.
//!
//! Nothing runs before `start` or `wait`, so an operation that is never awaited never
//! sends a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use inferencekey_core::Error;
use pyo3::prelude::*;
use tokio::task::AbortHandle;

use crate::{errors, exit, runtime};

/// Turns the Rust output of a finished future into a Python object, with the GIL held.
pub(crate) type Finish = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
type Work = Pin<Box<dyn Future<Output = Result<Finish, Error>> + Send>>;

/// How often a blocking wait wakes up to let Python handle signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// A not-yet-started native call; see the module documentation.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct Operation {
    work: Mutex<Option<Work>>,
    task: Mutex<Option<AbortHandle>>,
}

impl Operation {
    pub(crate) fn new<F>(future: F) -> Self
    where
        F: Future<Output = Result<Finish, Error>> + Send + 'static,
    {
        Operation {
            work: Mutex::new(Some(Box::pin(future))),
            task: Mutex::new(None),
        }
    }

    fn take(&self, py: Python<'_>) -> PyResult<Work> {
        self.work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| errors::api(py, "this operation was already started"))
    }
}

fn finish(py: Python<'_>, out: Result<Finish, Error>) -> PyResult<Py<PyAny>> {
    match out {
        Ok(f) => f(py),
        Err(e) => Err(errors::to_py(py, &e)),
    }
}

#[pymethods]
impl Operation {
    /// Starts the call; `on_done(ok, value)` runs on `loop` when it finishes.
    fn start(&self, py: Python<'_>, r#loop: Py<PyAny>, on_done: Py<PyAny>) -> PyResult<()> {
        let work = self.take(py)?;
        let rt = runtime::get().map_err(|e| errors::api(py, &format!("no async runtime: {e}")))?;
        let handle = rt.spawn(async move {
            let out = work.await;
            // During interpreter shutdown there is nobody left to tell.
            exit::with_python(move |py| deliver(py, r#loop, on_done, out));
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.abort_handle());
        Ok(())
    }

    /// Aborts a started call (its connection is closed); a no-op once it has finished.
    fn cancel(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Runs the call to completion on this thread, without holding the GIL, handling
    /// signals every few tens of milliseconds.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let work = self.take(py)?;
        let rt = runtime::get().map_err(|e| errors::api(py, &format!("no async runtime: {e}")))?;
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = rt.spawn(async move {
            let _ = tx.send(work.await);
        });
        let task = handle.abort_handle();
        let mut rx = rx;
        loop {
            // The receiver is moved in and out because it is not `Sync`.
            let (got, back) = py.detach(move || (rx.recv_timeout(SIGNAL_SLICE), rx));
            rx = back;
            match got {
                Ok(out) => return finish(py, out),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        task.abort();
                        return Err(interrupt);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(errors::api(
                        py,
                        "the call was dropped before it finished (runtime shutting down)",
                    ));
                }
            }
        }
    }
}

/// Takes the Python handles by value so they are released here, with the GIL held:
/// a handle dropped on a runtime thread without it would wait in PyO3's deferred pool,
/// keeping the result (an open stream, say) alive until some later call.
fn deliver(py: Python<'_>, r#loop: Py<PyAny>, on_done: Py<PyAny>, out: Result<Finish, Error>) {
    let (ok, value) = match finish(py, out) {
        Ok(v) => (true, v),
        Err(e) => (false, e.into_value(py).into_any()),
    };
    let event_loop = r#loop.bind(py);
    let closed = event_loop
        .call_method0("is_closed")
        .and_then(|c| c.is_truthy())
        .unwrap_or(true);
    if closed {
        return;
    }
    // The loop may close between the check and the call: that RuntimeError is expected
    // and means nobody is waiting any more.
    let _ = event_loop.call_method1("call_soon_threadsafe", (on_done, ok, value));
}
