//! The one tokio runtime of the process, rebuilt in a forked child.
//!
//! A runtime inherited through `fork` has no worker threads left in the child: anything
//! spawned on it would wait forever. The runtime is therefore tagged with the process id
//! that built it, and a child that finds a foreign id builds its own. The parent's
//! runtime is leaked on purpose: dropping it would try to join threads that do not exist
//! in this process.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

struct Owned {
    pid: u32,
    handle: Handle,
    _runtime: Option<Arc<Runtime>>,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// Bumped whenever a call makes progress, so the I/O thread knows it is busy.
static ACTIVITY: AtomicU64 = AtomicU64::new(0);
static UNPARKED: AtomicBool = AtomicBool::new(false);
static PARKED: Mutex<Option<Waker>> = Mutex::new(None);

/// Spawns a call on the runtime of this process.
pub(crate) fn spawn<F>(future: F) -> std::io::Result<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(handle()?.spawn(Tracked { inner: future }))
}

pin_project_lite::pin_project! {
    struct Tracked<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        ACTIVITY.fetch_add(1, Ordering::Relaxed);
        self.project().inner.poll(cx)
    }
}

fn handle() -> std::io::Result<Handle> {
    let pid = std::process::id();
    // A lock poisoned by a panic elsewhere still guards a consistent Option.
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(owned) = slot.as_ref() {
        if owned.pid == pid {
            return Ok(owned.handle.clone());
        }
    }
    let mode = std::env::var("IK_RT").unwrap_or_else(|_| "mt2".into());
    let (handle, runtime) = if let Some(n) = mode.strip_prefix("mt") {
        let rt = Arc::new(
            Builder::new_multi_thread()
                .worker_threads(n.parse().unwrap_or(2))
                .thread_name("inferencekey-io")
                .enable_all()
                .build()?,
        );
        (rt.handle().clone(), Some(rt))
    } else {
        let spin: u64 = mode
            .strip_prefix("ct")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rt = Builder::new_current_thread()
            .enable_all()
            .on_thread_unpark(|| {
                UNPARKED.store(true, Ordering::Relaxed);
                if let Some(w) = PARKED.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    w.wake();
                }
            })
            .build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("inferencekey-io".into())
            .spawn(move || {
                rt.block_on(Hot {
                    window: Duration::from_micros(spin),
                    seen: 0,
                    last: Instant::now(),
                })
            })?;
        (handle, None)
    };
    if let Some(stale) = slot.replace(Owned {
        pid,
        handle: handle.clone(),
        _runtime: runtime,
    }) {
        std::mem::forget(stale);
    }
    Ok(handle)
}

struct Hot {
    window: Duration,
    seen: u64,
    last: Instant,
}

impl Future for Hot {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let activity = ACTIVITY.load(Ordering::Relaxed);
        if activity != self.seen || UNPARKED.swap(false, Ordering::Relaxed) {
            self.seen = activity;
            self.last = now;
        }
        if now.duration_since(self.last) < self.window {
            if std::env::var_os("IK_YIELD").is_some() {
                std::thread::yield_now();
            }
            cx.waker().wake_by_ref();
        } else {
            *PARKED.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}
