"""The canned data-plane responses of the benchmark and the nginx server that serves them.

Every body is computed once, deterministically, so the drivers can check what each client
returned without talking to the orchestrator. Only the standard library is used: this
module is imported by the orchestrator and by the drivers, in every virtual environment.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

PROJECT = "bench"
CHAT_WORKLOAD = "chat"
EMBED_WORKLOAD = "embed"
STREAM_LONG_WORKLOAD = "stream10k"
STREAM_SHORT_WORKLOAD = "stream1k"
STREAM_LONG_CHUNKS = 10_000
STREAM_SHORT_CHUNKS = 1_000
EMBED_INPUTS = 64
EMBED_DIMS = 1024
MODEL = "Qwen/Qwen2.5-7B-Instruct"
EMBED_MODEL = "BAAI/bge-m3"
# Shaped like a real data key so that clients which check the shape locally accept it;
# the canned server never looks at it.
API_KEY = "ik_live_0badc0de_" + "5eed" * 16
PROMPT = "Summarise ticket 4411"
CHAT_TEXT = "Customer cannot reset 2FA; escalate to L2."
EMBED_TEXTS = [f"support ticket {i}: customer cannot reset 2FA" for i in range(EMBED_INPUTS)]

_WORDS = (
    " the", " customer", " cannot", " reset", " their", " two", "-factor", " token",
    " after", " a", " phone", " change", ";", " escalate", " to", " L2", ".", " We",
    " verified", " identity", " é", " 🙂",
)  # fmt: skip
_TEMPLATE = Path(__file__).with_name("nginx.conf.in")


def chat_path(workload: str) -> str:
    return f"/endpoint/{PROJECT}/{workload}/v1/chat/completions"


def embed_path() -> str:
    return f"/endpoint/{PROJECT}/{EMBED_WORKLOAD}/v1/embeddings"


def stream_pieces(chunks: int) -> list[str]:
    """The `delta.content` of every chunk of a canned stream, in order."""
    return [_WORDS[(i * 7 + i // 5) % len(_WORDS)] for i in range(chunks)]


def stream_text(chunks: int) -> str:
    return "".join(stream_pieces(chunks))


def embedding_matrix() -> list[list[float]]:
    """64 x 1024 values written with ten decimals, as a runtime's JSON would carry them."""
    rng = random.Random(4411)
    return [
        [round(rng.gauss(0.0, 0.03), 10) for _ in range(EMBED_DIMS)] for _ in range(EMBED_INPUTS)
    ]


def embedding_checksum(rows: list[list[float]]) -> float:
    """A few scattered values summed; cheap, yet catches a skipped or reordered decode."""
    return sum(rows[i][(i * 37) % EMBED_DIMS] for i in range(0, EMBED_INPUTS, 3))


def chat_body() -> bytes:
    body = {
        "id": "chatcmpl-bench-4411",
        "object": "chat.completion",
        "created": 1764806400,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CHAT_TEXT},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 12, "total_tokens": 31},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def stream_body(chunks: int) -> bytes:
    """A complete SSE body: every chunk carries content, the last one the finish reason."""
    out: list[str] = []
    last = chunks - 1
    for i, piece in enumerate(stream_pieces(chunks)):
        delta: dict[str, str] = {"content": piece}
        if i == 0:
            delta = {"role": "assistant", "content": piece}
        chunk = {
            "id": "chatcmpl-bench-stream",
            "object": "chat.completion.chunk",
            "created": 1764806400,
            "model": MODEL,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "stop" if i == last else None}
            ],
        }
        out.append("data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False))
        out.append("\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def embed_body() -> bytes:
    rows = embedding_matrix()
    data = ",".join(
        f'{{"object":"embedding","index":{i},"embedding":[{",".join(map(repr, row))}]}}'
        for i, row in enumerate(rows)
    )
    head = f'{{"object":"list","model":"{EMBED_MODEL}","data":['
    tail = '],"usage":{"prompt_tokens":640,"total_tokens":640}}'
    return (head + data + tail).encode()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class CannedServer:
    """nginx serving the canned bodies on 127.0.0.1; stopped by `close()`."""

    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(nginx: str, workdir: Path, workers: int = 1) -> CannedServer:
    """Write the bodies and a config under `workdir`, start nginx in the foreground.

    The parent of `workdir` must be traversable by the unprivileged user of nginx's workers.
    """
    bodies = workdir / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    # Workers started by root run as an unprivileged user: they must be able to read the bodies.
    for directory in (workdir, bodies):
        directory.chmod(0o755)
    (bodies / "chat.json").write_bytes(chat_body())
    (bodies / "stream10k.sse").write_bytes(stream_body(STREAM_LONG_CHUNKS))
    (bodies / "stream1k.sse").write_bytes(stream_body(STREAM_SHORT_CHUNKS))
    (bodies / "embed.json").write_bytes(embed_body())
    for sub in ("logs", "tmp"):
        (workdir / sub).mkdir(exist_ok=True)
    port = _free_port()
    conf = Template(_TEMPLATE.read_text()).substitute(
        workers=workers,
        workdir=workdir,
        bodies=bodies,
        port=port,
        chat_path=chat_path(CHAT_WORKLOAD),
        stream_long_path=chat_path(STREAM_LONG_WORKLOAD),
        stream_short_path=chat_path(STREAM_SHORT_WORKLOAD),
        embed_path=embed_path(),
    )
    conf_file = workdir / "nginx.conf"
    conf_file.write_text(conf)
    process = subprocess.Popen(
        [nginx, "-p", str(workdir), "-c", str(conf_file), "-e", str(workdir / "logs/error.log")],
        stdin=subprocess.DEVNULL,
    )
    server = CannedServer(f"http://127.0.0.1:{port}", process, workdir)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            log = (workdir / "logs/error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.close()
                raise RuntimeError("nginx did not start listening within 10 s") from None
            time.sleep(0.05)
    return server


def check_server(base_url: str) -> None:
    """POST each path once and compare with the canned body, so a misconfigured server
    fails loudly before any client is measured."""
    expected = {
        chat_path(CHAT_WORKLOAD): (chat_body(), "application/json"),
        chat_path(STREAM_LONG_WORKLOAD): (stream_body(STREAM_LONG_CHUNKS), "text/event-stream"),
        chat_path(STREAM_SHORT_WORKLOAD): (stream_body(STREAM_SHORT_CHUNKS), "text/event-stream"),
        embed_path(): (embed_body(), "application/json"),
    }
    for path, (body, content_type) in expected.items():
        request = urllib.request.Request(
            base_url + path,
            data=b'{"model":"bench","messages":[{"role":"user","content":"hi"}]}',
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + API_KEY},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            got = response.read()
            status = response.status
            got_type = response.headers.get("Content-Type", "")
        if status != 200 or got != body or not got_type.startswith(content_type):
            raise RuntimeError(
                f"canned server answered {path} with {status} {got_type!r}, {len(got)} bytes "
                f"(expected 200 {content_type!r}, {len(body)} bytes)"
            )
