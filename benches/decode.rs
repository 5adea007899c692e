//! Decoding throughput of the client's hot paths: the chat stream (SSE framing plus
//! chunk JSON) and embeddings responses.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inferencekey_core::sse::{SseDecoder, SseItem};
use inferencekey_core::{EmbedResult, TextChunk};
use std::hint::black_box;

const EVENTS: usize = 1000;

/// A chat stream of `EVENTS` content chunks, with keepalives, as a server sends it.
fn chat_stream() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        b"data: {\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n",
    );
    for i in 0..EVENTS {
        if i % 100 == 0 {
            out.extend_from_slice(b": keepalive\n\n");
        }
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"created\":1733300000,\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i} é\"}},\"finish_reason\":null}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn embeddings_body(count: usize, dim: usize) -> Vec<u8> {
    let mut s = String::from("{\"object\":\"list\",\"model\":\"BAAI/bge-m3\",\"data\":[");
    for i in 0..count {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"object\":\"embedding\",\"index\":{i},\"embedding\":["
        ));
        for j in 0..dim {
            if j > 0 {
                s.push(',');
            }
            let v = ((i * 31 + j * 17) % 2000) as f32 / 1000.0 - 1.0;
            s.push_str(&format!("{v:.6}"));
        }
        s.push_str("]}");
    }
    s.push_str("],\"usage\":{\"prompt_tokens\":6,\"total_tokens\":6}}");
    s.into_bytes()
}

fn decode_stream(bytes: &[u8], chunk_size: usize) -> usize {
    let mut decoder = SseDecoder::new();
    let mut items = Vec::new();
    let mut text = 0;
    for piece in bytes.chunks(chunk_size) {
        items.clear();
        decoder.feed(piece, &mut items).unwrap();
        for item in items.drain(..) {
            if let SseItem::Event(data) = item {
                if data != "[DONE]" {
                    text += TextChunk::from_event(&data).unwrap().text.len();
                }
            }
        }
    }
    text
}

fn bench_chat_stream(c: &mut Criterion) {
    let bytes = chat_stream();
    let mut group = c.benchmark_group("chat_stream");
    group.throughput(Throughput::Elements(EVENTS as u64));
    // Network reads deliver a few KiB at a time; 61 bytes also splits most events.
    for chunk_size in [61, 4096] {
        group.bench_function(format!("sse_and_chunks/{chunk_size}B_reads"), |b| {
            b.iter(|| decode_stream(black_box(&bytes), chunk_size))
        });
    }
    group.bench_function("sse_only/4096B_reads", |b| {
        b.iter(|| {
            let mut decoder = SseDecoder::new();
            let mut items = Vec::new();
            for piece in black_box(&bytes).chunks(4096) {
                decoder.feed(piece, &mut items).unwrap();
            }
            items.len()
        })
    });
    group.finish();
}

fn bench_embeddings(c: &mut Criterion) {
    let (count, dim) = (64, 1024);
    let body = Bytes::from(embeddings_body(count, dim));
    let mut group = c.benchmark_group("embeddings");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("decode/{count}x{dim}"), |b| {
        b.iter(|| EmbedResult::from_response(black_box(body.clone()), count).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_chat_stream, bench_embeddings);
criterion_main!(benches);
