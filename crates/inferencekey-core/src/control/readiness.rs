//! Following a workload's readiness stream (PROTOCOL.md §3.5), reconnecting on
//! interruptions.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use rand::Rng;
use reqwest::Method;

use crate::error::{Error, ErrorKind, Result};
use crate::sse::{SseDecoder, SseItem};
use crate::transport::{Call, RetryClass, Transport, chain, malformed, scrub_secrets};
use crate::wire::{Phase, ReadinessEvent, codes};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Result<ReadinessEvent>> + Send>>;

/// The reconnect delay after `failures` consecutive interruptions: 1, 2, 4, then 5 s,
/// each with ±20 % jitter.
pub(crate) fn reconnect_delay(failures: u32) -> Duration {
    let base = match failures {
        0 => return Duration::ZERO,
        1 => 1.0,
        2 => 2.0,
        3 => 4.0,
        _ => 5.0,
    };
    let jitter = rand::rng().random_range(0.8..=1.2);
    Duration::from_secs_f64(base * jitter)
}

/// Whether a failed connect is an interruption worth reconnecting after: a transport
/// failure or timeout, or a gateway status.
fn is_interruption(e: &Error) -> bool {
    match e.status() {
        Some(s) => matches!(s, 502..=504),
        None => matches!(e.kind(), ErrorKind::Api | ErrorKind::Timeout),
    }
}

pub(crate) struct Follow {
    pub(crate) transport: Arc<Transport>,
    pub(crate) token: Arc<str>,
    pub(crate) path: String,
    pub(crate) slug: String,
    body: Option<ByteStream>,
    decoder: SseDecoder,
    scratch: Vec<SseItem>,
    pending: VecDeque<String>,
    /// Interruptions since the last event; drives the backoff.
    failures: u32,
    done: bool,
}

impl Follow {
    pub(crate) fn new(
        transport: Arc<Transport>,
        token: Arc<str>,
        path: String,
        slug: String,
    ) -> Self {
        Follow {
            transport,
            token,
            path,
            slug,
            body: None,
            decoder: SseDecoder::new(),
            scratch: Vec::new(),
            pending: VecDeque::new(),
            failures: 0,
            done: false,
        }
    }

    pub(crate) fn into_stream(self) -> EventStream {
        Box::pin(futures_util::stream::unfold(self, |mut f| async move {
            let item = f.next_event().await?;
            Some((item, f))
        }))
    }

    fn finish(&mut self) {
        self.done = true;
        self.body = None;
        self.pending.clear();
    }

    fn interrupted(&mut self, why: &str) {
        tracing::debug!(path = %self.path, why, "readiness stream interrupted; reconnecting");
        self.body = None;
        self.failures += 1;
    }

    async fn next_event(&mut self) -> Option<Result<ReadinessEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(data) = self.pending.pop_front() {
                self.failures = 0;
                return Some(self.on_event(&data));
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.connect().await {
                    self.finish();
                    return Some(Err(e));
                }
                continue;
            };
            let idle = self.transport.options().stream_idle_timeout;
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    self.interrupted("no bytes, not even a keepalive, within the idle timeout")
                }
                Ok(None) => self.interrupted("end of stream before a terminal event"),
                Ok(Some(Err(e))) => self.interrupted(&chain(&e)),
                Ok(Some(Ok(bytes))) => {
                    self.scratch.clear();
                    if let Err(e) = self.decoder.feed(&bytes, &mut self.scratch) {
                        self.finish();
                        return Some(Err(e));
                    }
                    for item in self.scratch.drain(..) {
                        if let SseItem::Event(data) = item {
                            self.pending.push_back(data);
                        }
                    }
                }
            }
        }
    }

    /// Opens the stream after the backoff. An interruption is recorded and retried by
    /// the caller's loop; any other failure is returned and ends the follower.
    async fn connect(&mut self) -> Result<()> {
        tokio::time::sleep(reconnect_delay(self.failures)).await;
        let mut call = Call::new(
            Method::GET,
            self.path.clone(),
            &self.token,
            RetryClass::Idempotent,
        );
        call.event_stream = true;
        // Reconnects follow the readiness backoff, not the request retry policy.
        call.max_retries = Some(0);
        match self.transport.open(&call).await {
            Ok(resp) => {
                self.body = Some(Box::pin(resp.bytes_stream()));
                self.decoder = SseDecoder::new();
                Ok(())
            }
            Err(e) if is_interruption(&e) => {
                self.interrupted(&e.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn on_event(&mut self, data: &str) -> Result<ReadinessEvent> {
        let event: ReadinessEvent = match decode_event(data) {
            Ok(e) => e,
            Err(e) => {
                self.finish();
                return Err(malformed(format!(
                    "undecodable readiness event for workload '{}': {e}",
                    self.slug
                )));
            }
        };
        match event.phase {
            Phase::Ready => {
                self.finish();
                Ok(event)
            }
            Phase::Error => {
                self.finish();
                Err(Error::api(format!(
                    "workload '{}' failed: {}",
                    self.slug,
                    scrub_secrets(&event.message)
                ))
                .with_code(codes::WORKLOAD_ERROR))
            }
            _ => Ok(event),
        }
    }
}

/// One readiness event. Only a JSON object is one: serde would also read an array as
/// the fields in order, and `["ready", "", 0]` is not a `ready` event.
fn decode_event(data: &str) -> std::result::Result<ReadinessEvent, String> {
    if !data.trim_start().starts_with('{') {
        return Err("not a JSON object".to_owned());
    }
    serde_json::from_str(data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found while fuzzing the chat events, which had the same flaw: an array was
    /// decoded positionally.
    #[test]
    fn regression_array_event_is_undecodable() {
        assert!(decode_event(r#"["ready", "done", 1]"#).is_err());
        assert!(decode_event("null").is_err());
        let e = decode_event(r#" {"phase": "ready", "message": "m", "elapsed_ms": 1}"#).unwrap();
        assert_eq!(e.phase, Phase::Ready);
    }

    #[test]
    fn reconnect_delays_are_1_2_4_then_5_s_with_jitter() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        for (failures, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)] {
            for _ in 0..50 {
                let d = reconnect_delay(failures).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "{failures}: {d}"
                );
            }
        }
    }

    #[test]
    fn interruptions_are_transport_failures_and_gateway_statuses() {
        assert!(is_interruption(&Error::api("connection reset")));
        assert!(is_interruption(&Error::timeout("slow")));
        for s in [502, 503, 504] {
            assert!(is_interruption(&Error::http(s, None, None, "gw")));
        }
        for s in [400, 401, 403, 404, 500] {
            assert!(!is_interruption(&Error::http(s, None, None, "no")));
        }
    }
}
