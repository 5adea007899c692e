//! The `inferencekey._native` module: conversions and runtime bridging over
//! `inferencekey-core`; the public API is the pure-Python package around it.
//!
//! - One tokio runtime per process, rebuilt after `fork` (`runtime`); core clients are
//!   rebuilt in a forked child too (`client::ForkSafe`).
//! - Network methods return a not-yet-started `bridge::Operation`, which asyncio
//!   callers start and await (cancelling aborts it) and blocking callers `wait` on with
//!   the GIL released, handling signals between short slices. Finished asyncio calls
//!   reach their loop in batches through a per-thread `bridge::Completions`, whose
//!   Python objects are built on the loop's thread.
//! - Core errors become the exception classes of `inferencekey.errors` (`errors`).
//! - `tracing` events reach the `inferencekey` Python logger (`logging`); runtime
//!   threads stay out of the interpreter once it starts shutting down (`exit`).

mod bridge;
mod client;
mod control;
mod convert;
mod data;
mod errors;
mod exit;
mod local;
mod logging;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<bridge::Completions>()?;
    m.add_class::<bridge::Operation>()?;
    m.add_class::<control::ManagementClient>()?;
    m.add_class::<control::ReadinessFollower>()?;
    m.add_class::<data::DataClient>()?;
    m.add_class::<data::Endpoint>()?;
    m.add_class::<data::TextStream>()?;
    m.add_class::<local::LocalPlatform>()?;
    m.add_function(wrap_pyfunction!(logging::set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(exit::before_exit, m)?)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (m.getattr("before_exit")?,))?;
    Ok(())
}
