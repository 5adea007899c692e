//! Forwards `tracing` events of the SDK crates to Python's `logging`.
//!
//! Events of `inferencekey_core` go to the logger `inferencekey`, those of the local
//! platform to `inferencekey.local`. Whether a level is enabled is decided from a cached
//! copy of the Python logger's effective level (refreshed by `set_log_level`), so a
//! disabled event costs one atomic load and never touches the interpreter.
//!
//! Deadlock freedom: an event is formatted first and handed to Python with no Rust lock
//! held. Runtime threads attach to the interpreter to log, which is safe because every
//! Python thread that waits on the runtime does so with the GIL released.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The `inferencekey` logger's effective level (Python numbering); WARNING by default.
static PY_LEVEL: AtomicU8 = AtomicU8::new(30);

static CORE_LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOCAL_LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn py_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

fn is_ours(target: &str) -> bool {
    target.starts_with("inferencekey_core") || target.starts_with("inferencekey_local")
}

struct PythonLogLayer;

impl<S: Subscriber> Layer<S> for PythonLogLayer {
    // The level can change at any time, so callsites must not cache a verdict.
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_ours(metadata.target()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        is_ours(metadata.target()) && py_level(metadata.level()) >= PY_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = py_level(meta.level());
        if !is_ours(meta.target()) || level < PY_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        let mut text = Message::default();
        event.record(&mut text);
        let line = text.finish();
        let local = meta.target().starts_with("inferencekey_local");
        crate::exit::with_python(|py| {
            let (cell, name) = if local {
                (&LOCAL_LOGGER, "inferencekey.local")
            } else {
                (&CORE_LOGGER, "inferencekey")
            };
            let logger = cell.get_or_try_init(py, || {
                py.import("logging")?
                    .call_method1("getLogger", (name,))
                    .map(Bound::unbind)
            });
            if let Ok(logger) = logger {
                // A failing handler must not take the SDK down with it.
                let _ = logger.bind(py).call_method1("log", (level, line));
            }
        });
    }
}

#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Message {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(self.fields.trim_start());
        }
        self.message
    }
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Installs the forwarding layer as the global subscriber, unless the host process has
/// already installed one.
pub(crate) fn install() {
    let _ = tracing_subscriber::registry()
        .with(PythonLogLayer)
        .try_init();
}

/// Caches the effective level of the `inferencekey` logger (a Python logging level).
#[pyfunction]
pub(crate) fn set_log_level(level: i64) {
    PY_LEVEL.store(level.clamp(0, 255) as u8, Ordering::Relaxed);
}
