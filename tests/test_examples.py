"""Every example runs against the embedded platform and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

import inferencekey.sync as iks
from _support import REPO, clean_env, platform_env, run_python
from inferencekey.local import LocalPlatform

EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.py"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_on_the_embedded_platform(name: str) -> None:
    args = [f"examples/{name}"]
    if name == "cleanup_on_signals.py":
        args += ["--seconds", "0.3"]
    result = run_python(*args, env=clean_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_quickstart_against_an_external_platform(platform: LocalPlatform) -> None:
    result = run_python("examples/async_quickstart.py", env=platform_env(platform), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "streamed: " in result.stdout
    assert result.stdout.count("deleted") == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cleanup_on_signals_deletes_the_workload(
    platform: LocalPlatform, signum: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "examples/cleanup_on_signals.py", "--seconds", "60"],
        env=platform_env(platform),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("serving signal-safe-chat")
        mgmt = iks.ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
        )
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert f"stopping on {signum.name}" in out
        assert "signal-safe-chat: deleted" in out
        assert mgmt.delete("signal-safe-chat") is False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
