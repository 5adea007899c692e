"""The pytest plugin shipped with the package: the `inferencekey_platform` fixture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from _support import REPO, clean_env
from inferencekey.local import LocalPlatform


def test_fixture_is_available_in_this_suite(inferencekey_platform: LocalPlatform) -> None:
    p = inferencekey_platform
    assert p.base_url.startswith("http://127.0.0.1:")
    assert p.sdk_token.startswith("ik_sdk_")
    assert p.api_key.startswith("ik_live_")


USER_TESTS = """
import inferencekey.sync as iks

def spec(slug):
    return iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model="m")

def test_first(inferencekey_platform):
    p = inferencekey_platform
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    ref = mgmt.ensure(spec("bot"))
    assert str(getattr(ref.action, "value", ref.action)) == "created"
    mgmt.wait_until_ready(ref.workload_slug, timeout=5, silent=True)
    data = iks.DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
    assert data.endpoint(ref.workload_slug).generate_text(prompt="hi").text

def test_second_gets_a_fresh_platform(inferencekey_platform):
    p = inferencekey_platform
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    assert mgmt.delete("bot") is False

async def test_async_user(inferencekey_platform):
    import inferencekey
    p = inferencekey_platform
    mgmt = inferencekey.ManagementClient(
        base_url=p.base_url, project=p.project, sdk_token=p.sdk_token
    )
    async with mgmt.workload(spec("async-bot")) as ref:
        assert ref.workload_slug == "async-bot"
"""


def test_plugin_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_plugin_import_is_cheap() -> None:
    # pytest imports every plugin at start-up: importing this one must not start the
    # platform module, the native runtime or any thread.
    code = (
        "import os, sys, threading, inferencekey.pytest_plugin\n"
        "assert 'inferencekey.local' not in sys.modules\n"
        "assert threading.active_count() == 1\n"
        "assert len(os.listdir('/proc/self/task')) == 1, os.listdir('/proc/self/task')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
