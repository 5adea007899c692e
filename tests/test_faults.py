"""Failures the platform can inject (the emulator's fault header): each surfaces as
the documented exception, and a stalled call can be cancelled or timed out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL, client_connections, port_of, wait_for
from inferencekey import ApiError, DataClient, InferenceKeyTimeout, WorkloadSpec
from inferencekey.local import LocalPlatform


@pytest.fixture(scope="module")
def faulty() -> Iterator[LocalPlatform]:
    with LocalPlatform(readiness="instant", _enable_faults=True) as p:
        mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        mgmt.ensure(WorkloadSpec(name="chat", slug="chat", backend="vllm", model=CHAT_MODEL))
        yield p


def client(p: LocalPlatform, fault: str, **options: float) -> DataClient:
    return DataClient(
        base_url=p.base_url,
        project=p.project,
        api_key=p.api_key,
        _headers={"x-ik-fault": fault, "x-ik-fault-key": fault},
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("status=500", 500, "internal"),
        ("status=429;retry_after=1", 429, "rate_limited"),
        ("status=504", 504, "upstream_unavailable"),
        ("html502", 502, None),
    ],
)
async def test_server_failures_are_api_errors(
    faulty: LocalPlatform, fault: str, status: int, code: str | None
) -> None:
    ep = client(faulty, fault, max_retries=0).endpoint("chat")
    with pytest.raises(ApiError) as info:
        await ep.generate_text(prompt="hi")
    assert info.value.status == status
    if code is not None:
        assert info.value.code == code
    assert "<html" not in str(info.value).lower() or len(str(info.value)) < 800


async def test_transient_503_is_retried(faulty: LocalPlatform) -> None:
    ep = client(faulty, "flap=2", max_retries=2).endpoint("chat")
    assert (await ep.generate_text(prompt="hi")).text


async def test_malformed_response_is_an_api_error(faulty: LocalPlatform) -> None:
    ep = client(faulty, "invalid_json", max_retries=0).endpoint("chat")
    with pytest.raises(ApiError) as info:
        await ep.generate_text(prompt="hi")
    assert info.value.status in (None, 200)


async def test_error_event_in_a_stream_raises(faulty: LocalPlatform) -> None:
    ep = client(faulty, "error_event").endpoint("chat")
    received: list[str] = []

    async def drain() -> None:
        async for chunk in ep.generate_text_stream(prompt="hi"):
            received.append(chunk.text)

    with pytest.raises(ApiError) as info:
        await drain()
    assert "".join(received)
    assert info.value.code == "upstream_error"


async def test_stream_cut_short_is_truncated(faulty: LocalPlatform) -> None:
    ep = client(faulty, "cut_after=200").endpoint("chat")
    with pytest.raises(ApiError) as info:
        async for _ in ep.generate_text_stream(prompt="a long enough reply please", max_tokens=200):
            pass
    assert info.value.code == "stream_truncated"


async def test_client_timeout_on_a_stalled_response(faulty: LocalPlatform) -> None:
    ep = client(faulty, "stall", timeout=0.5, max_retries=0).endpoint("chat")
    started = time.monotonic()
    with pytest.raises(InferenceKeyTimeout) as info:
        await ep.generate_text(prompt="hi")
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 5


async def test_cancelling_a_stalled_plain_call(faulty: LocalPlatform) -> None:
    port = port_of(faulty.base_url)
    ep = client(faulty, "stall", max_retries=0).endpoint("chat")
    before = client_connections(port)
    task = asyncio.create_task(ep.generate_text(prompt="hi"))
    await asyncio.sleep(0.3)
    assert client_connections(port) > before
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert await asyncio.to_thread(wait_for, lambda: client_connections(port) <= before, 3.0)
    ok = DataClient(base_url=faulty.base_url, project=faulty.project, api_key=faulty.api_key)
    assert (await ok.endpoint("chat").generate_text(prompt="hi")).text


def test_sync_timeout_on_a_stalled_response(faulty: LocalPlatform) -> None:
    data = iks.DataClient(
        base_url=faulty.base_url,
        project=faulty.project,
        api_key=faulty.api_key,
        timeout=0.5,
        max_retries=0,
        _headers={"x-ik-fault": "stall"},
    )
    with pytest.raises(TimeoutError):
        data.endpoint("chat").generate_text(prompt="hi")
