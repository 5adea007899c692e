"""Resources over time: concurrency on one client, and file descriptors, threads and
memory that stay flat over many calls and many clients. The long runs happen in a
child process, so that only the client's own resources are measured (the platform
serving them lives in this process)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

import inferencekey.sync as iks
from _support import REPO, platform_env
from inferencekey import DataClient
from inferencekey.local import LocalPlatform

#: Shared by the child scripts: the process's open descriptors, OS threads and
#: resident memory, after a garbage collection. Descriptors closed by the runtime's
#: threads may lag a moment behind the close call, hence the short wait.
MEASURE = textwrap.dedent(
    """
    import gc, os, time

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def threads():
        return len(os.listdir("/proc/self/task"))

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def measure(settle_below=None):
        # Closed pools let go of their sockets on the runtime's thread shortly after
        # close(): wait until the count is down to `settle_below`, and in any case until
        # it has stopped falling (unchanged over 0.15 s), at most 5 s.
        gc.collect()
        deadline = time.monotonic() + 5
        while settle_below is not None and fds() > settle_below and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = [fds()]
        while time.monotonic() < deadline and (len(seen) < 4 or len(set(seen[-4:])) > 1):
            time.sleep(0.05)
            seen.append(fds())
        return {"fds": seen[-1], "threads": threads(), "rss": rss()}
    """
)


async def test_two_hundred_concurrent_calls_on_one_client(
    data: DataClient, chat_slug: str, embed_slug: str
) -> None:
    """200 calls in flight at once on one client (100 chats, 100 embeddings) all
    succeed, each with its own answer."""
    chat, embed = data.endpoint(chat_slug), data.endpoint(embed_slug)
    calls = [chat.generate_text(prompt=f"call {i}", max_tokens=4) for i in range(100)]
    embeds = [embed.embed(input=f"text {i}") for i in range(100)]
    both = asyncio.gather(asyncio.gather(*calls), asyncio.gather(*embeds))
    texts, vectors = await asyncio.wait_for(both, 60)
    assert all(t.text for t in texts)
    assert all(len(v.embeddings) == 1 for v in vectors)
    single = await embed.embed(input="text 42")
    assert single.embeddings[0] == pytest.approx(vectors[42].embeddings[0], abs=1e-6)


def test_one_blocking_client_shared_by_eight_threads(
    sync_data: iks.DataClient, chat_slug: str, embed_slug: str
) -> None:
    chat, embed = sync_data.endpoint(chat_slug), sync_data.endpoint(embed_slug)
    failures: list[BaseException] = []
    done: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(15):
                assert chat.generate_text(prompt=f"thread {n} call {i}", max_tokens=5).text
                assert len(embed.embed(input=[f"{n}-{i}", "fixed"]).embeddings) == 2
                assert "".join(c.text for c in chat.generate_text_stream(prompt="s", max_tokens=3))
                with lock:
                    done.append(n)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:3]
    assert len(done) == 8 * 15


SEQUENTIAL_CHILD = MEASURE + textwrap.dedent(
    """
    import asyncio, json, sys
    import inferencekey
    import inferencekey.sync as iks

    chat_slug, embed_slug, total = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def clients():
        adata, sdata = inferencekey.DataClient.from_env(), iks.DataClient.from_env()
        endpoints = (
            adata.endpoint(chat_slug), adata.endpoint(embed_slug),
            sdata.endpoint(chat_slug), sdata.endpoint(embed_slug),
        )
        return (adata, sdata), endpoints

    async def async_calls(n, achat, aembed):
        for i in range(n):
            if i % 3 == 0:
                assert (await achat.generate_text(prompt="x", max_tokens=3)).text
            elif i % 3 == 1:
                assert [c async for c in achat.generate_text_stream(prompt="x", max_tokens=3)]
            else:
                assert (await aembed.embed(input=["x", "y"])).embeddings

    def sync_calls(n, schat, sembed):
        for i in range(n):
            if i % 3 == 0:
                assert schat.generate_text(prompt="x", max_tokens=3).text
            elif i % 3 == 1:
                assert list(schat.generate_text_stream(prompt="x", max_tokens=3))
            else:
                assert sembed.embed(input=["x", "y"]).embeddings

    def calls(n, endpoints):
        achat, aembed, schat, sembed = endpoints
        asyncio.run(async_calls(n // 2, achat, aembed))
        sync_calls(n - n // 2, schat, sembed)

    # Warm up (runtime, allocator arenas), then measure with no client open.
    pair, endpoints = clients()
    calls(2000, endpoints)
    for c in pair:
        c.close()
    del pair, endpoints
    closed_before = measure()
    # Two long-lived clients make every call.
    pair, endpoints = clients()
    calls(1000, endpoints)
    open_before = measure()
    for _ in range(total // 1000):
        calls(1000, endpoints)
    open_after = measure()
    for c in pair:
        c.close()
    del pair, endpoints
    closed_after = measure(settle_below=closed_before["fds"])
    print(json.dumps({
        "closed_before": closed_before, "open_before": open_before,
        "open_after": open_after, "closed_after": closed_after,
    }))
    """
)


def test_ten_thousand_sequential_calls_keep_fds_threads_and_memory_flat(
    platform: LocalPlatform, chat_slug: str, embed_slug: str
) -> None:
    """10,000 calls in a row on two long-lived clients, alternating asyncio and
    blocking, plain, streamed and embeddings. After a warm-up: threads do not grow at
    all, resident memory grows by less than 5 %, and once the clients are closed the
    process holds exactly the descriptors it held before them. While they are open,
    their pools keep a couple of idle connections each (how many depends on timing),
    never more."""
    result = subprocess.run(
        [sys.executable, "-c", SEQUENTIAL_CHILD, chat_slug, embed_slug, "10000"],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, dict[str, int]] = json.loads(result.stdout)
    closed_before, closed_after = report["closed_before"], report["closed_after"]
    open_before, open_after = report["open_before"], report["open_after"]
    assert closed_after["fds"] == closed_before["fds"], report
    # Two pools of at most a couple of idle connections, one of them maybe closing.
    assert open_after["fds"] <= closed_before["fds"] + 6, report
    assert open_after["threads"] == open_before["threads"], report
    assert closed_after["threads"] == closed_before["threads"], report
    assert open_after["rss"] <= open_before["rss"] * 1.05, report


CYCLES_CHILD = MEASURE + textwrap.dedent(
    """
    import asyncio, json, sys
    import inferencekey
    import inferencekey.sync as iks

    chat_slug, total = sys.argv[1], int(sys.argv[2])

    async def cycle(i):
        # One client per cycle: each plane, asyncio and blocking, in turn; every
        # other round of four makes a call first (leaving a connection to release).
        call = (i // 4) % 2 == 0
        kind = i % 4
        if kind == 0:
            async with inferencekey.DataClient.from_env() as data:
                if call:
                    assert (await data.endpoint(chat_slug).generate_text(prompt="x")).text
        elif kind == 1:
            with iks.DataClient.from_env() as data:
                if call:
                    assert data.endpoint(chat_slug).generate_text(prompt="x").text
        elif kind == 2:
            async with inferencekey.ManagementClient.from_env() as mgmt:
                if call:
                    await mgmt.wait_until_ready(chat_slug, silent=True)
        else:
            with iks.ManagementClient.from_env() as mgmt:
                if call:
                    mgmt.wait_until_ready(chat_slug, silent=True)

    async def cycles(n):
        for i in range(n):
            await cycle(i)

    asyncio.run(cycles(40))  # warm up
    before = measure()
    asyncio.run(cycles(total))
    after = measure(settle_below=before["fds"])
    print(json.dumps({"before": before, "after": after}))
    """
)


def test_thousand_client_construct_close_cycles_leak_no_fds(
    platform: LocalPlatform, chat_slug: str
) -> None:
    """1,000 cycles of building and closing a client (both planes, asyncio and
    blocking, half of them after a call): no descriptor or thread is left behind."""
    result = subprocess.run(
        [sys.executable, "-c", CYCLES_CHILD, chat_slug, "1000"],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    before, after = report["before"], report["after"]
    assert after["fds"] <= before["fds"], report
    assert after["threads"] <= before["threads"], report
