"""Logging at DEBUG from many threads: the client's and the emulator's log records,
written by runtime threads while Python threads wait on the runtime, never deadlock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from _support import REPO, clean_env

DEBUG_CHILD = textwrap.dedent(
    """
    import asyncio, io, json, logging, threading, time
    import inferencekey
    import inferencekey.sync as iks
    from inferencekey.local import LocalPlatform

    sink = io.StringIO()
    logging.basicConfig(level=logging.DEBUG, stream=sink,
                        format="%(asctime)s %(threadName)s %(name)s %(message)s")
    failures = []

    with LocalPlatform(readiness="instant") as p:
        options = dict(base_url=p.base_url, project=p.project)
        mgmt = iks.ManagementClient(sdk_token=p.sdk_token, **options)
        mgmt.ensure(iks.WorkloadSpec(name="chat", slug="chat", backend="vllm",
                                     model="Qwen/Qwen2.5-0.5B-Instruct"))
        mgmt.wait_until_ready("chat", silent=True)
        sync_ep = iks.DataClient(api_key=p.api_key, **options).endpoint("chat")
        async_ep = inferencekey.DataClient(api_key=p.api_key, **options).endpoint("chat")

        def blocking(n):
            try:
                for i in range(25):
                    assert sync_ep.generate_text(prompt=f"{n} {i}", max_tokens=4).text
                    assert list(sync_ep.generate_text_stream(prompt="s", max_tokens=3))
                    logging.getLogger("app").debug("thread %s call %s done", n, i)
            except BaseException as exc:
                failures.append(repr(exc))

        def with_a_loop(n):
            async def calls():
                for i in range(25):
                    assert (await async_ep.generate_text(prompt=f"{n} {i}", max_tokens=4)).text
                    assert [c async for c in async_ep.generate_text_stream(prompt="s")]
                    logging.getLogger("app").debug("loop %s call %s done", n, i)
            try:
                asyncio.run(calls())
            except BaseException as exc:
                failures.append(repr(exc))

        threads = [threading.Thread(target=blocking, args=(n,)) for n in range(6)]
        threads += [threading.Thread(target=with_a_loop, args=(n,)) for n in range(2)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

    lines = sink.getvalue().splitlines()
    print(json.dumps({
        "elapsed": elapsed,
        "failures": failures,
        "client_lines": sum(" inferencekey " in l and "status=" in l for l in lines),
        "server_lines": sum(" inferencekey.local " in l for l in lines),
    }))
    """
)


def test_eight_threads_logging_at_debug_finish_quickly() -> None:
    """Eight threads (six blocking, two running event loops) make 400 calls with the
    root logger at DEBUG, while the in-process emulator logs every request too: all
    finish within 5 s, with every client request logged."""
    result = subprocess.run(
        [sys.executable, "-c", DEBUG_CHILD],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,  # a deadlock shows up as this timeout
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failures"] == []
    assert report["elapsed"] < 5.0, report
    # 8 threads x 25 rounds x 2 calls, each logged with its status by the client.
    assert report["client_lines"] >= 400, report
    assert report["server_lines"] >= 400, report
