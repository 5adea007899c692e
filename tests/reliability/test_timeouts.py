"""Timeouts: every wait has a bound, a timed-out attempt is never retried, and a
response that trickles in cannot outlive the per-attempt ``timeout``."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

import inferencekey
import inferencekey.sync as iks
from inferencekey import ApiError, InferenceKeyTimeout
from inferencekey.local import LocalPlatform

from .harness import Api, hits

PROMPT = "Summarise ticket 4411"


@pytest.mark.parametrize("fault", ["delay_ms=8000", "stall"])
async def test_read_timeout_is_not_retried(
    api: Api, faulty: LocalPlatform, key: str, fault: str
) -> None:
    """A timed-out attempt ends the call, however many retries are allowed: with a 1 s
    timeout and 5 retries the call takes about 1 s, not 6 (and with the defaults,
    60 s, not minutes). ``delay_ms`` withholds the status, ``stall`` sends the
    status and then nothing."""
    ep = api.endpoint(faulty, fault, key, timeout=1.0, max_retries=5)
    started = time.monotonic()
    with pytest.raises(InferenceKeyTimeout) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ApiError)
    assert hits(faulty, key) == 1
    assert elapsed < 4, f"{elapsed:.1f} s: the timeout was retried"


async def test_per_call_timeout_overrides_the_client(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    ep = api.endpoint(faulty, "stall", key, timeout=120.0)
    started = time.monotonic()
    with pytest.raises(InferenceKeyTimeout):
        await api.call(ep.generate_text, prompt=PROMPT, timeout=0.5)
    assert time.monotonic() - started < 4


async def test_drip_on_a_plain_call_hits_the_total_timeout(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """One byte every 500 ms keeps every individual read short, so only a bound on
    the whole response stops it: the reply (hundreds of bytes, minutes at this rate)
    is cut at the 1.5 s ``timeout``."""
    ep = api.endpoint(faulty, "drip_ms=500", key, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(InferenceKeyTimeout):
        await api.call(ep.generate_text, prompt=PROMPT)
    assert time.monotonic() - started < 6
    assert hits(faulty, key) == 1


async def test_drip_on_a_stream_hits_the_idle_timeout(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """On a stream, bytes that do not complete an event are not progress: a drip is
    cut by ``stream_idle_timeout`` even though a byte arrives every 200 ms."""
    ep = api.endpoint(faulty, "drip_ms=200", key, stream_idle_timeout=1.5)
    out = await api.stream(ep, prompt=PROMPT)
    assert isinstance(out.error, InferenceKeyTimeout), out.error
    assert out.seconds < 6
    assert hits(faulty, key) == 1


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects hang: its listener never accepts and its accept queue is
    full, so the kernel drops further handshakes."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        for _ in range(8):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        time.sleep(0.1)
        yield port


async def test_connect_timeout_bounds_each_connect(api: Api) -> None:
    """A connect that gets no answer ends at ``connect_timeout`` as a timeout; since
    nothing was sent, it is retried like any connect failure."""
    key = "ik_live_0badc0de_" + "0" * 64
    with unanswered_port() as port:
        for retries, least in ((0, 0.45), (1, 0.95)):
            cls = inferencekey.DataClient if api.is_async else iks.DataClient
            client = cls(
                base_url=f"http://127.0.0.1:{port}",
                project="p",
                api_key=key,
                connect_timeout=0.5,
                max_retries=retries,
            )
            started = time.monotonic()
            with pytest.raises(InferenceKeyTimeout) as info:
                await api.call(client.endpoint("chat").generate_text, prompt=PROMPT)
            elapsed = time.monotonic() - started
            client.close()
            assert "could not connect" in str(info.value)
            assert least <= elapsed < least + 5, (retries, elapsed)


@pytest.mark.parametrize("fault", ["keepalive_only", "stall"])
async def test_silent_readiness_stream_meets_the_wait_deadline(
    api: Api, faulty: LocalPlatform, key: str, fault: str
) -> None:
    """``wait_until_ready(timeout=...)`` raises at its deadline even when the readiness
    stream only sends keepalives (which keep the connection alive) or nothing at all
    (which makes the client reconnect)."""
    mgmt = api.mgmt(faulty, fault, key, stream_idle_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(InferenceKeyTimeout):
        await api.call(mgmt.wait_until_ready, workload_slug="chat", timeout=1.5, silent=True)
    assert time.monotonic() - started < 6
    assert hits(faulty, key) >= 1


async def test_readiness_interrupted_twice_reconnects_and_finishes(
    faulty: LocalPlatform, key: str
) -> None:
    """Two 503s on the readiness stream cost the 1 s and 2 s reconnect delays, even
    with the default progress view, whose redraw wakes the wait every second."""
    api = Api("async")
    mgmt = api.mgmt(faulty, "flap=2", key)
    started = time.monotonic()
    await mgmt.wait_until_ready("chat", timeout=30)
    elapsed = time.monotonic() - started
    api.close_all()
    assert hits(faulty, key) == 3
    assert 2.0 < elapsed < 15, elapsed
