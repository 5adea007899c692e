"""Cancellation: an asyncio call that is cancelled, timed out by the caller or never
awaited does not keep a request running."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

import pytest

from inferencekey import DataClient
from inferencekey.local import LocalPlatform

from .harness import Api, hits, open_connections, wait_connections_at_most

PROMPT = "Summarise ticket 4411"


async def test_never_awaited_calls_send_nothing(faulty: LocalPlatform, key: str) -> None:
    """Creating the awaitable sends nothing; dropping it unawaited leaves nothing
    running. Only awaiting sends the request."""
    ep = Api("async").endpoint(faulty, None, key)
    with warnings.catch_warnings():
        # "coroutine ... was never awaited" is the point of this test.
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3):
            pending = [
                ep.generate_text(prompt=PROMPT),
                ep.embed(input="x"),
                ep.rerank(query="q", documents=["d"]),
            ]
            stream = ep.generate_text_stream(prompt=PROMPT)
            del pending, stream
            gc.collect()
    await asyncio.sleep(0.3)
    assert hits(faulty, key) == 0
    assert (await ep.generate_text(prompt=PROMPT)).text
    assert hits(faulty, key) == 1


async def test_cancelled_call_closes_its_connection(fresh: LocalPlatform, key: str) -> None:
    """Cancelling the task that awaits a call aborts the request: the server sees its
    connection closed, and the client stays usable."""
    ep = Api("async").endpoint(fresh, "stall", key)
    task = asyncio.create_task(ep.generate_text(prompt=PROMPT))
    await asyncio.sleep(0.3)
    assert open_connections(fresh) == 1
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert await asyncio.to_thread(wait_connections_at_most, fresh, 0) == 0
    fine = DataClient(base_url=fresh.base_url, project=fresh.project, api_key=fresh.api_key)
    async with fine:
        assert (await fine.endpoint("chat").generate_text(prompt=PROMPT)).text


async def test_caller_timeout_aborts_the_request(fresh: LocalPlatform, key: str) -> None:
    """``asyncio.wait_for`` / ``asyncio.timeout`` around a call cancel it the same way."""
    ep = Api("async").endpoint(fresh, "stall", key)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ep.generate_text(prompt=PROMPT), 0.5)
    assert await asyncio.to_thread(wait_connections_at_most, fresh, 0) == 0
    assert hits(fresh, key) == 1


async def test_cancelled_stream_read_closes_its_connection(slow: LocalPlatform, key: str) -> None:
    """Cancelling a task blocked in ``async for`` over a stream closes the stream's
    connection promptly; the client stays usable."""
    ep = Api("async").endpoint(slow, None, key)
    stream = await ep.generate_text_stream(prompt="a long answer please", max_tokens=400)
    await stream.__anext__()

    async def read_rest() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read_rest())
    await asyncio.sleep(0.3)
    assert open_connections(slow) == 1
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert stream.closed
    assert await asyncio.to_thread(wait_connections_at_most, slow, 0) == 0
    assert (await ep.generate_text(prompt="hi", max_tokens=2)).text
