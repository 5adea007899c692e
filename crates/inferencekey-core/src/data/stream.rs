//! The streamed chat completion: SSE bytes in, [`TextChunk`]s out.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FusedStream;
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::TextChunk;
use super::decode::{StreamPayload, stream_payload};
use crate::error::{Error, Result};
use crate::sse::{SseDecoder, SseItem};
use crate::transport::chain;
use crate::wire::codes;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A streamed chat completion; ends only at `[DONE]`.
///
/// Read it with [`next`](Self::next), [`next_batch`](Self::next_batch) or as a
/// [`Stream`]. It is `Send + 'static`. Rules:
///
/// - the end of the body before `data: [DONE]` is an error (code `stream_truncated`)
///   that says how much text had arrived;
/// - an `{"error": …}` event, an event that is not valid JSON and invalid UTF-8 are
///   errors;
/// - a chunk with empty `choices` (the usage chunk) is yielded with empty text and
///   `usage` set;
/// - no content event for [`stream_idle_timeout`](crate::ClientOptions::stream_idle_timeout)
///   is a timeout error; keepalive comments and partial events do not count as content;
/// - after an error or `[DONE]`, the stream yields `None`;
/// - [`close`](Self::close) or dropping the stream closes the connection, and so does
///   a [`StreamCloser`] from another task or thread, even while a read is waiting.
pub struct TextStream {
    body: Option<ByteStream>,
    decoder: SseDecoder,
    scratch: Vec<SseItem>,
    queue: VecDeque<Result<TextChunk>>,
    /// No more reading: `[DONE]` seen, an error queued, or closed.
    finished: bool,
    idle_timeout: Duration,
    idle_deadline: Instant,
    idle: Pin<Box<Sleep>>,
    chunks: usize,
    chars: usize,
    workload: String,
    closer: StreamCloser,
}

/// Closes a [`TextStream`] from anywhere: the connection is dropped at once, a read
/// waiting on it returns `None`, and so does every later one. Cheap to clone.
#[derive(Clone, Default)]
pub struct StreamCloser {
    signal: Arc<CloseSignal>,
}

#[derive(Default)]
struct CloseSignal {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl StreamCloser {
    /// Asks the stream to close; idempotent.
    pub fn close(&self) {
        self.signal.closed.store(true, Ordering::SeqCst);
        self.signal.waker.wake();
    }

    fn is_closed(&self) -> bool {
        self.signal.closed.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for StreamCloser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCloser")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl fmt::Debug for TextStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextStream")
            .field("workload", &self.workload)
            .field("open", &self.body.is_some())
            .field("chunks", &self.chunks)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl TextStream {
    pub(crate) fn new(resp: reqwest::Response, idle_timeout: Duration, workload: String) -> Self {
        let idle_deadline = Instant::now() + idle_timeout;
        TextStream {
            body: Some(Box::pin(resp.bytes_stream())),
            decoder: SseDecoder::new(),
            scratch: Vec::new(),
            queue: VecDeque::new(),
            finished: false,
            idle_timeout,
            idle_deadline,
            idle: Box::pin(tokio::time::sleep_until(idle_deadline)),
            chunks: 0,
            chars: 0,
            workload,
            closer: StreamCloser::default(),
        }
    }

    /// A handle that closes this stream from another task or thread, interrupting a
    /// read that is waiting for data (it then returns `None`).
    pub fn closer(&self) -> StreamCloser {
        self.closer.clone()
    }

    /// The next chunk; `None` once `[DONE]` was seen.
    pub async fn next(&mut self) -> Option<Result<TextChunk>> {
        StreamExt::next(self).await
    }

    /// Waits for at least one chunk, then returns it with every chunk already decoded
    /// (at most `max`). Empty once the stream is finished.
    ///
    /// An error that follows already-decoded chunks is kept for the next call, so no
    /// chunk is lost. A `max` of 0 counts as 1.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<TextChunk>> {
        let max = max.max(1);
        let mut out = Vec::new();
        match self.next().await {
            None => return Ok(out),
            Some(Err(e)) => return Err(e),
            Some(Ok(c)) => out.push(c),
        }
        while out.len() < max {
            // Only what is ready now: bytes already received are decoded, nothing waits.
            match self.next().now_or_never() {
                Some(Some(Ok(c))) => out.push(c),
                Some(Some(Err(e))) => {
                    self.queue.push_front(Err(e));
                    break;
                }
                Some(None) | None => break,
            }
        }
        Ok(out)
    }

    /// Closes the connection now; idempotent. The stream then yields `None`.
    pub fn close(&mut self) {
        self.body = None;
        self.queue.clear();
        self.finished = true;
    }

    /// Whether `[DONE]`, an error or `close` ended the stream (queued chunks may remain).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn fail(&mut self, e: Error) {
        self.queue.push_back(Err(e));
        self.finished = true;
        self.body = None;
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.scratch.clear();
        let fed = self.decoder.feed(bytes, &mut self.scratch);
        let mut items = std::mem::take(&mut self.scratch);
        for item in items.drain(..) {
            if self.finished {
                break;
            }
            let SseItem::Event(data) = item else {
                continue;
            };
            self.idle_deadline = Instant::now() + self.idle_timeout;
            match stream_payload(&data) {
                Ok(StreamPayload::Done) => {
                    self.finished = true;
                    self.body = None;
                }
                Ok(StreamPayload::Chunk(chunk)) => {
                    self.chunks += 1;
                    self.chars += chunk.text.chars().count();
                    self.queue.push_back(Ok(chunk));
                }
                Err(e) => self.fail(e),
            }
        }
        self.scratch = items;
        if let Err(e) = fed {
            if !self.finished {
                self.fail(e);
            }
        }
    }

    fn on_eof(&mut self) {
        self.fail(
            Error::api(format!(
                "the stream from workload '{}' ended before [DONE] after {} chunks \
                 ({} characters of text)",
                self.workload, self.chunks, self.chars
            ))
            .with_code(codes::STREAM_TRUNCATED),
        );
    }
}

impl Stream for TextStream {
    type Item = Result<TextChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.closer.signal.waker.register(cx.waker());
        if this.closer.is_closed() {
            this.close();
        }
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            let Some(body) = this.body.as_mut() else {
                this.finished = true;
                continue;
            };
            match body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.on_bytes(&bytes),
                Poll::Ready(Some(Err(e))) => this.fail(
                    Error::api(format!(
                        "the stream from workload '{}' was interrupted after {} chunks: {}",
                        this.workload,
                        this.chunks,
                        chain(&e)
                    ))
                    .with_code(codes::STREAM_TRUNCATED),
                ),
                Poll::Ready(None) => this.on_eof(),
                // The idle deadline is only judged once every byte already received has
                // been decoded: a consumer that paused must not miss content that
                // arrived in time.
                Poll::Pending => {
                    if this.idle.deadline() != this.idle_deadline {
                        this.idle.as_mut().reset(this.idle_deadline);
                    }
                    if this.idle.as_mut().poll(cx).is_ready() {
                        this.fail(this.idle_error());
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl FusedStream for TextStream {
    fn is_terminated(&self) -> bool {
        self.finished && self.queue.is_empty()
    }
}

impl TextStream {
    fn idle_error(&self) -> Error {
        Error::timeout(format!(
            "no content from workload '{}' for {:.1} s (after {} chunks)",
            self.workload,
            self.idle_timeout.as_secs_f64(),
            self.chunks
        ))
    }
}
