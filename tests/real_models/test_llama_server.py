"""End to end with real models: the local platform in command mode runs llama.cpp's
``llama-server`` on SmolLM2-135M-Instruct (chat) and all-MiniLM-L6-v2 (embeddings), and
the SDK drives it all.

Runs only with ``INFERENCEKEY_REAL_MODELS=1`` (``scripts/real-models/ci.sh`` builds the
binary, fetches the models and sets it); then a missing binary or model is a failure,
not a skip. Paths: see ``inferencekey._real_models``.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import inferencekey.sync as iks
from inferencekey import ReadinessEvent, TaskType, WorkloadSpec
from inferencekey._real_models import CHAT_MODEL, EMBED_MODEL, HOW_TO_GET, RealModels
from inferencekey.local import LocalPlatform

ENABLED = os.environ.get("INFERENCEKEY_REAL_MODELS") == "1"
# Read at import: the suite's autouse fixture clears INFERENCEKEY_* before each test.
MODELS = RealModels.locate()

pytestmark = [
    pytest.mark.skipif(
        not ENABLED,
        reason="real-model test: needs INFERENCEKEY_REAL_MODELS=1 and llama-server with two "
        "GGUF models (scripts/real-models/ci.sh sets everything up and runs it)",
    ),
    pytest.mark.timeout(900),
]

PROMPT = "What is the capital of France? Answer in one sentence."
PHASES = ["scheduling", "provisioning", "bootstrapping", "ready"]


@pytest.fixture(scope="module")
def real() -> RealModels:
    missing = MODELS.missing()
    if missing:
        pytest.fail(f"INFERENCEKEY_REAL_MODELS=1 but missing: {', '.join(missing)}; {HOW_TO_GET}")
    return MODELS


@pytest.fixture
def platform(real: RealModels) -> Iterator[LocalPlatform]:
    with LocalPlatform(run_commands=True) as p:
        yield p


def descendants(root: int) -> dict[int, str]:
    """Processes below `root` (pid -> program path), from /proc."""
    parents: dict[int, int] = {}
    programs: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        programs[int(entry.name)] = cmdline[0].decode(errors="replace")
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = programs[pid]
                frontier.append(pid)
    return found


def llama_servers() -> set[int]:
    return {pid for pid, prog in descendants(os.getpid()).items() if prog.endswith("llama-server")}


def ensure_ready(
    mgmt: iks.ManagementClient, spec: WorkloadSpec
) -> tuple[list[ReadinessEvent], float]:
    started = time.monotonic()
    ref = mgmt.ensure(spec)
    assert ref.action == "created"
    events: list[ReadinessEvent] = []
    mgmt.wait_until_ready(spec.slug, timeout=300.0, on_progress=events.append)
    return events, time.monotonic() - started


def check_phases(events: list[ReadinessEvent]) -> None:
    phases = [e.phase for e in events]
    print(f"  readiness: {[(e.phase, e.step, e.message) for e in events]}")
    # The stream opens a moment after the create, so it may start past `scheduling`;
    # llama-server takes far longer than that to load a model, so `model_load` is seen.
    assert phases == PHASES[PHASES.index(phases[0]) :], phases
    loading = [e for e in events if e.phase == "bootstrapping"]
    assert loading, phases
    assert loading[0].step == "model_load"
    assert "llama-server" in events[-1].message


def raw_stream(platform: LocalPlatform, slug: str, body: dict[str, object]) -> str:
    """A streamed chat completion read with the standard library, byte for byte."""
    request = urllib.request.Request(
        f"{platform.base_url}/endpoint/{platform.project}/{slug}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {platform.api_key}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text: str = response.read().decode()
        return text


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


def test_chat_and_embeddings_served_by_llama_server(
    platform: LocalPlatform, real: RealModels
) -> None:
    print(f"\nllama-server: {real.llama_server}")
    mgmt = iks.ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    data = iks.DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    before = llama_servers()

    # ---- chat -------------------------------------------------------------------------
    chat_spec = WorkloadSpec(
        name="Real chat",
        slug="real-chat",
        backend="llamacpp",
        model=CHAT_MODEL,
        command=real.chat_command(),
    )
    events, seconds = ensure_ready(mgmt, chat_spec)
    print(f"chat workload ready in {seconds:.2f} s")
    check_phases(events)
    chat_pids = llama_servers() - before
    assert len(chat_pids) == 1, chat_pids

    chat = data.endpoint("real-chat")
    chat.generate_text(prompt="Hi", max_tokens=8)  # warm-up
    result = chat.generate_text(prompt=PROMPT, max_tokens=64, temperature=0.0)
    print(f"chat reply: {result.text!r} (finish_reason={result.finish_reason}, {result.usage})")
    assert result.text.strip()
    assert result.model == "smollm2", "llama-server echoes its alias"
    assert result.finish_reason in ("stop", "length")
    assert result.usage is not None
    assert result.usage.completion_tokens > 0

    pieces: list[str] = []
    finish: str | None = None
    with chat.generate_text_stream(prompt=PROMPT, max_tokens=64, temperature=0.0) as stream:
        for chunk in stream:
            pieces.append(chunk.text)
            finish = chunk.finish_reason or finish
    streamed = "".join(pieces)
    print(f"streamed reply: {streamed!r} ({sum(1 for p in pieces if p)} text chunks)")
    assert sum(1 for p in pieces if p) >= 2, "one event per token"
    assert streamed == result.text, "temperature 0: the stream says the same"
    assert finish in ("stop", "length")

    raw = raw_stream(
        platform,
        "real-chat",
        {"model": "x", "stream": True, "max_tokens": 16, "temperature": 0.0,
         "messages": [{"role": "user", "content": PROMPT}]},
    )  # fmt: skip
    frames = [f for f in raw.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]", frames[-3:]
    first = json.loads(frames[0].removeprefix("data: "))
    # llama-server's own framing, passed through: the role event has null content.
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": None}

    # ---- embeddings ---------------------------------------------------------------------
    embed_spec = WorkloadSpec(
        name="Real embeddings",
        slug="real-embed",
        backend="llamacpp",
        model=EMBED_MODEL,
        task_type=TaskType.EMBEDDING,
        command=real.embed_command(),
    )
    events, seconds = ensure_ready(mgmt, embed_spec)
    print(f"embedding workload ready in {seconds:.2f} s")
    check_phases(events)
    embed_pids = llama_servers() - before - chat_pids
    assert len(embed_pids) == 1, embed_pids

    texts = ["the cat sat on the mat", "a cat was sitting on a mat", "quarterly revenue grew"]
    embedded = data.endpoint("real-embed").embed(input=texts)
    vectors = [list(v) for v in embedded.embeddings]
    assert embedded.dim == 384
    assert [len(v) for v in vectors] == [384] * 3
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    assert all(abs(n - 1.0) < 1e-3 for n in norms), norms
    near, far = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    print(f"cosine(cat sat, cat sitting) = {near:.4f}; cosine(cat sat, revenue) = {far:.4f}")
    assert near > far + 0.3

    # ---- delete stops the processes -------------------------------------------------------
    assert mgmt.delete("real-chat") is True
    assert not (llama_servers() & chat_pids), "the chat server outlived its workload"
    assert llama_servers() & embed_pids, "only the deleted workload's server stops"
    assert mgmt.delete("real-embed") is True
    assert not (llama_servers() - before), "a llama-server outlived its workload"
    assert platform.phase("real-chat") is None
