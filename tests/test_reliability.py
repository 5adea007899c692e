"""Behaviour under stress and in awkward process situations: cancellation, SIGINT,
fork, threads, several event loops, resource growth, concurrency, secrets in logs."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL, REPO, client_connections, platform_env, port_of, wait_for
from inferencekey import (
    AuthError,
    DataClient,
    InferenceKeyError,
    ManagementClient,
    PermissionDenied,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform


@pytest.fixture(scope="module")
def slow_stream_platform() -> Iterator[LocalPlatform]:
    """Chat streams at 4 tokens a second, so a stream can be caught mid-flight."""
    with LocalPlatform(readiness="instant", token_rate=4.0) as p:
        yield p


@pytest.fixture(scope="module")
def slow_chat(slow_stream_platform: LocalPlatform) -> str:
    p = slow_stream_platform
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    ref = mgmt.ensure(WorkloadSpec(name="slow", slug="slow-chat", backend="vllm", model=CHAT_MODEL))
    mgmt.wait_until_ready(ref.workload_slug, timeout=10, silent=True)
    return ref.workload_slug


async def test_cancelled_stream_read_closes_its_connection(
    slow_stream_platform: LocalPlatform, slow_chat: str
) -> None:
    p = slow_stream_platform
    port = port_of(p.base_url)
    data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
    ep = data.endpoint(slow_chat)
    stream = await ep.generate_text_stream(prompt="a long answer please", max_tokens=400)
    await stream.__anext__()
    open_during = client_connections(port)
    assert open_during >= 1

    async def read_rest() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read_rest())
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    await stream.aclose()
    # A stream cannot go back to the pool mid-body: its socket must be closed.
    assert await asyncio.to_thread(
        wait_for, lambda: client_connections(port) <= open_during - 1, 3.0
    ), f"{client_connections(port)} connections still open (was {open_during})"
    # The client is still usable.
    assert (await ep.generate_text(prompt="hi", max_tokens=2)).text


async def test_cancelling_a_stream_consumer_returns_quickly(
    slow_stream_platform: LocalPlatform, slow_chat: str
) -> None:
    p = slow_stream_platform
    data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
    ep = data.endpoint(slow_chat)
    task = asyncio.create_task(collect_stream(ep.generate_text_stream(prompt="x", max_tokens=400)))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0
    assert (await ep.generate_text(prompt="hi", max_tokens=2)).text


async def collect_stream(stream: object) -> str:
    parts = [chunk.text async for chunk in stream]  # type: ignore[attr-defined]
    return "".join(parts)


async def test_breaking_out_of_a_stream_closes_its_connection(
    slow_stream_platform: LocalPlatform, slow_chat: str
) -> None:
    p = slow_stream_platform
    port = port_of(p.base_url)
    ep = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key).endpoint(slow_chat)
    before = client_connections(port)
    async with ep.generate_text_stream(prompt="long", max_tokens=400) as stream:
        async for _ in stream:
            break
        assert client_connections(port) >= before
    assert await asyncio.to_thread(wait_for, lambda: client_connections(port) <= before, 3.0)


SIGINT_CHILD = textwrap.dedent(
    """
    import sys
    import inferencekey.sync as iks

    ep = iks.DataClient.from_env().endpoint(sys.argv[1])
    try:
        for chunk in ep.generate_text_stream(prompt="long", max_tokens=400):
            print("chunk", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    print("finished", flush=True)
    sys.exit(3)
    """
)


def test_sigint_interrupts_a_blocking_stream_read(
    slow_stream_platform: LocalPlatform, slow_chat: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD, slow_chat],
        env=platform_env(slow_stream_platform),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("<eof>")

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert lines.get(timeout=20) == "chunk"
        time.sleep(0.3)  # the child is now blocked waiting for the next token
        os.kill(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        while True:
            line = lines.get(timeout=max(0.01, sent + 1.0 - time.monotonic()))
            if line != "chunk":
                break
        assert line == "interrupted"
        assert time.monotonic() - sent < 1.0
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import inferencekey
    import inferencekey.sync as iks

    slug = sys.argv[1]
    sync_ep = iks.DataClient.from_env().endpoint(slug)
    async_ep = inferencekey.DataClient.from_env().endpoint(slug)
    assert sync_ep.generate_text(prompt="parent").text
    assert asyncio.run(async_ep.generate_text(prompt="parent")).text

    pid = os.fork()
    if pid == 0:
        try:
            ok = sync_ep.generate_text(prompt="child").text
            ok = ok and asyncio.run(async_ep.generate_text(prompt="child")).text
            ok = ok and iks.DataClient.from_env().endpoint(slug).generate_text(prompt="new").text
            os._exit(0 if ok else 1)
        except BaseException as exc:
            print("child failed:", repr(exc), file=sys.stderr, flush=True)
            os._exit(2)
    deadline = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung", flush=True)
            sys.exit(4)
        time.sleep(0.02)
    assert sync_ep.generate_text(prompt="parent again").text
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_forked_child_can_use_the_client(platform: LocalPlatform, chat_slug: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, chat_slug],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_sync_client_shared_by_eight_threads(
    sync_data: iks.DataClient, chat_slug: str, embed_slug: str
) -> None:
    chat, embed = sync_data.endpoint(chat_slug), sync_data.endpoint(embed_slug)
    failures: list[BaseException] = []
    results: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(15):
                assert chat.generate_text(prompt=f"thread {n} call {i}", max_tokens=5).text
                vectors = embed.embed(input=[f"{n}-{i}", "fixed"]).embeddings
                assert len(vectors) == 2
                with lock:
                    results.append(n)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:3]
    assert len(results) == 8 * 15


def test_one_async_client_across_three_event_loops(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    ep = data.endpoint(chat_slug)

    async def use() -> str:
        await mgmt.wait_until_ready(chat_slug, silent=True)
        text = (await ep.generate_text(prompt="loop")).text
        streamed = [c.text async for c in ep.generate_text_stream(prompt="loop", max_tokens=5)]
        return text + "".join(streamed)

    for _ in range(3):
        assert asyncio.run(use())


async def test_two_hundred_concurrent_calls_on_one_client(
    data: DataClient, chat_slug: str, embed_slug: str
) -> None:
    chat, embed = data.endpoint(chat_slug), data.endpoint(embed_slug)
    calls = [chat.generate_text(prompt=f"call {i}", max_tokens=4) for i in range(100)]
    embeds = [embed.embed(input=f"text {i}") for i in range(100)]
    texts = await asyncio.wait_for(asyncio.gather(*calls), 60)
    vectors = await asyncio.wait_for(asyncio.gather(*embeds), 60)
    assert all(t.text for t in texts)
    assert all(len(v.embeddings) == 1 for v in vectors)
    single = await embed.embed(input="text 42")
    assert single.embeddings[0] == pytest.approx(vectors[42].embeddings[0], abs=1e-6)


def resource_counts() -> tuple[int, int, int]:
    return (
        len(os.listdir("/proc/self/fd")),
        threading.active_count(),
        len(os.listdir("/proc/self/task")),
    )


async def test_no_fd_or_thread_growth_over_a_thousand_calls(
    data: DataClient, chat_slug: str, embed_slug: str, sync_data: iks.DataClient
) -> None:
    chat, embed = data.endpoint(chat_slug), data.endpoint(embed_slug)
    sync_chat = sync_data.endpoint(chat_slug)

    async def round_of_calls(n: int) -> None:
        for i in range(n):
            match i % 4:
                case 0:
                    await chat.generate_text(prompt="x", max_tokens=3)
                case 1:
                    async for _ in chat.generate_text_stream(prompt="x", max_tokens=3):
                        pass
                case 2:
                    await embed.embed(input=["x", "y"])
                case _:
                    await asyncio.to_thread(sync_chat.generate_text, prompt="x", max_tokens=3)

    await round_of_calls(100)  # warm up pools and lazily started threads
    fds, py_threads, native_threads = resource_counts()
    await round_of_calls(1000)
    fds_after, py_threads_after, native_after = resource_counts()
    # asyncio.to_thread's executor may start a thread or two on demand; nothing else.
    assert fds_after <= fds + 2, (fds, fds_after)
    assert py_threads_after <= py_threads + 2, (py_threads, py_threads_after)
    assert native_after <= native_threads + 2, (native_threads, native_after)


async def test_no_secret_in_logs_reprs_or_errors(
    platform: LocalPlatform, caplog: pytest.LogCaptureFixture, slug: str, chat_slug: str
) -> None:
    secrets = [platform.sdk_token, platform.api_key, platform.read_only_token]
    caplog.set_level(logging.DEBUG)
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    data = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    texts: list[str] = [repr(mgmt), str(mgmt), repr(data), str(data), repr(platform)]
    ep = data.endpoint(chat_slug)
    texts += [repr(ep), str(ep)]
    await mgmt.ensure(WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL))
    await mgmt.wait_until_ready(slug, silent=True)
    await ep.generate_text(prompt="hi")
    async for _ in ep.generate_text_stream(prompt="hi"):
        pass
    await mgmt.delete(slug)
    wrong_kind = [
        ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.api_key
        ).ensure(WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL)),
        DataClient(base_url=platform.base_url, project=platform.project, api_key=platform.sdk_token)
        .endpoint(chat_slug)
        .generate_text(prompt="hi"),
        ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.read_only_token
        ).delete(chat_slug),
    ]
    for call in wrong_kind:
        with pytest.raises((PermissionDenied, AuthError)) as info:
            await call
        texts += [str(info.value), repr(info.value)]
    try:
        await (
            DataClient(
                base_url=platform.base_url, project=platform.project, api_key=platform.api_key + "0"
            )
            .endpoint(chat_slug)
            .generate_text(prompt="hi")
        )
    except InferenceKeyError as exc:
        texts += [str(exc), repr(exc)]
    client_lines = [r.getMessage() for r in caplog.records if r.name == "inferencekey"]
    assert any("/api/projects/" in line and "status=" in line for line in client_lines)
    haystack = "\n".join(texts) + "\n" + caplog.text
    haystack += "\n".join(str(r.args) for r in caplog.records)
    for secret in secrets:
        assert secret not in haystack
        assert secret[-64:] not in haystack
