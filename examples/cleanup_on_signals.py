"""Workloads are deleted when the process is asked to stop (SIGINT or SIGTERM).

A small service declares a workload, then answers prompts in a loop. Ctrl-C or a
``kill`` (as from a container runtime or a process manager) cancels the loop, and the
``finally`` block deletes the workload before the process exits with status 0. Left
alone, the loop stops by itself after ``--seconds`` (default 3).

Uses the platform named by the ``INFERENCEKEY_*`` environment variables, or an
embedded local platform when none is set::

    python examples/cleanup_on_signals.py --seconds 30   # then press Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from inferencekey import DataClient, ManagementClient, WorkloadSpec

SPEC = WorkloadSpec(
    name="Signal-safe chat",
    slug="signal-safe-chat",
    backend="vllm",
    model="Qwen/Qwen2.5-0.5B-Instruct",
)


async def serve(mgmt: ManagementClient, data: DataClient, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    stopped_by: list[str] = []

    def stop(signum: signal.Signals) -> None:
        stopped_by.append(signum.name)
        current.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)

    ref = await mgmt.ensure(SPEC)
    try:
        await mgmt.wait_until_ready(ref.workload_slug, timeout=300)
        print(f"serving {ref.workload_slug}; send SIGINT or SIGTERM to stop", flush=True)
        ep = data.endpoint(ref.workload_slug)
        deadline = loop.time() + seconds
        answered = 0
        while loop.time() < deadline:
            await ep.generate_text(prompt=f"ping {answered}", max_tokens=8)
            answered += 1
            await asyncio.sleep(0.05)
        print(f"answered {answered} prompts", flush=True)
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        print(f"stopping on {stopped_by[0]}", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        deleted = await mgmt.delete(ref.workload_slug)
        print(f"{ref.workload_slug}: {'deleted' if deleted else 'already gone'}", flush=True)


async def main(seconds: float) -> None:
    if any(name.startswith("INFERENCEKEY_") for name in os.environ):
        async with ManagementClient.from_env() as mgmt, DataClient.from_env() as data:
            await serve(mgmt, data, seconds)
        return

    from inferencekey.local import LocalPlatform

    async with LocalPlatform(readiness="instant") as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
        async with mgmt, data:
            await serve(mgmt, data, seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="serve this long at most")
    asyncio.run(main(parser.parse_args().seconds))
