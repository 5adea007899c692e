"""Stream completion: a chat stream ends only at ``data: [DONE]``; anything else that
ends or stalls it raises, and nothing is retried once a chunk was delivered."""

from __future__ import annotations

import time

import pytest

from inferencekey import ApiError, InferenceKeyTimeout
from inferencekey.local import LocalPlatform

from .harness import Api, hits, open_connections, wait_connections_at_most

PROMPT = "Summarise ticket 4411 in a few sentences"


async def test_complete_stream_ends_at_done(api: Api, faulty: LocalPlatform, key: str) -> None:
    """The reference: an untouched stream yields its text and ends without error."""
    out = await api.stream(api.endpoint(faulty, None, key), prompt=PROMPT)
    assert out.error is None
    assert out.text
    assert out.finish_reasons == ["stop"]
    assert hits(faulty, key) == 1


async def test_keepalive_only_stream_times_out(api: Api, faulty: LocalPlatform, key: str) -> None:
    """Keepalive comments are not content: a stream that sends nothing else ends with a
    timeout after ``stream_idle_timeout`` instead of hanging."""
    ep = api.endpoint(faulty, "keepalive_only", key, stream_idle_timeout=1.0)
    out = await api.stream(ep, prompt=PROMPT)
    assert isinstance(out.error, InferenceKeyTimeout), out.error
    assert isinstance(out.error, TimeoutError)
    assert out.texts == []
    assert out.seconds < 10, "bounded by the 1 s idle timeout, not by the keepalives"
    assert hits(faulty, key) == 1


async def test_stalled_stream_times_out(api: Api, faulty: LocalPlatform, key: str) -> None:
    """Headers, then silence: the idle timeout ends it too."""
    ep = api.endpoint(faulty, "stall", key, stream_idle_timeout=1.0)
    out = await api.stream(ep, prompt=PROMPT)
    assert isinstance(out.error, InferenceKeyTimeout), out.error
    assert out.seconds < 10
    assert hits(faulty, key) == 1


async def test_done_ends_the_stream_while_the_socket_stays_open(
    api: Api, fresh: LocalPlatform, key: str
) -> None:
    """``[DONE]`` ends the iterator even though the server neither closes the response
    nor sends anything more; the connection is then closed by the client."""
    assert open_connections(fresh) == 0
    # A hang would only end at the 60 s idle timeout, as an error.
    ep = api.endpoint(fresh, "hold_after_done", key, stream_idle_timeout=60.0)
    out = await api.stream(ep, prompt=PROMPT)
    assert out.error is None, out.error
    assert out.text
    assert out.finish_reasons == ["stop"]
    assert out.seconds < 10
    assert wait_connections_at_most(fresh, 0) == 0, "the held response was left open"


async def test_stream_cut_mid_body_raises_truncated(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """A connection lost mid-stream is an error (code ``stream_truncated``), never a
    short but apparently complete answer, and it is not retried."""
    ep = api.endpoint(faulty, "cut_after=200", key)
    out = await api.stream(ep, prompt=PROMPT, max_tokens=200)
    assert isinstance(out.error, ApiError), out.error
    assert out.error.code == "stream_truncated"
    assert hits(faulty, key) == 1


async def test_stream_ending_cleanly_without_done_raises_truncated(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """Even a clean end of the body right after the ``finish_reason`` chunk is not a
    completion: only ``[DONE]`` is."""
    ep = api.endpoint(faulty, "drop_done", key)
    out = await api.stream(ep, prompt=PROMPT)
    assert out.finish_reasons == ["stop"], "every chunk but [DONE] arrived"
    assert isinstance(out.error, ApiError), out.error
    assert out.error.code == "stream_truncated"
    assert "[DONE]" in str(out.error)
    assert hits(faulty, key) == 1


async def test_stream_is_retried_only_before_its_response(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """Opening a stream is retried like any inference call (two 503s, then the
    stream); once its response has begun, nothing is retried (the tests below)."""
    out = await api.stream(api.endpoint(faulty, "flap=2", key), prompt=PROMPT)
    assert out.error is None, out.error
    assert out.finish_reasons == ["stop"]
    assert hits(faulty, key) == 3


async def test_error_event_after_200_raises_and_is_not_retried(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """An ``{"error": ...}`` event after a 200 raises with the server's code once the
    chunks before it were delivered; the request is not sent again."""
    ep = api.endpoint(faulty, "error_event", key, max_retries=5)
    out = await api.stream(ep, prompt=PROMPT)
    assert out.text == "Partial", "the tokens before the error were delivered"
    assert isinstance(out.error, ApiError), out.error
    assert out.error.code == "upstream_error"
    assert "failed mid-stream" in str(out.error)
    assert hits(faulty, key) == 1


async def test_plain_response_cut_mid_body_raises(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """A non-streamed response cut mid-body raises; it is not decoded as a shorter
    answer, nor retried after the status arrived."""
    ep = api.endpoint(faulty, "cut_after=40", key)
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert not isinstance(info.value, InferenceKeyTimeout)
    assert hits(faulty, key) == 1


async def test_unfinished_stream_is_open_until_read(
    api: Api, slow: LocalPlatform, key: str
) -> None:
    """Opening a stream returns at the response headers, before the text (so the idle
    and total rules above are what bound the rest)."""
    ep = api.endpoint(slow, None, key)
    started = time.monotonic()
    stream = await api.open_stream(ep, prompt=PROMPT, max_tokens=40)
    opened = time.monotonic() - started
    first = await api.next_chunk(stream)
    assert first is not None
    stream.close()
    # 40 tokens at 4 per second take ten seconds; opening must not wait for them.
    assert opened < 5
