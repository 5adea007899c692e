"""wait_until_ready(): phases in order, progress callbacks (plain and coroutine), the
default output, silence, errors, and the timeout as a true deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from _support import CHAT_MODEL
from inferencekey import (
    ApiError,
    InferenceKeyError,
    InferenceKeyTimeout,
    ManagementClient,
    ReadinessEvent,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform

PHASES = ["scheduling", "provisioning", "bootstrapping", "ready"]


@pytest.fixture(scope="module")
def slow_platform() -> Iterator[LocalPlatform]:
    """About two seconds from create to ready, so every phase is observable."""
    with LocalPlatform(readiness="demo") as p:
        yield p


@pytest.fixture
def slow_mgmt(slow_platform: LocalPlatform) -> ManagementClient:
    p = slow_platform
    return ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)


def spec_for(slug: str, **extra: object) -> WorkloadSpec:
    return WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL, **extra)  # type: ignore[arg-type]


def distinct_phases(events: list[ReadinessEvent]) -> list[str]:
    phases: list[str] = []
    for event in events:
        phase = str(getattr(event.phase, "value", event.phase))
        if not phases or phases[-1] != phase:
            phases.append(phase)
    return phases


async def test_ready_workload_returns_at_once(mgmt: ManagementClient, chat_slug: str) -> None:
    events: list[ReadinessEvent] = []
    await mgmt.wait_until_ready(chat_slug, on_progress=events.append)
    assert distinct_phases(events) == ["ready"]


async def test_progress_callbacks_plain_and_coroutine(
    slow_mgmt: ManagementClient, slug: str
) -> None:
    await slow_mgmt.ensure(spec_for(slug))
    plain: list[ReadinessEvent] = []
    awaited: list[ReadinessEvent] = []

    async def on_progress(event: ReadinessEvent) -> None:
        await asyncio.sleep(0)
        awaited.append(event)

    await asyncio.gather(
        slow_mgmt.wait_until_ready(slug, timeout=30, on_progress=plain.append),
        slow_mgmt.wait_until_ready(slug, timeout=30, on_progress=on_progress),
    )
    for events in (plain, awaited):
        assert distinct_phases(events) == PHASES
        assert all(isinstance(e.elapsed_ms, int) for e in events)
        assert all(e.message for e in events)
        steps = {e.step for e in events if e.step}
        assert "model_load" in steps
    assert await slow_mgmt.delete(slug)


async def test_private_worker_skips_provisioning(slow_mgmt: ManagementClient, slug: str) -> None:
    await slow_mgmt.ensure(spec_for(slug, worker_id="wrk_41aa"))
    events: list[ReadinessEvent] = []
    await slow_mgmt.wait_until_ready(slug, timeout=30, on_progress=events.append)
    assert distinct_phases(events) == ["scheduling", "bootstrapping", "ready"]
    assert await slow_mgmt.delete(slug)


async def test_error_phase_raises_with_the_server_message(
    slow_mgmt: ManagementClient, slug: str
) -> None:
    await slow_mgmt.ensure(spec_for(slug, config={"simulate_failure": "GPU fell off the bus"}))
    events: list[ReadinessEvent] = []
    with pytest.raises(ApiError) as info:
        await slow_mgmt.wait_until_ready(slug, timeout=30, on_progress=events.append)
    assert "GPU fell off the bus" in str(info.value)
    assert info.value.code == "workload_error"
    assert not isinstance(info.value, TimeoutError)
    seen = distinct_phases(events)
    assert seen == PHASES[: len(seen)]
    assert "ready" not in seen
    assert await slow_mgmt.delete(slug)


@pytest.mark.parametrize("silent", [True, False])
async def test_timeout_is_a_deadline(slug: str, silent: bool) -> None:
    # Scheduling lasts a minute: after the first event the stream stays silent, so only
    # a deadline that bounds the blocked read can return in time.
    async with LocalPlatform(readiness={"scheduling": 60.0}) as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        await mgmt.ensure(spec_for(slug))
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            await mgmt.wait_until_ready(slug, timeout=0.5, silent=silent)
        elapsed = time.monotonic() - started
        assert isinstance(info.value, ApiError)
        assert isinstance(info.value, InferenceKeyTimeout)
        assert elapsed < 5, f"timeout=0.5 returned after {elapsed:.2f} s"
        assert await mgmt.delete(slug)


async def test_deleting_while_waiting_raises(slow_mgmt: ManagementClient, slug: str) -> None:
    await slow_mgmt.ensure(spec_for(slug))
    waiter = asyncio.create_task(slow_mgmt.wait_until_ready(slug, timeout=30, silent=True))
    await asyncio.sleep(0.2)
    assert await slow_mgmt.delete(slug)
    with pytest.raises(InferenceKeyError):
        await asyncio.wait_for(waiter, 10)


async def test_default_output_is_plain_lines_on_stderr_when_not_a_tty(
    slow_mgmt: ManagementClient, slug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await slow_mgmt.ensure(spec_for(slug))
    await slow_mgmt.wait_until_ready(slug, timeout=30)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) >= 4, captured.err
    assert "\r" not in captured.err
    assert "\x1b[" not in captured.err
    text = captured.err.lower()
    for phase in PHASES:
        assert phase in text
    assert slug in captured.err
    assert await slow_mgmt.delete(slug)


async def test_silent_prints_nothing(
    mgmt: ManagementClient, chat_slug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await mgmt.wait_until_ready(chat_slug, silent=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


async def test_on_progress_replaces_default_output(
    mgmt: ManagementClient, chat_slug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[ReadinessEvent] = []
    await mgmt.wait_until_ready(chat_slug, on_progress=events.append)
    assert events
    assert capsys.readouterr().err == ""


async def test_callback_exception_propagates(mgmt: ManagementClient, chat_slug: str) -> None:
    def explode(event: ReadinessEvent) -> None:
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        await mgmt.wait_until_ready(chat_slug, on_progress=explode)


TTY_CHILD = """
import sys
import inferencekey.sync as iks
from inferencekey.local import LocalPlatform

with LocalPlatform(readiness={"scheduling": 0.4, "image_pull": 0.4, "model_load": 0.4}) as p:
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    mgmt.ensure(iks.WorkloadSpec(name="tty", slug="tty-bot", backend="vllm", model="m"))
    assert sys.stderr.isatty()
    mgmt.wait_until_ready("tty-bot", timeout=30)
    print("done", file=sys.stderr, flush=True)
"""


def test_default_output_on_a_terminal_is_one_live_line() -> None:
    import os
    import pty
    import subprocess
    import sys

    from _support import REPO, clean_env

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", TTY_CHILD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=clean_env(),
        cwd=REPO,
    )
    os.close(follower)
    output = b""
    try:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            output += data
        assert proc.wait(timeout=30) == 0, output
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode("utf-8", "replace")
    before_done = text.split("done")[0]
    # Redrawn in place with carriage returns, ended by one newline.
    assert before_done.count("\r") >= 3, repr(text)
    assert before_done.replace("\r\n", "\n").count("\n") == 1, repr(text)
    assert "ready" in before_done
