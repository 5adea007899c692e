//! Server-sent events decoding (PROTOCOL.md §4.1 client rules).
//!
//! A small incremental parser: bytes go in as they arrive from the network, split
//! anywhere (mid-line, mid-UTF-8 sequence, between the CR and LF of one line ending),
//! and complete items come out. It implements the parts of the SSE format the platform
//! uses:
//!
//! - LF, CRLF and CR line endings, including a CRLF split across two chunks;
//! - comment lines (starting with `:`), reported as [`SseItem::Comment`] so a caller can
//!   tell keepalives from content;
//! - `data` fields, with one optional space stripped after the colon; several `data`
//!   lines of one event are joined with `\n`;
//! - a blank line dispatches the event; `event`, `id`, `retry` and unknown fields are
//!   ignored; an event without any `data` line is not dispatched;
//! - an incomplete event at the end of the stream is discarded.
//!
//! Each line is decoded as UTF-8 once it is complete; invalid UTF-8 in a `data` line is
//! an error, never a panic.
//!
//! ```
//! use inferencekey_core::sse::{SseDecoder, SseItem};
//!
//! let mut decoder = SseDecoder::new();
//! let mut items = Vec::new();
//! decoder.feed(b": keepalive\r\ndata: {\"a\":", &mut items).unwrap();
//! decoder.feed(b"1}\r\n\r\ndata: [DONE]\n\n", &mut items).unwrap();
//! assert_eq!(
//!     items,
//!     vec![
//!         SseItem::Comment,
//!         SseItem::Event("{\"a\":1}".into()),
//!         SseItem::Event("[DONE]".into()),
//!     ]
//! );
//! ```

use crate::error::{Error, Result};
use crate::wire::codes;

/// The longest line or event the decoder buffers before giving up (64 MiB).
pub const MAX_EVENT_BYTES: usize = 64 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One decoded item of an SSE stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event's data (its `data` lines joined with `\n`).
    Event(String),
    /// A comment line, such as `: keepalive`. It carries no content.
    Comment,
}

/// An incremental SSE decoder; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the current line, when it spans chunks.
    line: Vec<u8>,
    /// Data of the event being built.
    data: String,
    has_data: bool,
    /// The previous chunk ended with CR: an LF starting the next chunk belongs to it.
    skip_lf: bool,
    started: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        SseDecoder::default()
    }

    /// Decodes every complete line of `chunk` (plus what earlier chunks left over) and
    /// appends the resulting items to `out`.
    ///
    /// After an error the decoder's state is unspecified; stop using it.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) -> Result<()> {
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        while !chunk.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) else {
                if self.line.len() + chunk.len() > MAX_EVENT_BYTES {
                    return Err(too_large());
                }
                self.line.extend_from_slice(chunk);
                return Ok(());
            };
            let ending = if chunk[i] == b'\r' {
                match chunk.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => {
                        self.skip_lf = true;
                        1
                    }
                }
            } else {
                1
            };
            if self.line.is_empty() {
                self.process_line(&chunk[..i], out)?;
            } else {
                if self.line.len() + i > MAX_EVENT_BYTES {
                    return Err(too_large());
                }
                self.line.extend_from_slice(&chunk[..i]);
                let mut line = std::mem::take(&mut self.line);
                let result = self.process_line(&line, out);
                line.clear();
                self.line = line;
                result?;
            }
            chunk = &chunk[i + ending..];
        }
        Ok(())
    }

    /// Whether bytes of an unfinished line or event are buffered; at the end of a stream
    /// they are discarded, as the SSE format requires.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseItem>) -> Result<()> {
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix(BOM) {
                line = rest;
            }
        }
        if line.is_empty() {
            if self.has_data {
                self.has_data = false;
                out.push(SseItem::Event(std::mem::take(&mut self.data)));
            }
            return Ok(());
        }
        if line[0] == b':' {
            out.push(SseItem::Comment);
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            let text = std::str::from_utf8(value).map_err(|e| {
                Error::api(format!(
                    "the event stream is not valid UTF-8 (invalid byte at offset {} of a data line)",
                    e.valid_up_to()
                ))
                .with_code(codes::MALFORMED_RESPONSE)
            })?;
            if self.data.len() + text.len() + 1 > MAX_EVENT_BYTES {
                return Err(too_large());
            }
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(text);
            self.has_data = true;
        }
        Ok(())
    }
}

fn too_large() -> Error {
    Error::api(format!(
        "an event of the stream exceeds {} MiB",
        MAX_EVENT_BYTES >> 20
    ))
    .with_code(codes::MALFORMED_RESPONSE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<SseItem>> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        Ok(out)
    }

    fn events(items: &[SseItem]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                SseItem::Event(s) => Some(s.clone()),
                SseItem::Comment => None,
            })
            .collect()
    }

    #[test]
    fn line_endings_fields_and_comments() {
        let input = b"\xEF\xBB\xBFdata: a\r\ndata:b\rdata:  c\n\n: ping\nevent: x\nid: 7\nretry: 10\ndata\n\nfoo: bar\n\n";
        let items = decode_all(&[input]).unwrap();
        assert_eq!(
            items,
            vec![
                SseItem::Event("a\nb\n c".into()),
                SseItem::Comment,
                SseItem::Event(String::new()),
            ]
        );
    }

    #[test]
    fn crlf_split_across_chunks_counts_once() {
        // If the LF after a chunk-final CR were read as a second line ending, it would
        // dispatch the event early and split "a" from "b".
        let items = decode_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap();
        assert_eq!(events(&items), vec!["a\nb"]);
    }

    #[test]
    fn split_mid_utf8() {
        let text = "data: é😀\n\n".as_bytes();
        for i in 0..text.len() {
            let items = decode_all(&[&text[..i], &text[i..]]).unwrap();
            assert_eq!(events(&items), vec!["é😀"], "split at {i}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let e = decode_all(&[b"data: \xff\xfe\n\n"]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Api);
        // Invalid bytes in ignored fields and comments are harmless.
        assert!(decode_all(&[b": \xff\nid: \xfe\n\n"]).is_ok());
    }

    #[test]
    fn incomplete_event_is_reported_as_partial() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        d.feed(b"data: x\n", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(d.has_partial());
        d.feed(b"\n", &mut out).unwrap();
        assert!(!d.has_partial());
        assert_eq!(events(&out), vec!["x"]);
    }

    /// Encodes events with the given line endings; returns the bytes and the expected
    /// event data.
    fn encode(evts: &[Vec<String>], endings: &[u8], comments: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut k = 0;
        let mut eol = |out: &mut Vec<u8>| {
            let mut e: &[u8] = match endings[k % endings.len()] % 3 {
                0 => b"\n",
                1 => b"\r\n",
                _ => b"\r",
            };
            // CR followed by a bare LF would read as one CRLF ending: that input is
            // ambiguous in SSE itself, so the generator never produces it.
            if e == b"\n" && out.last() == Some(&b'\r') {
                e = b"\r\n";
            }
            k += 1;
            out.extend_from_slice(e);
        };
        for lines in evts {
            if comments {
                out.extend_from_slice(b": keepalive");
                eol(&mut out);
            }
            for l in lines {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(l.as_bytes());
                eol(&mut out);
            }
            eol(&mut out);
        }
        out
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_events(
            evts in prop::collection::vec(
                prop::collection::vec("[^\r\n]{0,12}", 1..4), 0..8),
            endings in prop::collection::vec(0u8..3, 1..16),
            comments in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let bytes = encode(&evts, &endings, comments);
            let expected: Vec<String> = evts.iter().map(|l| l.join("\n")).collect();
            let whole = decode_all(&[&bytes]).unwrap();
            prop_assert_eq!(events(&whole), expected);

            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            let split = decode_all(&chunks).unwrap();
            prop_assert_eq!(split, whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_does_not_matter(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '),
                            Just(b'd'), Just(b'a'), Just(b't'), any::<u8>()], 0..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let p = cut.index(bytes.len() + 1);
            let whole = decode_all(&[&bytes]);
            let split = decode_all(&[&bytes[..p], &bytes[p..]]);
            match (whole, split) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "whole {:?} vs split {:?}", a, b),
            }
        }
    }
}
