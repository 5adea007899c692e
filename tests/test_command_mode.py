"""Command mode from Python: the local platform runs a workload's ``config.command``.

A small OpenAI-compatible server written for the emulator's own tests plays the
command (the real llama-server run is in tests/real_models).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import inferencekey.sync as iks
from _support import REPO, clean_env
from inferencekey import ApiError, ReadinessEvent, WorkloadSpec
from inferencekey.local import LocalPlatform

SERVER = REPO / "crates" / "inferencekey-local" / "tests" / "fixtures" / "tiny_server.py"


def tiny_command(pid_file: Path, *extra: str) -> str:
    # The emulator appends --host and --port.
    return shlex.join(
        [sys.executable, str(SERVER), "--pid-file", str(pid_file), "--alias", "tiny", *extra]
    )


def read_pid(path: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise AssertionError(f"no pid in {path}")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def spec(slug: str, command: str) -> WorkloadSpec:
    return WorkloadSpec(
        name=slug, slug=slug, backend="llamacpp", model="tiny-model", command=command
    )


def test_a_command_workload_through_the_sdk(tmp_path: Path, slug: str) -> None:
    pid_file = tmp_path / "pid"
    with LocalPlatform(run_commands=True) as platform:
        mgmt = iks.ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
        )
        data = iks.DataClient(
            base_url=platform.base_url, project=platform.project, api_key=platform.api_key
        )
        mgmt.ensure(spec(slug, tiny_command(pid_file, "--ready-after", "1")))
        events: list[ReadinessEvent] = []
        mgmt.wait_until_ready(slug, timeout=60, on_progress=events.append)
        phases = [e.phase for e in events]
        assert phases[-2:] == ["bootstrapping", "ready"], phases
        assert events[-2].step == "model_load"
        pid = read_pid(pid_file)
        assert alive(pid)

        ep = data.endpoint(slug)
        result = ep.generate_text(prompt="hello there")
        assert result.text == "echo: hello there"
        assert result.model == "tiny", "the command's server answered"
        with ep.generate_text_stream(prompt="one two three") as stream:
            streamed = "".join(chunk.text for chunk in stream)
        assert streamed == "echo: one two three"

        assert mgmt.delete(slug) is True
        assert not alive(pid), "the process outlived its workload"


def test_an_early_exit_fails_the_wait_with_the_last_lines(tmp_path: Path, slug: str) -> None:
    command = tiny_command(tmp_path / "pid", "--say", "cannot open model.gguf", "--exit-early", "1")
    with LocalPlatform(run_commands=True) as platform:
        mgmt = iks.ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
        )
        mgmt.ensure(spec(slug, command))
        with pytest.raises(ApiError) as failed:
            mgmt.wait_until_ready(slug, timeout=60, silent=True)
        assert failed.value.code == "workload_error"
        message = str(failed.value)
        assert "exited with code 1 before it was ready" in message
        assert "cannot open model.gguf" in message


@pytest.fixture
def local_cli() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_no_process_survives_a_killed_host(
    tmp_path: Path, slug: str, local_cli: list[subprocess.Popen[str]]
) -> None:
    host = subprocess.Popen(
        [sys.executable, "-m", "inferencekey", "local", "--run-commands", "--readiness", "instant"],
        env=clean_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    local_cli.append(host)
    assert host.stdout is not None
    env: dict[str, str] = {}
    while len(env) < 4:
        line = host.stdout.readline()
        assert line.startswith("export INFERENCEKEY_"), line
        name, _, value = line.removeprefix("export ").strip().partition("=")
        env[name] = shlex.split(value)[0]
    mgmt = iks.ManagementClient(
        base_url=env["INFERENCEKEY_BASE_URL"],
        project=env["INFERENCEKEY_PROJECT"],
        sdk_token=env["INFERENCEKEY_SDK_TOKEN"],
    )
    pid_file = tmp_path / "pid"
    mgmt.ensure(spec(slug, tiny_command(pid_file)))
    mgmt.wait_until_ready(slug, timeout=60, silent=True)
    pid = read_pid(pid_file)
    assert alive(pid)
    host.send_signal(signal.SIGKILL)  # no cleanup code runs in the host
    host.wait(timeout=10)
    assert wait_gone(pid), f"process {pid} outlived its killed host"
    assert os.getpid() != pid
