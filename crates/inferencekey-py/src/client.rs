//! What both native clients share: options from Python keywords, fork-safe rebuilding
//! of the core client, and closing.

use std::sync::Mutex;
use std::time::Duration;

use inferencekey_core::{ClientOptions, Error, Result};

/// Builds [`ClientOptions`] from the Python keywords; `None` keeps the core default.
#[allow(clippy::too_many_arguments)]
pub(crate) fn options(
    timeout: Option<f64>,
    connect_timeout: Option<f64>,
    stream_idle_timeout: Option<f64>,
    max_retries: Option<u32>,
    user_agent: Option<String>,
    user_agent_impl: Option<String>,
    headers: Option<Vec<(String, String)>>,
) -> Result<ClientOptions> {
    let mut o = ClientOptions {
        user_agent_product: format!("inferencekey-py/{}", env!("CARGO_PKG_VERSION")),
        ..ClientOptions::default()
    };
    if let Some(t) = timeout {
        o.timeout = seconds("timeout", t)?;
    }
    if let Some(t) = connect_timeout {
        o.connect_timeout = seconds("connect_timeout", t)?;
    }
    if let Some(t) = stream_idle_timeout {
        o.stream_idle_timeout = seconds("stream_idle_timeout", t)?;
    }
    if let Some(n) = max_retries {
        o.max_retries = n;
    }
    o.user_agent_suffix = user_agent;
    if let Some(i) = user_agent_impl {
        o.user_agent_impl = i;
    }
    o.default_headers = headers.unwrap_or_default();
    Ok(o)
}

/// A positive, finite number of seconds.
pub(crate) fn seconds(what: &str, value: f64) -> Result<Duration> {
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value)
            .map_err(|_| Error::configuration(format!("{what} is out of range: {value}")))
    } else {
        Err(Error::configuration(format!(
            "{what} must be a positive number of seconds, got {value}"
        )))
    }
}

type Build<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;

/// A core client tagged with the process that built it.
///
/// A connection pool inherited through `fork` holds the parent's sockets and belongs to
/// the parent's (now threadless) runtime, so a child rebuilds the client from the same
/// settings on first use. The inherited client is leaked rather than dropped: dropping
/// it could write to sockets the parent still uses.
pub(crate) struct ForkSafe<T: Clone> {
    current: Mutex<Option<(u32, T)>>,
    build: Build<T>,
    what: &'static str,
}

impl<T: Clone> ForkSafe<T> {
    pub(crate) fn new(build: Build<T>, what: &'static str) -> Result<Self> {
        let first = build()?;
        Ok(ForkSafe {
            current: Mutex::new(Some((std::process::id(), first))),
            build,
            what,
        })
    }

    /// The client for this process; an error after `close`.
    pub(crate) fn get(&self) -> Result<T> {
        let pid = std::process::id();
        let mut slot = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            None => Err(Error::api(format!("the {} is closed", self.what))),
            Some((owner, client)) if *owner == pid => Ok(client.clone()),
            Some(_) => {
                let fresh = (self.build)()?;
                if let Some(stale) = slot.replace((pid, fresh.clone())) {
                    std::mem::forget(stale);
                }
                Ok(fresh)
            }
        }
    }

    /// Releases the connection pool once in-flight calls are done; idempotent.
    pub(crate) fn close(&self) {
        let mut slot = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, client)) = slot.take() {
            if owner == std::process::id() {
                drop(client);
            } else {
                std::mem::forget(client);
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}
