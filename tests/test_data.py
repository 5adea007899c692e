"""Data plane with the async client: text, streams, embeddings (list and buffer),
rerank."""

from __future__ import annotations

import math
import sys

import pytest

from inferencekey import (
    AuthError,
    DataClient,
    EmbedResult,
    RerankResult,
    TextChunk,
    TextResult,
    TextStream,
    ValidationError,
)
from inferencekey.local import LocalPlatform

UNKNOWN_LIVE = "ik_live_0badc0de_" + "3" * 64


async def test_generate_text_with_prompt(data: DataClient, chat_slug: str) -> None:
    result = await data.endpoint(chat_slug).generate_text(prompt="Summarise ticket 4411")
    assert isinstance(result, TextResult)
    assert isinstance(result.text, str)
    assert result.text
    assert result.model
    assert result.finish_reason in ("stop", "length")
    assert isinstance(result.raw, dict)
    assert result.raw["choices"][0]["message"]["content"] == result.text
    assert result.usage is not None


async def test_generate_text_with_messages_and_options(data: DataClient, chat_slug: str) -> None:
    result = await data.endpoint(chat_slug).generate_text(
        messages=[
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": "What is a workload?"},
        ],
        temperature=0.3,
        max_tokens=5,
    )
    assert result.text
    assert result.finish_reason in ("stop", "length")


async def test_max_tokens_bounds_the_reply(data: DataClient, chat_slug: str) -> None:
    long = await data.endpoint(chat_slug).generate_text(prompt="Tell me everything", max_tokens=200)
    short = await data.endpoint(chat_slug).generate_text(prompt="Tell me everything", max_tokens=2)
    assert len(short.text) < len(long.text)
    assert short.finish_reason == "length"


async def collect(stream: TextStream) -> tuple[str, list[TextChunk]]:
    chunks = [chunk async for chunk in stream]
    return "".join(c.text for c in chunks), chunks


async def test_stream_async_for_directly(data: DataClient, chat_slug: str) -> None:
    text, chunks = await collect(data.endpoint(chat_slug).generate_text_stream(prompt="Hello"))
    assert text
    assert all(isinstance(c, TextChunk) for c in chunks)
    assert all(isinstance(c.raw, dict) for c in chunks)
    finished = [c.finish_reason for c in chunks if c.finish_reason]
    assert finished in (["stop"], ["length"])


async def test_stream_matches_plain_reply(data: DataClient, chat_slug: str) -> None:
    ep = data.endpoint(chat_slug)
    plain = await ep.generate_text(prompt="Same prompt", max_tokens=30, temperature=0)
    text, _ = await collect(
        ep.generate_text_stream(prompt="Same prompt", max_tokens=30, temperature=0)
    )
    assert text == plain.text


async def test_stream_await_then_iterate(data: DataClient, chat_slug: str) -> None:
    stream = await data.endpoint(chat_slug).generate_text_stream(prompt="Hello")
    assert isinstance(stream, TextStream)
    text, _ = await collect(stream)
    assert text


async def test_stream_auth_error_raises_on_await(platform: LocalPlatform, chat_slug: str) -> None:
    bad = DataClient(base_url=platform.base_url, project=platform.project, api_key=UNKNOWN_LIVE)
    with pytest.raises(AuthError):
        await bad.endpoint(chat_slug).generate_text_stream(prompt="Hello")
    with pytest.raises(AuthError):
        async for _ in bad.endpoint(chat_slug).generate_text_stream(prompt="Hello"):
            pass


async def test_stream_as_context_manager(data: DataClient, chat_slug: str) -> None:
    async with data.endpoint(chat_slug).generate_text_stream(prompt="Hello") as stream:
        text, _ = await collect(stream)
    assert text


async def test_stream_aclose_is_idempotent(data: DataClient, chat_slug: str) -> None:
    stream = await data.endpoint(chat_slug).generate_text_stream(prompt="Hello", max_tokens=50)
    first = await stream.__anext__()
    assert isinstance(first, TextChunk)
    await stream.aclose()
    await stream.aclose()
    # A closed stream yields nothing more.
    assert [c async for c in stream] == []


async def test_breaking_early_then_calling_again(data: DataClient, chat_slug: str) -> None:
    ep = data.endpoint(chat_slug)
    for _ in range(5):
        async with ep.generate_text_stream(prompt="Hello", max_tokens=100) as stream:
            async for _chunk in stream:
                break
    assert (await ep.generate_text(prompt="still fine")).text


async def test_embed_keeps_input_order(data: DataClient, embed_slug: str) -> None:
    ep = data.endpoint(embed_slug)
    texts = ["refund policy", "2FA reset", "opening hours", "invoice total"]
    batch = await ep.embed(input=texts)
    assert isinstance(batch, EmbedResult)
    assert len(batch.embeddings) == len(texts)
    dims = {len(v) for v in batch.embeddings}
    assert len(dims) == 1
    for text, vector in zip(texts, batch.embeddings, strict=True):
        single = await ep.embed(input=text)
        assert len(single.embeddings) == 1
        assert single.embeddings[0] == pytest.approx(vector, abs=1e-6)
    assert batch.embeddings[0] != batch.embeddings[1]
    assert batch.model
    assert isinstance(batch.raw, dict)
    assert batch.usage is not None


async def test_embed_buffer_has_shape_n_by_dim(data: DataClient, embed_slug: str) -> None:
    result = await data.endpoint(embed_slug).embed(input=["a", "bb", "ccc"])
    view = result.buffer
    dim = len(result.embeddings[0])
    assert view.shape == (3, dim)
    assert view.format == "f"
    assert view.itemsize == 4
    assert view.c_contiguous
    assert view.readonly
    for row, expected in zip(view.tolist(), result.embeddings, strict=True):
        assert row == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert len(result) == 3
    assert result[1] == result.embeddings[1]
    assert list(result) == result.embeddings


@pytest.mark.xfail(
    sys.version_info < (3, 12),
    reason="memoryview() of a Python class needs PEP 688 (Python 3.12+); "
    "on older versions the SDK offers result.buffer instead",
    strict=True,
)
async def test_memoryview_of_the_result(data: DataClient, embed_slug: str) -> None:
    result = await data.endpoint(embed_slug).embed(input=["a", "bb"])
    view = memoryview(result)  # type: ignore[arg-type,unused-ignore]
    assert view.shape == (2, len(result.embeddings[0]))


async def test_embed_numpy_asarray(data: DataClient, embed_slug: str) -> None:
    numpy = pytest.importorskip("numpy", reason="numpy is a dev dependency of this suite")
    result = await data.endpoint(embed_slug).embed(input=["left", "right"])
    array = numpy.asarray(result)
    assert array.shape == (2, len(result.embeddings[0]))
    assert array.dtype == numpy.float32
    assert numpy.allclose(array, numpy.array(result.embeddings, dtype=numpy.float32))
    norms = numpy.linalg.norm(array, axis=1)
    assert all(math.isfinite(float(n)) for n in norms)


async def test_rerank_sorted_by_score(data: DataClient, rerank_slug: str) -> None:
    documents = [
        "Keys are rotated from Settings.",
        "Our office is in Lyon.",
        "Rotation revokes the old key.",
    ]
    result = await data.endpoint(rerank_slug).rerank(
        query="how do I rotate a key", documents=documents
    )
    assert isinstance(result, RerankResult)
    scores = [item.relevance_score for item in result.results]
    assert scores == sorted(scores, reverse=True)
    assert sorted(item.index for item in result.results) == [0, 1, 2]
    assert result.results[-1].index == 1
    assert isinstance(result.raw, dict)


async def test_rerank_top_n(data: DataClient, rerank_slug: str) -> None:
    documents = ["alpha key", "beta", "gamma key rotation", "delta"]
    full = await data.endpoint(rerank_slug).rerank(query="key rotation", documents=documents)
    top = await data.endpoint(rerank_slug).rerank(
        query="key rotation", documents=documents, top_n=2
    )
    assert len(top.results) == 2
    assert [i.index for i in top.results] == [i.index for i in full.results[:2]]


async def test_server_rejects_wrong_modality(data: DataClient, chat_slug: str) -> None:
    # A chat workload does not serve embeddings: a typed 400, not a crash.
    with pytest.raises(ValidationError) as info:
        await data.endpoint(chat_slug).embed(input="x")
    assert info.value.status == 400
    assert info.value.code == "unsupported_task"
