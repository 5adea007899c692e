"""How finished native calls reach asyncio: in batches, through one wake-up descriptor per
thread, to the right futures, on every kind of event loop a thread may run."""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL
from inferencekey import DataClient, WorkloadSpec, _client
from inferencekey.local import LocalPlatform


def _pending() -> int:
    return _client._completions(asyncio.get_running_loop()).pending


async def test_concurrent_results_reach_their_own_callers(
    data: DataClient, sync_data: iks.DataClient, embed_slug: str
) -> None:
    texts = [f"ticket {i}: cannot reset 2FA" for i in range(64)]
    expected = [sync_data.endpoint(embed_slug).embed(input=t).embeddings[0] for t in texts]
    ep = data.endpoint(embed_slug)
    results = await asyncio.gather(*(ep.embed(input=t) for t in texts))
    for text, want, got in zip(texts, expected, results, strict=True):
        assert got.embeddings[0] == pytest.approx(want, abs=1e-6), text
    assert _pending() == 0


async def test_the_loop_polls_only_briefly(data: DataClient, chat_slug: str) -> None:
    ep = data.endpoint(chat_slug)
    await ep.generate_text(prompt="one call")
    # A call keeps the loop polling for a moment, then the loop may sleep again.
    await asyncio.sleep(0.01)
    assert _client._per_thread.polling is False
    # Many calls at once leave the loop to its own devices.
    await asyncio.gather(*(ep.generate_text(prompt=f"call {i}") for i in range(8)))
    await asyncio.sleep(0.01)
    assert _client._per_thread.polling is False


@pytest.fixture(scope="module")
def slow_platform() -> Iterator[LocalPlatform]:
    """Chat replies at 4 tokens a second, so a call can be cancelled mid-flight."""
    with LocalPlatform(readiness="instant", token_rate=4.0) as p:
        mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        ref = mgmt.ensure(WorkloadSpec(name="slow", slug="slow", backend="vllm", model=CHAT_MODEL))
        mgmt.wait_until_ready(ref.workload_slug, timeout=10, silent=True)
        yield p


async def test_a_cancelled_call_leaves_nothing_waiting(slow_platform: LocalPlatform) -> None:
    p = slow_platform
    ep = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key).endpoint("slow")
    stream = await ep.generate_text_stream(prompt="a long answer", max_tokens=400)

    async def read_all() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0.6)
    assert _pending() == 1  # the read waiting for the next token
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _pending() == 0
    # A late output of the aborted read, if any, finds no future and is dropped.
    await asyncio.sleep(0.1)
    assert _pending() == 0
    await stream.aclose()


class _NoReaderLoop(asyncio.SelectorEventLoop):
    """An event loop that cannot watch descriptors, like the proactor loop on Windows."""

    def add_reader(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError


def test_a_loop_without_add_reader_is_woken_another_way(
    platform: LocalPlatform, chat_slug: str
) -> None:
    async def calls() -> list[str]:
        data = DataClient(
            base_url=platform.base_url, project=platform.project, api_key=platform.api_key
        )
        ep = data.endpoint(chat_slug)
        results = await asyncio.gather(*(ep.generate_text(prompt=f"hi {i}") for i in range(8)))
        return [r.text for r in results]

    loop = _NoReaderLoop(selectors.DefaultSelector())
    try:
        assert all(loop.run_until_complete(calls()))
    finally:
        loop.close()
    # The next ordinary loop in this thread watches the descriptor again.
    assert asyncio.run(calls())


def test_loops_taking_turns_in_one_thread(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    ep = data.endpoint(chat_slug)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        # A call starts on the first loop, which then stops while it is in flight.
        started = first.create_task(ep.generate_text(prompt="first loop"))
        first.run_until_complete(asyncio.sleep(0))
        # Another loop of the same thread takes the wake-up descriptor meanwhile.
        assert second.run_until_complete(ep.generate_text(prompt="second loop")).text
        # Back on the first loop, its call still completes.
        assert first.run_until_complete(asyncio.wait_for(started, 10)).text
    finally:
        first.close()
        second.close()


def test_threads_with_loops_of_their_own(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    ep = data.endpoint(chat_slug)
    failures: list[BaseException] = []

    async def calls(n: int) -> None:
        results = await asyncio.gather(
            *(ep.generate_text(prompt=f"thread {n} call {i}") for i in range(20))
        )
        assert all(r.text for r in results)
        assert _pending() == 0

    def run(n: int) -> None:
        try:
            asyncio.run(calls(n))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
