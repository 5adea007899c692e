"""The process around the client: Ctrl-C in blocking calls, several event loops,
``fork`` (prefork servers and worker pools), and interpreter exit with calls in
flight. Each scenario runs in a child process of its own."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _support import REPO, platform_env
from inferencekey import DataClient, ManagementClient
from inferencekey.local import LocalPlatform

SIGINT_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import inferencekey
    import inferencekey.sync as iks

    what = sys.argv[1]
    stall = {"x-ik-fault": "stall"}
    try:
        print("blocking", flush=True)
        if what == "chat":
            iks.DataClient(_headers=stall).endpoint("chat").generate_text(prompt="hi")
        elif what == "stream":
            for _ in iks.DataClient(_headers=stall).endpoint("chat").generate_text_stream(
                prompt="hi"
            ):
                pass
        elif what == "wait":
            iks.ManagementClient(_headers=stall).wait_until_ready("chat", silent=True)
        elif what == "async":
            ep = inferencekey.DataClient(_headers=stall).endpoint("chat")
            asyncio.run(ep.generate_text(prompt="hi"))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    print("finished", flush=True)
    sys.exit(3)
    """
)


@pytest.mark.parametrize("what", ["chat", "stream", "wait", "async"])
def test_ctrl_c_interrupts_a_blocked_call(faulty: LocalPlatform, what: str) -> None:
    """SIGINT raises ``KeyboardInterrupt`` promptly in a call blocked on a silent
    server: a plain call, a stream read and ``wait_until_ready`` of the blocking
    client (which waits with the GIL released, handling signals every 50 ms), and
    ``asyncio.run`` around an async call."""
    with subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD, what],
        env=platform_env(faulty),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.strip())
            lines.put("<eof>")

        threading.Thread(target=pump, daemon=True).start()
        try:
            assert lines.get(timeout=30) == "blocking"
            time.sleep(0.5)  # the child is now blocked in the call
            os.kill(proc.pid, signal.SIGINT)
            sent = time.monotonic()
            line = lines.get(timeout=10)
            reaction = time.monotonic() - sent
            assert line == "interrupted"
            assert reaction < 2.0, f"KeyboardInterrupt after {reaction:.2f} s"
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()


# Waits for a forked child; a child that hangs is killed and reported as None.
REAP = textwrap.dedent(
    """
    import os, time

    def reap(pid, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None
            time.sleep(0.005)
    """
)

FORK_CHILD = REAP + textwrap.dedent(
    """
    import asyncio, os, sys, time
    import inferencekey
    import inferencekey.sync as iks

    slug = sys.argv[1]
    sync_ep = iks.DataClient.from_env().endpoint(slug)
    async_ep = inferencekey.DataClient.from_env().endpoint(slug)
    # The parent has a running runtime and pooled connections before it forks.
    assert sync_ep.generate_text(prompt="parent").text
    assert asyncio.run(async_ep.generate_text(prompt="parent")).text

    pid = os.fork()
    if pid == 0:
        try:
            ok = sync_ep.generate_text(prompt="child").text
            ok = ok and asyncio.run(async_ep.generate_text(prompt="child")).text
            ok = ok and "".join(c.text for c in sync_ep.generate_text_stream(prompt="child"))
            ok = ok and iks.DataClient.from_env().endpoint(slug).generate_text(prompt="new").text
            os._exit(0 if ok else 1)
        except BaseException as exc:
            print("child failed:", repr(exc), file=sys.stderr, flush=True)
            os._exit(2)
    code = reap(pid)
    if code is None:
        print("child hung", flush=True)
        sys.exit(4)
    assert sync_ep.generate_text(prompt="parent again").text
    assert asyncio.run(async_ep.generate_text(prompt="parent again")).text
    sys.exit(code)
    """
)


def test_forked_child_can_use_the_parents_clients(platform: LocalPlatform, chat_slug: str) -> None:
    """After ``os.fork()`` (gunicorn ``--preload``), the child's calls on clients made
    by the parent, and on new ones, work instead of hanging on the parent's runtime,
    and the parent's clients keep working."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHILD, chat_slug],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


FORK_BUSY_CHILD = REAP + textwrap.dedent(
    """
    import asyncio, os, sys, threading, time, warnings
    import inferencekey
    import inferencekey.sync as iks

    # Forking a process with threads is what this test is about.
    warnings.simplefilter("ignore", DeprecationWarning)
    slug, forks = sys.argv[1], int(sys.argv[2])
    sync_ep = iks.DataClient.from_env().endpoint(slug)
    async_ep = inferencekey.DataClient.from_env().endpoint(slug)
    stop = threading.Event()
    made = [0, 0]

    def crash(args):
        print("parent thread failed:", repr(args.exc_value), flush=True)
        os._exit(6)

    threading.excepthook = crash

    def blocking_calls(slot):
        while not stop.is_set():
            assert sync_ep.generate_text(prompt=f"busy {slot}").text
            made[0] += 1

    def async_calls():
        async def run():
            while not stop.is_set():
                texts = await asyncio.gather(
                    *(async_ep.generate_text(prompt=f"busy {i}") for i in range(8))
                )
                assert all(t.text for t in texts)
                made[1] += 1
        asyncio.run(run())

    threads = [threading.Thread(target=blocking_calls, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=async_calls))
    for t in threads:
        t.start()
    time.sleep(0.2)

    for n in range(forks):
        pid = os.fork()
        if pid == 0:
            try:
                ok = sync_ep.generate_text(prompt="child").text
                ok = ok and asyncio.run(async_ep.generate_text(prompt="child")).text
                os._exit(0 if ok else 1)
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr, flush=True)
                os._exit(2)
        code = reap(pid)
        if code != 0:
            what = "hung" if code is None else f"exited with {code}"
            print(f"child {n} {what}", flush=True)
            os._exit(4)
        time.sleep(0.01)
    # The parent's threads carry on after the forks.
    after_forks = list(made)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a parent thread hung"
    assert made[0] > after_forks[0] and made[1] > after_forks[1], (after_forks, made)
    print("ok", flush=True)
    """
)


def test_forking_while_other_threads_are_mid_call(platform: LocalPlatform, chat_slug: str) -> None:
    """Forks taken while three threads make blocking calls and a fourth runs an event
    loop with eight calls in flight: every child's calls (blocking and async) succeed,
    none hangs on a lock a vanished thread held, and the parent's threads carry on."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_BUSY_CHILD, chat_slug, "40"],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


POOL_CHILD = textwrap.dedent(
    """
    import asyncio, multiprocessing, sys
    import inferencekey
    import inferencekey.sync as iks

    slug = sys.argv[1]
    SYNC = iks.DataClient.from_env().endpoint(slug)
    ASYNC = inferencekey.DataClient.from_env().endpoint(slug)

    def task(i):
        text = SYNC.generate_text(prompt=f"task {i}").text
        text += asyncio.run(ASYNC.generate_text(prompt=f"task {i}")).text
        return len(text) > 0

    if __name__ == "__main__":
        assert SYNC.generate_text(prompt="warm the parent").text
        with multiprocessing.get_context("fork").Pool(3) as pool:
            results = pool.map_async(task, range(12)).get(timeout=30)
        assert results == [True] * 12, results
        print("ok", flush=True)
    """
)


def test_prefork_worker_pool_can_use_the_parents_clients(
    platform: LocalPlatform, chat_slug: str
) -> None:
    """A ``multiprocessing`` pool forked from a parent that already used the clients
    (Celery's prefork model): every worker's calls succeed."""
    result = subprocess.run(
        [sys.executable, "-c", POOL_CHILD, chat_slug],
        env=platform_env(platform),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_one_async_client_across_several_event_loops(
    platform: LocalPlatform, chat_slug: str
) -> None:
    """One client, used by successive ``asyncio.run()`` calls (each with its own,
    afterwards closed, event loop), works every time: no "Event loop is closed"."""
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
        both = await asyncio.gather(
            ep.generate_text(prompt="a", max_tokens=2), ep.generate_text(prompt="b", max_tokens=2)
        )
        return text + "".join(streamed) + "".join(r.text for r in both)

    for _ in range(4):
        assert asyncio.run(use())
    data.close()
    mgmt.close()


EXIT_CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import inferencekey
    import inferencekey.sync as iks

    slug = sys.argv[1]

    def client(fault=None):
        headers = {"x-ik-fault": fault} if fault else None
        return inferencekey.DataClient(_headers=headers).endpoint(slug)

    async def leave_calls_in_flight():
        stalled, late, normal = client("stall"), client("delay_ms=300"), client()
        tasks = [asyncio.create_task(stalled.generate_text(prompt="x")) for _ in range(5)]
        tasks += [asyncio.create_task(late.generate_text(prompt="x")) for _ in range(5)]
        stream = await normal.generate_text_stream(prompt="a long answer", max_tokens=400)
        await stream.__anext__()

        async def read_on():
            async for _ in stream:
                pass

        tasks.append(asyncio.create_task(read_on()))
        await asyncio.sleep(0.2)
        # Returning now leaves every task pending: asyncio.run cancels them.

    asyncio.run(leave_calls_in_flight())
    # A second loop whose call outlives it: asyncio.wait_for gives up on it.
    async def give_up():
        try:
            await asyncio.wait_for(client("delay_ms=500").generate_text(prompt="x"), 0.1)
        except asyncio.TimeoutError:
            pass

    asyncio.run(give_up())
    # And a thread still blocked in a call when the interpreter exits.
    blocked = iks.DataClient(_headers={"x-ik-fault": "stall"}).endpoint(slug)
    threading.Thread(target=lambda: blocked.generate_text(prompt="x"), daemon=True).start()
    time.sleep(0.2)
    """
)


def test_exit_with_calls_in_flight_prints_nothing(slow: LocalPlatform) -> None:
    """Leaving ``asyncio.run`` (and then the interpreter) while calls and a stream are
    in flight, or while a thread is blocked in a call, exits cleanly and silently: no
    traceback, no "Event loop is closed", no warning, no crash."""
    result = subprocess.run(
        [sys.executable, "-c", EXIT_CHILD, "chat"],
        env=platform_env(slow),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
