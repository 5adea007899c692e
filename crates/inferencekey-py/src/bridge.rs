//! Runs core futures on the shared runtime for asyncio callers and blocking callers.
//!
//! Every network method of the native classes returns an [`Operation`]: a future that has
//! not started yet. Python then either
//!
//! - calls `start(completions, future)` from a running event loop: the future is spawned
//!   on the runtime and its output, still a Rust value, is queued on the [`Completions`]
//!   of the loop's thread. The loop wakes once per batch of finished calls, through a
//!   socket it watches with `add_reader`, and `drain` builds the Python results and sets
//!   the asyncio futures, all on the loop's thread. Runtime threads never take the GIL on
//!   this path, so they never wait for the event loop, and a loop that is busy finishing
//!   calls keeps finding more of them without being woken again. `cancel()` aborts the
//!   spawned task, which drops the future and with it any open connection; or
//! - calls `wait()`: the call is handed to the runtime's thread and the calling thread
//!   waits for it with the GIL released (polling briefly first, then parked), in short
//!   slices between which pending signals are handled. A `KeyboardInterrupt` (or any
//!   exception raised by a signal handler) aborts the task. Whatever the calling thread
//!   allocated for the call is freed by the calling thread (see [`Blocking`]).
//!
//! Nothing runs before `start` or `wait`, so an operation that is never awaited never
//! sends a request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use inferencekey_core::Error;
use pyo3::intern;
use pyo3::prelude::*;

use crate::{errors, exit, runtime};

/// Turns the Rust output of a finished future into a Python object, with the GIL held.
pub(crate) type Finish = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
type Output = Result<Finish, Error>;
type Call = Pin<Box<dyn Future<Output = Output> + Send>>;
/// Builds the call's future, on the runtime's thread; only the first call returns one.
/// It is `FnMut` so that the emptied box can go back to the thread that allocated it.
type Work = Box<dyn FnMut() -> Option<Call> + Send>;

/// How often a blocking wait wakes up to let Python handle signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);
/// How long a blocking wait polls for its result before it sleeps.
const WAIT_SPIN: Duration = Duration::from_micros(100);

/// A lock whose holder panicked still guards consistent data here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A not-yet-started native call; see the module documentation.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct Operation {
    work: Mutex<Option<Work>>,
    started: Mutex<Option<Started>>,
}

/// What `cancel` needs to undo a `start`.
struct Started {
    task: runtime::Spawned,
    completions: Py<Completions>,
    id: u64,
}

impl Operation {
    /// A call whose future is built here.
    pub(crate) fn new<F>(future: F) -> Self
    where
        F: Future<Output = Output> + Send + 'static,
    {
        Self::deferred(move || future)
    }

    /// A call whose future `make` builds on the runtime's thread, where it lives.
    ///
    /// The future of a network call takes kilobytes, while `make` holds only the
    /// arguments: allocating the future here would put it on the heap of the calling
    /// thread, and glibc gives every thread that allocates a heap of its own (up to eight
    /// per core), so sixty-four threads making blocking calls would each keep one
    /// populated with futures.
    pub(crate) fn deferred<M, F>(make: M) -> Self
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = Output> + Send + 'static,
    {
        Self::deferred_keeping((), move |()| make())
    }

    /// Like [`Operation::deferred`], for arguments converted from Python on the calling
    /// thread: `make` reads them (copying what the future needs) and they stay with the
    /// work, which goes back to a thread holding the GIL once the call is done. So
    /// Python objects among them (strings read in place) are released with the GIL, and
    /// what the calling thread allocated is freed there.
    pub(crate) fn deferred_keeping<S, M, F>(state: S, make: M) -> Self
    where
        S: Send + 'static,
        M: FnOnce(&S) -> F + Send + 'static,
        F: Future<Output = Output> + Send + 'static,
    {
        let mut make = Some(make);
        let work: Work = Box::new(move || make.take().map(|m| Box::pin(m(&state)) as Call));
        Operation {
            work: Mutex::new(Some(work)),
            started: Mutex::new(None),
        }
    }

    fn take(&self, py: Python<'_>) -> PyResult<Work> {
        lock(&self.work)
            .take()
            .ok_or_else(|| errors::api(py, "this operation was already started"))
    }
}

fn finish(py: Python<'_>, out: Output) -> PyResult<Py<PyAny>> {
    match out {
        Ok(f) => f(py),
        Err(e) => Err(errors::to_py(py, &e)),
    }
}

fn no_runtime(py: Python<'_>, e: &std::io::Error) -> PyErr {
    errors::api(py, &format!("no async runtime: {e}"))
}

#[pymethods]
impl Operation {
    /// Starts the call; its result or exception is set on `future` (an asyncio future of
    /// the running loop) by `completions.drain()`.
    fn start(
        &self,
        py: Python<'_>,
        completions: Bound<'_, Completions>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        let work = self.take(py)?;
        let owner = completions.get();
        let id = owner.track(future);
        let delivery = Delivery {
            queue: owner.queue.clone(),
            id,
            work: Some(work),
            sent: false,
        };
        let spawned = runtime::spawn(async move {
            let mut delivery = delivery;
            let out = match delivery.work.as_mut() {
                Some(work) => run(work).await,
                None => Err(Error::api("this operation was already started")),
            };
            delivery.send(out);
        });
        let task = match spawned {
            Ok(task) => task,
            Err(e) => {
                // The error goes to the caller; the future is nobody's concern any more.
                drop(lock(&owner.pending).remove(&id));
                return Err(no_runtime(py, &e));
            }
        };
        *lock(&self.started) = Some(Started {
            task,
            completions: completions.unbind(),
            id,
        });
        Ok(())
    }

    /// Aborts a started call (its connection is closed); a no-op once it has finished.
    fn cancel(&self) {
        if let Some(started) = lock(&self.started).take() {
            started.task.abort();
            // Nobody waits for the future any more; an output already queued is dropped.
            let forgotten = lock(&started.completions.get().pending).remove(&started.id);
            drop(forgotten);
        }
    }

    /// Runs the call to completion on this thread, without holding the GIL, handling
    /// signals every few tens of milliseconds.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let work = self.take(py)?;
        let handoff = Arc::new(Handoff::default());
        let job = Blocking {
            work: Some(work),
            handoff: Some(handoff.clone()),
            caller: std::thread::current(),
        };
        runtime::submit(job).map_err(|e| no_runtime(py, &e))?;
        let mut first = true;
        loop {
            let ready = py.detach(|| handoff.wait(first));
            first = false;
            if ready {
                let taken = handoff.take();
                // Freed here, where it was allocated, with the emptied work in it.
                drop(handoff);
                return match taken {
                    Some((out, _spent)) => finish(py, out),
                    None => Err(errors::api(py, "the call finished without a result")),
                };
            }
            if let Err(interrupt) = py.check_signals() {
                handoff.cancel();
                return Err(interrupt);
            }
        }
    }
}

async fn run(work: &mut Work) -> Output {
    match work() {
        Some(call) => call.await,
        None => Err(Error::api("this operation was already started")),
    }
}

/// What a blocking call and the runtime's thread share: the output, whether it is
/// there, and the means to abort the task.
#[derive(Default)]
pub(crate) struct Handoff {
    out: Mutex<Option<(Output, Option<Work>)>>,
    done: AtomicBool,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    cancelled: AtomicBool,
}

impl Handoff {
    /// Records the spawned task; aborts it at once when the caller gave up already.
    pub(crate) fn set_task(&self, task: tokio::task::AbortHandle) {
        *lock(&self.task) = Some(task);
        if self.cancelled.load(Ordering::SeqCst) {
            self.abort();
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.abort();
    }

    fn abort(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    /// Whether the call finished within one signal slice; polls briefly first when
    /// `spin` is set (see [`poll_briefly`]). Runs on the calling thread, which the
    /// runtime's thread unparks when it delivers.
    fn wait(&self, spin: bool) -> bool {
        let finished = || self.done.load(Ordering::Acquire);
        if finished() || (spin && poll_briefly(finished)) {
            return true;
        }
        let deadline = Instant::now() + SIGNAL_SLICE;
        loop {
            if finished() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// The output of a finished call, once the runtime's thread has let go of the
    /// handoff (it does so right after saying the call finished), so that the caller
    /// frees it.
    fn take(self: &Arc<Self>) -> Option<(Output, Option<Work>)> {
        let deadline = Instant::now() + RELEASE_SPIN;
        while Arc::strong_count(self) > 1 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        lock(&self.out).take()
    }
}

/// How long a caller waits for the runtime's thread to let go of a finished handoff:
/// a few instructions, unless that thread was preempted in between. Past it, whichever
/// thread lets go last frees the handoff, as with any `Arc`.
const RELEASE_SPIN: Duration = Duration::from_micros(50);

/// A blocking call on its way to, and on, the runtime's thread.
///
/// glibc gives every thread that allocates an arena of its own (up to eight per core).
/// Memory a calling thread allocated and the runtime's thread freed went to the
/// runtime's thread's cache and was reused there, and the calling thread's arena grew
/// to replace it: about 120 KiB resident per arena, some 1.7 MiB with sixty-four calling
/// threads on two cores. So what the calling thread allocates for a call (the work box
/// and the handoff) is freed by it: the runtime's thread builds the future from the
/// work (the future lives on its own heap), returns the emptied box through the
/// handoff, and lets go of the handoff right after marking it done.
pub(crate) struct Blocking {
    work: Option<Work>,
    handoff: Option<Arc<Handoff>>,
    caller: std::thread::Thread,
}

impl Blocking {
    /// The handoff, to record the task in once it is spawned.
    pub(crate) fn handoff(&self) -> Option<Arc<Handoff>> {
        self.handoff.clone()
    }

    /// Runs on the runtime's thread.
    pub(crate) async fn run(mut self) {
        let out = match self.work.as_mut() {
            Some(work) => run(work).await,
            None => Err(Error::api("this operation was already started")),
        };
        self.deliver(out);
    }

    fn deliver(&mut self, out: Output) {
        let Some(handoff) = self.handoff.take() else {
            return;
        };
        // The task handle goes here, on the thread that made the task; aborting a
        // finished call does nothing anyway.
        drop(lock(&handoff.task).take());
        *lock(&handoff.out) = Some((out, self.work.take()));
        handoff.done.store(true, Ordering::Release);
        drop(handoff);
        self.caller.unpark();
    }
}

impl Drop for Blocking {
    /// A task dropped before it finished (aborted, or the runtime going away) still
    /// answers, so the caller is not left waiting.
    fn drop(&mut self) {
        self.deliver(Err(Error::api(
            "the call was dropped before it finished (runtime shutting down)",
        )));
    }
}

/// Set while a blocking wait polls for its result.
static POLLING: AtomicBool = AtomicBool::new(false);

/// Polls for the result of a blocking call for up to [`WAIT_SPIN`] before the caller goes
/// to sleep; a fast call then finishes without the thread being woken, which costs tens
/// of microseconds on a virtual machine whose idle CPUs halt (see `runtime`). Only one
/// waiting thread polls at a time, so many threads waiting together cost no more.
fn poll_briefly(finished: impl Fn() -> bool) -> bool {
    if POLLING.swap(true, Ordering::Acquire) {
        return false;
    }
    let deadline = Instant::now() + WAIT_SPIN;
    let got = loop {
        if finished() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::yield_now();
    };
    POLLING.store(false, Ordering::Release);
    got
}

/// Hands the output of a spawned call to its [`Completions`]; if the task is dropped
/// before it finishes (aborted, or the runtime shutting down), an error is sent instead,
/// so no awaiting future is left hanging.
struct Delivery {
    queue: Arc<Queue>,
    id: u64,
    /// Goes back with the output, to be dropped with the GIL by `drain` (see
    /// [`Operation::deferred_keeping`]), also when the task is aborted.
    work: Option<Work>,
    sent: bool,
}

impl Delivery {
    fn send(&mut self, out: Output) {
        self.sent = true;
        self.queue.push(self.id, out, self.work.take());
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.sent {
            self.queue.push(
                self.id,
                Err(Error::api("the call was dropped before it finished")),
                self.work.take(),
            );
        }
    }
}

/// Finished calls waiting for their event loop, and the means to wake it.
struct Queue {
    done: Mutex<Vec<(u64, Output, Option<Work>)>>,
    wake: Wake,
    /// Set while the loop has no reader for `wake` (one without `add_reader`): the loop and
    /// the `drain` method to schedule on it with `call_soon_threadsafe` instead.
    callback: Mutex<Option<(Py<PyAny>, Py<PyAny>)>>,
    by_callback: AtomicBool,
}

impl Queue {
    /// Queues an output; only the first output of a batch wakes the loop, since the drain
    /// that wake-up causes takes everything queued until it runs.
    fn push(&self, id: u64, out: Output, spent: Option<Work>) {
        let first = {
            let mut done = lock(&self.done);
            done.push((id, out, spent));
            done.len() == 1
        };
        if first {
            self.wake_loop();
        }
    }

    fn wake_loop(&self) {
        if !self.by_callback.load(Ordering::Acquire) {
            self.wake.signal();
            return;
        }
        exit::with_python(|py| {
            let target = lock(&self.callback)
                .as_ref()
                .map(|(l, d)| (l.clone_ref(py), d.clone_ref(py)));
            if let Some((event_loop, drain)) = target {
                // A closed loop refuses the call: nobody is waiting any more.
                let _ = event_loop
                    .bind(py)
                    .call_method1(intern!(py, "call_soon_threadsafe"), (drain,));
            }
        });
    }
}

/// Per event-loop thread: the asyncio futures of started calls, and the queue their
/// outputs arrive on. The Python package keeps one per thread and registers its
/// `fileno()` with each event loop that thread runs, with `drain` as the reader.
#[pyclass(frozen, module = "inferencekey._native")]
pub(crate) struct Completions {
    queue: Arc<Queue>,
    /// Touched only by the owning thread, with the GIL held; the lock is never contended.
    pending: Mutex<HashMap<u64, Py<PyAny>>>,
    next_id: AtomicU64,
}

impl Completions {
    fn track(&self, future: Py<PyAny>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, future);
        id
    }
}

#[pymethods]
impl Completions {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Completions {
            queue: Arc::new(Queue {
                done: Mutex::new(Vec::new()),
                wake: Wake::new()?,
                callback: Mutex::new(None),
                by_callback: AtomicBool::new(false),
            }),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The descriptor that becomes readable when calls have finished.
    fn fileno(&self) -> PyResult<i32> {
        self.queue.wake.fileno()
    }

    /// For a loop without `add_reader`: wake `event_loop` by scheduling `drain` with
    /// `call_soon_threadsafe` instead (`None` goes back to the descriptor).
    fn wake_with(slf: &Bound<'_, Self>, event_loop: Option<Py<PyAny>>) -> PyResult<()> {
        let target = match event_loop {
            Some(l) => Some((l, slf.getattr(intern!(slf.py(), "drain"))?.unbind())),
            None => None,
        };
        let queue = &slf.get().queue;
        queue.by_callback.store(target.is_some(), Ordering::Release);
        let old = std::mem::replace(&mut *lock(&queue.callback), target);
        drop(old);
        // Calls that finished before the switch must not wait for the next one.
        slf.get().queue.wake_loop();
        Ok(())
    }

    /// Sets the result (or exception) of every finished call on its future. Runs on the
    /// loop's thread, as the reader callback.
    fn drain(&self, py: Python<'_>) {
        self.queue.wake.clear();
        let done = std::mem::take(&mut *lock(&self.queue.done));
        if done.is_empty() {
            return;
        }
        // Futures are looked up before any Python code runs, so that code (a finalizer
        // started by an allocation, say) may cancel other calls without a deadlock.
        let mut spent = Vec::with_capacity(done.len());
        let ready: Vec<(Py<PyAny>, Output)> = {
            let mut pending = lock(&self.pending);
            done.into_iter()
                .filter_map(|(id, out, work)| {
                    spent.push(work);
                    pending.remove(&id).map(|f| (f, out))
                })
                .collect()
        };
        // The works' arguments (Python strings among them) are released here, with the
        // GIL, after the futures are looked up.
        drop(spent);
        for (future, out) in ready {
            let future = future.bind(py);
            // A future cancelled meanwhile, or one of a closed loop, refuses the value:
            // nobody waits for it.
            let _ = match finish(py, out) {
                Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
                Err(e) => future.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
            };
        }
    }

    /// Calls started and not yet delivered or cancelled.
    #[getter]
    fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Whether finished calls wait for `drain`.
    #[getter]
    fn ready(&self) -> bool {
        !lock(&self.queue.done).is_empty()
    }
}

/// The wake-up channel of one [`Queue`]: a connected pair of non-blocking sockets; the
/// runtime writes a byte, the loop watches the other end.
#[cfg(unix)]
struct Wake {
    rx: std::os::unix::net::UnixStream,
    tx: std::os::unix::net::UnixStream,
}

#[cfg(unix)]
impl Wake {
    fn new() -> std::io::Result<Self> {
        let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Wake { rx, tx })
    }

    fn fileno(&self) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        Ok(self.rx.as_raw_fd())
    }

    fn signal(&self) {
        use std::io::Write;
        // A full buffer already means "readable"; the loop may be gone: nothing to do.
        let _ = (&self.tx).write(&[1]);
    }

    fn clear(&self) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

/// Without Unix sockets every loop is woken through `call_soon_threadsafe`.
#[cfg(not(unix))]
struct Wake;

#[cfg(not(unix))]
impl Wake {
    fn new() -> std::io::Result<Self> {
        Ok(Wake)
    }

    fn fileno(&self) -> PyResult<i32> {
        Err(pyo3::exceptions::PyNotImplementedError::new_err(
            "no wake-up descriptor on this platform",
        ))
    }

    fn signal(&self) {}

    fn clear(&self) {}
}
