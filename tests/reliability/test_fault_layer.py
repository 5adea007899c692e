"""The fault layer this suite relies on is off unless a test asks for it: a normal
``LocalPlatform`` and ``inferencekey local`` ignore the fault header and have no
test-only routes."""

from __future__ import annotations

import inspect
import json
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

import inferencekey.sync as iks
from _support import REPO, clean_env
from inferencekey.local import LocalPlatform


def assert_faults_inert(base_url: str, project: str, sdk_token: str) -> None:
    mgmt = iks.ManagementClient(
        base_url=base_url,
        project=project,
        sdk_token=sdk_token,
        max_retries=0,
        _headers={"x-ik-fault": "status=500", "x-ik-fault-key": "k"},
    )
    with mgmt:
        assert mgmt.delete("no-such-workload") is False, "the GET list was answered normally"
    for route in ("/_faults/hits/k", "/_faults/connections"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base_url + route, timeout=10).close()
        info.value.close()
        assert info.value.code == 404


def test_fault_layer_is_off_in_a_default_local_platform(platform: LocalPlatform) -> None:
    assert_faults_inert(platform.base_url, platform.project, platform.sdk_token)
    # Only a private, underscored argument turns it on.
    assert "_enable_faults" in inspect.signature(LocalPlatform).parameters
    assert "enable_faults" not in inspect.signature(LocalPlatform).parameters


def test_inferencekey_local_cannot_enable_faults() -> None:
    """``inferencekey local`` has no option for it, and its emulator ignores the
    header."""
    refused = subprocess.run(
        [sys.executable, "-m", "inferencekey", "local", "--enable-faults"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert refused.returncode == 2, refused.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "inferencekey", "local", "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert helped.returncode == 0
    assert "--enable-faults" not in helped.stdout
    assert "x-ik-fault" not in helped.stdout

    with subprocess.Popen(
        [sys.executable, "-m", "inferencekey", "local", "--readiness", "instant", "--json"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            env = json.loads(lines.get(timeout=30))
            assert_faults_inert(
                env["INFERENCEKEY_BASE_URL"],
                env["INFERENCEKEY_PROJECT"],
                env["INFERENCEKEY_SDK_TOKEN"],
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
