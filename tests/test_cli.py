"""The `inferencekey` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL, REPO, clean_env, platform_env, run_python, serve_http
from inferencekey.local import LocalPlatform

CLI = ("-m", "inferencekey")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_documents_exit_codes_and_environment() -> None:
    result = run_python(*CLI, "--help")
    assert result.returncode == 0
    for text in ("exit codes", "130", "INFERENCEKEY_SDK_TOKEN", "INFERENCEKEY_API_KEY", "demo"):
        assert text in result.stdout


def test_demo_runs_end_to_end() -> None:
    result = run_python(*CLI, "demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Streamed reply" in out
    assert "workloads deleted: 2" in out
    assert "similarity" in out.lower()
    assert "Rerank" in out
    assert "ready" in (out + result.stderr).lower()
    assert "Traceback" not in result.stderr


def test_demo_json_summary() -> None:
    result = run_python(*CLI, "demo", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["workloads_deleted"] == 2
    assert summary["streamed_reply"]
    assert summary["streamed_chunks"] >= 2
    matrix = summary["similarity"]
    assert len(matrix) == len(matrix[0]) >= 3
    assert all(abs(matrix[i][i] - 1.0) < 1e-3 for i in range(len(matrix)))
    scores = [item["score"] for item in summary["rerank"]]
    assert scores == sorted(scores, reverse=True)
    assert [s["name"] for s in summary["steps"]] == [
        "ensure", "readiness", "stream", "embed", "rerank", "delete",
    ]  # fmt: skip


def test_demo_real_says_how_to_get_what_is_missing(tmp_path: Path) -> None:
    # An empty cache and no llama-server on PATH: nothing to run.
    env = clean_env({"INFERENCEKEY_CACHE": str(tmp_path), "PATH": os.path.dirname(sys.executable)})
    result = run_python(*CLI, "demo", "--real", env=env)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "llama-server" in line
    assert str(tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf") in line
    assert "scripts/real-models/ci.sh" in line
    assert result.stdout == ""


@pytest.fixture
def spec_file(tmp_path: Path, slug: str) -> Path:
    path = tmp_path / "workload.toml"
    path.write_text(
        f'name = "CLI bot"\nslug = "{slug}"\nbackend = "vllm"\nmodel = "{CHAT_MODEL}"\n'
        'description = "from a file"\n\n[config]\ncommand = "vllm serve m"\n'
    )
    return path


def test_ensure_wait_delete_with_a_toml_file(
    platform: LocalPlatform, spec_file: Path, slug: str
) -> None:
    env = platform_env(platform)
    created = run_python(*CLI, "ensure", str(spec_file), env=env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith(f"created: {platform.project}/{slug}")

    again = run_python(*CLI, "ensure", str(spec_file), "--json", env=env)
    assert again.returncode == 0
    assert json.loads(again.stdout)["action"] == "unchanged"

    spec_file.write_text(spec_file.read_text().replace("from a file", "changed"))
    planned = run_python(*CLI, "ensure", str(spec_file), "--on-drift", "dry-run", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    body = json.loads(planned.stdout)
    assert body["action"] == "planned"
    assert body["plan"] == [{"field": "description", "live": "from a file", "desired": "changed"}]

    warned = run_python(*CLI, "ensure", str(spec_file), "--on-drift", "warn", env=env)
    assert warned.returncode == 0
    assert warned.stdout.startswith("drift_ignored")
    assert "description" in warned.stderr

    failed = run_python(*CLI, "ensure", str(spec_file), "--on-drift", "fail", env=env)
    assert failed.returncode == 2
    assert "description" in one_error_line(failed)

    updated = run_python(*CLI, "ensure", str(spec_file), env=env)
    assert updated.returncode == 0
    assert updated.stdout.startswith("updated")
    assert 'description: "from a file" -> "changed"' in updated.stdout

    waited = run_python(*CLI, "wait", slug, "--timeout", "30", env=env)
    assert waited.returncode == 0, waited.stderr
    assert f"ready: {slug}" in waited.stdout

    deleted = run_python(*CLI, "delete", slug, env=env)
    assert (deleted.returncode, deleted.stdout.strip()) == (0, f"deleted: {slug}")
    absent = run_python(*CLI, "delete", slug, "--json", env=env)
    assert absent.returncode == 0
    assert json.loads(absent.stdout) == {"workload_slug": slug, "deleted": False}


def test_ensure_with_a_json_file(platform: LocalPlatform, tmp_path: Path, slug: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"name": "J", "slug": slug, "backend": "vllm", "model": "m"}))
    result = run_python(*CLI, "ensure", str(path), env=platform_env(platform))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created")
    assert iks.ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    ).delete(slug)


def test_chat_and_embed(platform: LocalPlatform, chat_slug: str, embed_slug: str) -> None:
    env = platform_env(platform)
    plain = run_python(*CLI, "chat", chat_slug, "Say hello", "--max-tokens", "12", env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip()

    streamed = run_python(*CLI, "chat", chat_slug, "Say hello", "--stream", env=env)
    assert streamed.returncode == 0
    assert streamed.stdout.strip()

    as_json = run_python(
        *CLI, "chat", chat_slug, "Say hello", "--temperature", "0", "--json", env=env
    )
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["text"]

    embedded = run_python(*CLI, "embed", embed_slug, "one", "two", env=env)
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.startswith("2 vector(s) of ")

    full = run_python(*CLI, "embed", embed_slug, "one", "two", "three", "--json", env=env)
    vectors = json.loads(full.stdout)["embeddings"]
    assert len(vectors) == 3
    assert len({len(v) for v in vectors}) == 1


def test_api_errors_exit_1_on_one_line(platform: LocalPlatform, slug: str) -> None:
    env = platform_env(platform, INFERENCEKEY_SDK_TOKEN="ik_sdk_0badc0de_" + "5" * 64)
    result = run_python(*CLI, "delete", slug, env=env)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "AuthError" in line
    assert "5" * 64 not in line

    missing = run_python(*CLI, "chat", "no-such-workload", "hi", env=platform_env(platform))
    assert missing.returncode == 1
    assert "404" in one_error_line(missing)

    # wait's readiness view prints the failure itself, as its last line.
    unknown = run_python(*CLI, "wait", "no-such-workload", env=platform_env(platform))
    assert unknown.returncode == 1
    assert "404" in one_error_line(unknown)


@pytest.mark.parametrize(
    ("args", "env_overrides", "expected"),
    [
        (["demo", "--bogus"], {}, "unrecognized"),
        ([], {}, "required"),
        (["ensure"], {}, "required"),
        (["ensure", "/nonexistent/spec.toml"], {}, "not found"),
        (["ensure", "{bad_toml}"], {}, "invalid TOML"),
        (["ensure", "{bad_key}"], {}, "invalid workload spec"),
        (["ensure", "{blank_name}"], {}, "name"),
        (["ensure", "{good}", "--on-drift", "sometimes"], {}, "invalid choice"),
        (["delete", "x"], {"INFERENCEKEY_SDK_TOKEN": ""}, "INFERENCEKEY_SDK_TOKEN"),
        (["delete", "x"], {"INFERENCEKEY_PROJECT": ""}, "INFERENCEKEY_PROJECT"),
        (["delete", "x"], {"INFERENCEKEY_SDK_TOKEN": "{live}"}, "ik_live_"),
        (["chat", "x", "hi"], {"INFERENCEKEY_API_KEY": "{sdk}"}, "ik_sdk_"),
        (["chat", "x", "   "], {}, "prompt"),
        (["chat", "x", "hi", "--max-tokens", "0"], {}, "max_tokens"),
        (["wait", "x", "--timeout", "-3"], {}, "timeout"),
        (["delete", "x", "--base-url", "not a url"], {}, "url"),
        (["local", "--upstream", "nourl"], {}, "SLUG=URL"),
        (["local", "--port", "70000"], {}, "port"),
    ],
)
def test_bad_input_exits_2_on_one_line(
    platform: LocalPlatform,
    tmp_path: Path,
    args: list[str],
    env_overrides: dict[str, str],
    expected: str,
) -> None:
    files = {
        "bad_toml": "name = \n",
        "bad_key": 'name = "a"\nslug = "a"\nbackend = "vllm"\nmodel = "m"\nflavour = "x"\n',
        "blank_name": 'name = " "\nslug = "a"\nbackend = "vllm"\nmodel = "m"\n',
        "good": 'name = "a"\nslug = "a"\nbackend = "vllm"\nmodel = "m"\n',
    }
    replacements = {"live": platform.api_key, "sdk": platform.sdk_token}
    for name, content in files.items():
        (tmp_path / f"{name}.toml").write_text(content)
        replacements[name] = str(tmp_path / f"{name}.toml")
    args = [a.format(**replacements) for a in args]
    env = platform_env(platform)
    for key, value in env_overrides.items():
        value = value.format(**replacements)
        if value:
            env[key] = value
        else:
            del env[key]
    result = run_python(*CLI, *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_error_line(result)
    assert expected.lower() in line.lower()
    for secret in (platform.api_key, platform.sdk_token):
        assert secret not in result.stderr + result.stdout


class Running:
    """A child process whose stdout lines are read on a thread."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout: float = 20.0) -> str:
        return self.lines.get(timeout=timeout)

    def rest(self) -> list[str]:
        """Every line not read yet, once the process has closed its stdout."""
        self._pump_thread.join(timeout=10)
        remaining: list[str] = []
        while not self.lines.empty():
            remaining.append(self.lines.get())
        return remaining

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_exports(running: Running) -> dict[str, str]:
    env: dict[str, str] = {}
    while len(env) < 4:
        line = running.line()
        assert line.startswith("export INFERENCEKEY_"), line
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env


@pytest.fixture
def local_cli(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        running.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_local_prints_exports_and_serves(
    local_cli: list[Running], signum: signal.Signals, slug: str
) -> None:
    running = Running(
        *CLI, "local", "--readiness", "instant", "--project", "cli-proj", env=clean_env()
    )
    local_cli.append(running)
    env = read_exports(running)
    assert env["INFERENCEKEY_PROJECT"] == "cli-proj"
    assert env["INFERENCEKEY_SDK_TOKEN"].startswith("ik_sdk_")
    assert env["INFERENCEKEY_API_KEY"].startswith("ik_live_")
    mgmt = iks.ManagementClient(
        base_url=env["INFERENCEKEY_BASE_URL"],
        project=env["INFERENCEKEY_PROJECT"],
        sdk_token=env["INFERENCEKEY_SDK_TOKEN"],
    )
    ref = mgmt.ensure(iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model="m"))
    mgmt.wait_until_ready(ref.workload_slug, timeout=10, silent=True)
    data = iks.DataClient(
        base_url=env["INFERENCEKEY_BASE_URL"],
        project=env["INFERENCEKEY_PROJECT"],
        api_key=env["INFERENCEKEY_API_KEY"],
    )
    assert data.endpoint(ref.workload_slug).generate_text(prompt="hi").text
    code, stderr = running.stop(signum)
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_local_state_file_survives_a_restart(
    local_cli: list[Running], tmp_path: Path, slug: str
) -> None:
    state = tmp_path / "state.json"
    args = (*CLI, "local", "--readiness", "instant", "--state", str(state))
    first = Running(*args, env=clean_env())
    local_cli.append(first)
    env = read_exports(first)
    spec = iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model="m")

    def mgmt_for(env: dict[str, str]) -> iks.ManagementClient:
        return iks.ManagementClient(
            base_url=env["INFERENCEKEY_BASE_URL"],
            project=env["INFERENCEKEY_PROJECT"],
            sdk_token=env["INFERENCEKEY_SDK_TOKEN"],
        )

    assert mgmt_for(env).ensure(spec).action is not None
    assert first.stop(signal.SIGTERM)[0] == 0
    assert state.exists()
    assert oct(state.stat().st_mode & 0o777) == oct(0o600)

    second = Running(*args, env=clean_env())
    local_cli.append(second)
    env2 = read_exports(second)
    assert env2["INFERENCEKEY_SDK_TOKEN"] == env["INFERENCEKEY_SDK_TOKEN"]
    again = mgmt_for(env2).ensure(spec)
    assert str(getattr(again.action, "value", again.action)) == "unchanged"
    assert second.stop(signal.SIGTERM)[0] == 0


def test_local_json(local_cli: list[Running]) -> None:
    running = Running(*CLI, "local", "--json", "--readiness", "instant", env=clean_env())
    local_cli.append(running)
    env = json.loads(running.line())
    assert set(env) == {
        "INFERENCEKEY_BASE_URL", "INFERENCEKEY_PROJECT", "INFERENCEKEY_SDK_TOKEN",
        "INFERENCEKEY_API_KEY",
    }  # fmt: skip
    assert running.stop(signal.SIGTERM)[0] == 0


def test_ctrl_c_during_chat_exits_130(platform: LocalPlatform, local_cli: list[Running]) -> None:
    with LocalPlatform(readiness="instant", token_rate=3.0) as slow:
        mgmt = iks.ManagementClient(
            base_url=slow.base_url, project=slow.project, sdk_token=slow.sdk_token
        )
        mgmt.ensure(iks.WorkloadSpec(name="c", slug="c", backend="vllm", model="m"))
        proc = subprocess.Popen(
            [sys.executable, *CLI, "chat", "c", "a long reply", "--stream", "--max-tokens", "300"],
            env=platform_env(slow),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.read(1)  # streaming has begun
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=10) == 130
            assert proc.stderr is not None
            stderr = proc.stderr.read().decode()
            assert "Traceback" not in stderr
            assert "interrupted" in stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_ctrl_c_during_the_demo_deletes_its_workloads() -> None:
    running = Running(*CLI, "demo", env=clean_env())
    try:
        while running.line() != "Readiness (live):":
            pass
        time.sleep(0.3)  # inside the readiness wait
        code, stderr = running.stop(signal.SIGINT)
        assert code == 130, stderr
        assert "Traceback" not in stderr
        remaining = running.rest()
        assert "workloads deleted: 2" in remaining, remaining
    finally:
        running.kill()


def test_local_forwards_an_upstream_workload(local_cli: list[Running], slug: str) -> None:
    reply = {
        "id": "c-1",
        "object": "chat.completion",
        "model": "served-upstream",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "from upstream"},
             "finish_reason": "stop"}
        ],
    }  # fmt: skip
    with serve_http() as upstream:
        upstream.reply("POST", "/v1/chat/completions", 200, reply)
        running = Running(
            *CLI, "local", "--readiness", "instant",
            "--upstream", f"{slug}={upstream.base_url}/v1",
            env=clean_env(),
        )  # fmt: skip
        local_cli.append(running)
        env = read_exports(running)
        mgmt = iks.ManagementClient(
            base_url=env["INFERENCEKEY_BASE_URL"],
            project=env["INFERENCEKEY_PROJECT"],
            sdk_token=env["INFERENCEKEY_SDK_TOKEN"],
        )
        mgmt.ensure(iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model="m"))
        mgmt.wait_until_ready(slug, timeout=10, silent=True)
        chat = run_python(*CLI, "chat", slug, "hello", env=clean_env(env))
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == "from upstream"
        (forwarded,) = upstream.requests
        # The caller's key never reaches the upstream.
        assert env["INFERENCEKEY_API_KEY"] not in str(forwarded.headers)
        assert forwarded.json()["messages"] == [{"role": "user", "content": "hello"}]
        assert running.stop(signal.SIGTERM)[0] == 0


def test_the_example_spec_file(platform: LocalPlatform) -> None:
    env = platform_env(platform)
    planned = run_python(
        *CLI, "ensure", "examples/workload.toml", "--on-drift", "dry_run", "--json", env=env
    )
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["action"] == "planned"
