//! The one tokio runtime of the process: a current-thread scheduler driven by one
//! dedicated thread, `inferencekey-io`, rebuilt in a forked child.
//!
//! One thread does all the network work of the process. Calls cross to it from Python
//! threads and back, and nothing else: no work stealing between workers, no lock
//! shared by several of them, and a single reactor. One thread serves tens of thousands
//! of calls a second, more than the Python side of a process makes; a pool of workers
//! measured slower, spending its gain on handing tasks between workers.
//!
//! The thread stays awake for a short while after a call makes progress
//! ([`BUSY_SPIN`] while calls are in flight, [`IDLE_SPIN`] once none are), polling the
//! reactor without blocking and yielding the CPU between polls. Waking a parked thread
//! costs tens of microseconds on a virtual machine whose idle CPUs halt, and a call
//! crosses threads several times; a thread that is already running picks up the next
//! request or the server's response at once. After the window it parks as usual, so an
//! idle process costs nothing.
//!
//! Calls are handed over through a queue the thread drains whenever it polls: while it
//! is awake, starting a call costs the caller no system call (tokio would write to the
//! reactor's wake-up descriptor for every task spawned from outside). Only a thread
//! that has gone to sleep is woken.
//!
//! A runtime inherited through `fork` has no thread left in the child: anything spawned
//! on it would wait forever. The runtime is therefore tagged with the process id that
//! built it, and a child that finds a foreign id builds its own. The parent's runtime is
//! leaked on purpose: it belongs to a thread that does not exist in the child.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::future::{AbortHandle, abortable};
use tokio::runtime::Builder;

use crate::bridge::Blocking;

/// How long the I/O thread keeps polling after progress while calls are in flight:
/// longer than a fast server takes to answer.
const BUSY_SPIN: Duration = Duration::from_micros(200);
/// How long it keeps polling once no call is in flight: long enough for a Python loop
/// to start its next call, short enough not to matter while it does other work.
const IDLE_SPIN: Duration = Duration::from_micros(60);

struct Owned {
    pid: u32,
    activity: Arc<Activity>,
}

type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What is handed to the I/O thread: a future built by the caller, or a blocking call
/// whose future the I/O thread builds (see [`Blocking`]).
enum Submission {
    Call(Call),
    Blocking(Blocking),
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A lock poisoned by a panic elsewhere still guards consistent data here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the I/O thread watches to decide whether to stay awake.
#[derive(Default)]
struct Activity {
    /// Calls spawned and not yet finished.
    in_flight: AtomicUsize,
    /// Bumped whenever a call is polled or finishes.
    progress: AtomicU64,
    /// Set when the thread returns from a real park (an I/O event or a new task).
    unparked: AtomicBool,
    /// The driving future, while it is not polling.
    parked: Mutex<Option<Waker>>,
    /// Calls handed over and not yet spawned on the thread. The vector keeps its
    /// capacity (see [`Drive::spawn_submitted`]), so handing over allocates nothing.
    submitted: Mutex<Vec<Submission>>,
    /// Cleared by the thread before it may go to sleep; see [`Drive::poll`].
    awake: AtomicBool,
}

/// A call handed to the runtime.
pub(crate) struct Spawned(AbortHandle);

impl Spawned {
    /// Drops the call where it stands (closing its connection); a no-op once it finished.
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

/// Hands a call to the runtime of this process.
pub(crate) fn spawn<F>(future: F) -> std::io::Result<Spawned>
where
    F: Future<Output = ()> + Send + 'static,
{
    let activity = current()?;
    let (future, abort) = abortable(future);
    activity.in_flight.fetch_add(1, Ordering::Relaxed);
    let call = Tracked {
        inner: future,
        activity: CallDone(activity.clone()),
    };
    hand_over(
        &activity,
        Submission::Call(Box::pin(async move {
            let _ = call.await;
        })),
    );
    Ok(Spawned(abort))
}

/// Hands a blocking call to the runtime of this process; its future is built and
/// spawned on the I/O thread, and aborted through its handoff.
pub(crate) fn submit(job: Blocking) -> std::io::Result<()> {
    let activity = current()?;
    activity.in_flight.fetch_add(1, Ordering::Relaxed);
    hand_over(&activity, Submission::Blocking(job));
    Ok(())
}

fn hand_over(activity: &Activity, submission: Submission) {
    lock(&activity.submitted).push(submission);
    // Pairs with the store and the check in `Drive::poll`: either the thread sees this
    // call before it sleeps, or this sees that it may be asleep and wakes it.
    if !activity.awake.load(Ordering::SeqCst) {
        if let Some(waker) = lock(&activity.parked).take() {
            waker.wake();
        }
    }
}

fn current() -> std::io::Result<Arc<Activity>> {
    let pid = std::process::id();
    let mut slot = lock(&RUNTIME);
    if let Some(owned) = slot.as_ref() {
        if owned.pid == pid {
            return Ok(owned.activity.clone());
        }
    }
    let activity = Arc::new(Activity::default());
    let on_unpark = activity.clone();
    let runtime = Builder::new_current_thread()
        .enable_all()
        .on_thread_unpark(move || {
            on_unpark.unparked.store(true, Ordering::Relaxed);
            if let Some(waker) = lock(&on_unpark.parked).take() {
                waker.wake();
            }
        })
        .build()?;
    let drive = Drive {
        activity: activity.clone(),
        seen: 0,
        last: Instant::now(),
        spare: Vec::new(),
    };
    std::thread::Builder::new()
        .name("inferencekey-io".into())
        .spawn(move || runtime.block_on(drive))?;
    if let Some(stale) = slot.replace(Owned {
        pid,
        activity: activity.clone(),
    }) {
        std::mem::forget(stale);
    }
    Ok(activity)
}

pin_project_lite::pin_project! {
    /// A spawned call, counted in flight until it is dropped (finished or aborted).
    struct Tracked<F> {
        #[pin]
        inner: F,
        activity: CallDone,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.activity.0.progress.fetch_add(1, Ordering::Relaxed);
        this.inner.poll(cx)
    }
}

struct CallDone(Arc<Activity>);

impl Drop for CallDone {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// The future the I/O thread blocks on: it never finishes. Each poll spawns the calls
/// handed over since the last one; while progress is recent it asks to be polled again
/// at once, which makes the scheduler poll the reactor without blocking, and otherwise it
/// waits for the next real wake-up of the thread (an I/O event, a timer, a new call).
struct Drive {
    activity: Arc<Activity>,
    seen: u64,
    last: Instant,
    /// Swapped with the submission queue, so both vectors keep their capacity.
    spare: Vec<Submission>,
}

impl Drive {
    /// Spawns the submitted calls on this thread; whether there were any.
    fn spawn_submitted(&mut self) -> bool {
        std::mem::swap(&mut *lock(&self.activity.submitted), &mut self.spare);
        let any = !self.spare.is_empty();
        let mut spare = std::mem::take(&mut self.spare);
        for submission in spare.drain(..) {
            // On the runtime's own thread: queued locally, no wake-up needed.
            match submission {
                Submission::Call(call) => drop(tokio::spawn(call)),
                Submission::Blocking(job) => {
                    let handoff = job.handoff();
                    let task = tokio::spawn(Tracked {
                        inner: job.run(),
                        activity: CallDone(self.activity.clone()),
                    });
                    if let Some(handoff) = handoff {
                        handoff.set_task(task.abort_handle());
                    }
                }
            }
        }
        self.spare = spare;
        any
    }
}

impl Future for Drive {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.activity.awake.store(true, Ordering::SeqCst);
        let submitted = self.spawn_submitted();
        let now = Instant::now();
        let progress = self.activity.progress.load(Ordering::Relaxed);
        if submitted
            || progress != self.seen
            || self.activity.unparked.swap(false, Ordering::Relaxed)
        {
            self.seen = progress;
            self.last = now;
        }
        let window = if self.activity.in_flight.load(Ordering::Relaxed) > 0 {
            BUSY_SPIN
        } else {
            IDLE_SPIN
        };
        if now.duration_since(self.last) < window {
            // Let a thread this CPU was about to run (the server, the event loop) go first.
            std::thread::yield_now();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        *lock(&self.activity.parked) = Some(cx.waker().clone());
        // Pairs with `spawn`: a call submitted before this store is seen just below;
        // one submitted after it finds the thread possibly asleep and wakes it.
        self.activity.awake.store(false, Ordering::SeqCst);
        if !lock(&self.activity.submitted).is_empty() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
