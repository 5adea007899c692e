"""Connections: a stream that is left before its end, closed or not, gives its
connection back to the server (closed; a half-read response cannot be reused).

Each test has a platform of its own (``slow``), so the server's count of open
connections is exactly this test's."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

from inferencekey.local import LocalPlatform

from .harness import Api, open_connections, wait_connections_at_most

LONG = {"prompt": "a long answer please", "max_tokens": 400}


async def test_breaking_out_of_a_stream_closes_its_connection(
    api: Api, slow: LocalPlatform
) -> None:
    """``break`` out of a loop over a stream (no ``with``, no ``close()``), read
    mid-answer: the connection is closed, and the client stays usable."""
    ep = api.endpoint(slow)
    got = 0
    if api.is_async:
        async for _ in ep.generate_text_stream(**LONG):
            got += 1
            if got == 2:
                break
    else:
        for _ in ep.generate_text_stream(**LONG):
            got += 1
            if got == 2:
                break
    assert got == 2
    assert wait_connections_at_most(slow, 0) == 0
    assert (await api.call(ep.generate_text, prompt="hi", max_tokens=2)).text


async def test_closed_stream_closes_its_connection(api: Api, slow: LocalPlatform) -> None:
    """``close()`` and leaving ``with`` mid-answer close the connection."""
    ep = api.endpoint(slow)
    stream = await api.open_stream(ep, **LONG)
    await api.next_chunk(stream)
    assert open_connections(slow) == 1
    stream.close()
    assert wait_connections_at_most(slow, 0) == 0
    if api.is_async:
        async with ep.generate_text_stream(**LONG) as s:
            await s.__anext__()
            assert open_connections(slow) == 1
    else:
        with ep.generate_text_stream(**LONG) as s:
            next(s)
            assert open_connections(slow) == 1
    assert wait_connections_at_most(slow, 0) == 0


async def test_thirty_abandoned_streams_are_closed_server_side(
    api: Api, slow: LocalPlatform
) -> None:
    """Thirty streams, each read for one chunk and then dropped without ``close()``:
    the server ends up holding none of their connections."""
    ep = api.endpoint(slow)
    streams: list[Any] = []
    for _ in range(30):
        stream = await api.open_stream(ep, **LONG)
        await api.next_chunk(stream)
        streams.append(stream)
    assert open_connections(slow) == 30
    del stream
    streams.clear()
    gc.collect()
    left = wait_connections_at_most(slow, 0, timeout=10)
    assert left == 0, f"{left} of the 30 connections still open"


async def test_closing_a_stream_interrupts_a_read_in_progress(
    api: Api, fresh: LocalPlatform
) -> None:
    """``close()`` from another task or thread ("stop generating") ends a read that is
    waiting on a silent server at once: the reader sees the end of the stream, not a
    timeout a minute later, and the connection is closed."""
    ep = api.endpoint(fresh, "stall", None, stream_idle_timeout=60.0)
    stream = await api.open_stream(ep, prompt="hi")
    outcome: list[str] = []

    if api.is_async:

        async def read() -> None:
            outcome.extend([c.text async for c in stream])
            outcome.append("ended")

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        closed_at = time.monotonic()
        await stream.aclose()
        await asyncio.wait_for(reader, 10)
    else:

        def read_sync() -> None:
            outcome.extend(c.text for c in stream)
            outcome.append("ended")

        thread = threading.Thread(target=read_sync)
        thread.start()
        await asyncio.sleep(0.3)
        closed_at = time.monotonic()
        stream.close()
        thread.join(10)
        assert not thread.is_alive()
    assert outcome == ["ended"]
    assert time.monotonic() - closed_at < 5
    assert wait_connections_at_most(fresh, 0) == 0
