"""Connections: a stream that is left before its end, closed or not, gives its
connection back to the server (closed; a half-read response cannot be reused)."""

from __future__ import annotations

import gc
from typing import Any

from inferencekey.local import LocalPlatform

from .harness import Api, open_connections, wait_connections_at_most

LONG = {"prompt": "a long answer please", "max_tokens": 400}


async def test_breaking_out_of_a_stream_closes_its_connection(
    api: Api, slow: LocalPlatform
) -> None:
    """``break`` out of a loop over a stream (no ``with``, no ``close()``), read
    mid-answer: the connection is closed, and the client stays usable."""
    before = open_connections(slow)
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
    assert wait_connections_at_most(slow, before) <= before
    assert (await api.call(ep.generate_text, prompt="hi", max_tokens=2)).text


async def test_closed_stream_closes_its_connection(api: Api, slow: LocalPlatform) -> None:
    """``close()`` and leaving ``with`` mid-answer close the connection."""
    before = open_connections(slow)
    ep = api.endpoint(slow)
    stream = await api.open_stream(ep, **LONG)
    await api.next_chunk(stream)
    assert open_connections(slow) >= before + 1
    stream.close()
    assert wait_connections_at_most(slow, before) <= before
    if api.is_async:
        async with ep.generate_text_stream(**LONG) as s:
            await s.__anext__()
    else:
        with ep.generate_text_stream(**LONG) as s:
            next(s)
    assert wait_connections_at_most(slow, before) <= before


async def test_thirty_abandoned_streams_are_closed_server_side(
    api: Api, slow: LocalPlatform
) -> None:
    """Thirty streams, each read for one chunk and then dropped without ``close()``:
    the server ends up holding none of their connections."""
    before = open_connections(slow)
    ep = api.endpoint(slow)
    streams: list[Any] = []
    for _ in range(30):
        stream = await api.open_stream(ep, **LONG)
        await api.next_chunk(stream)
        streams.append(stream)
    assert open_connections(slow) >= 30
    del stream
    streams.clear()
    gc.collect()
    left = wait_connections_at_most(slow, before, timeout=10)
    assert left <= before, f"{left} connections still open (was {before} before the streams)"
