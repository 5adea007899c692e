"""Where the real local models live, for ``inferencekey demo --real`` and the real-model
tests: llama.cpp's ``llama-server`` and two small GGUF models.

Each path comes from its environment variable when set, else from the cache directory
that ``scripts/real-models/`` fills (``$INFERENCEKEY_CACHE``, by default
``~/.cache/inferencekey``):

- ``INFERENCEKEY_LLAMA_SERVER``: ``<cache>/llama-server/0.3.36/bin/llama-server``, else
  ``llama-server`` on ``PATH``;
- ``INFERENCEKEY_CHAT_GGUF``: ``<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf``;
- ``INFERENCEKEY_EMBED_GGUF``: ``<cache>/models/all-MiniLM-L6-v2.F16.gguf``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBED_FILE = "all-MiniLM-L6-v2.F16.gguf"
CHAT_MODEL = "SmolLM2-135M-Instruct"
EMBED_MODEL = "all-MiniLM-L6-v2"
HOW_TO_GET = (
    "from a source checkout, run scripts/real-models/ci.sh (or build-llama-server.sh "
    "and fetch-models.sh in that folder), or set INFERENCEKEY_LLAMA_SERVER, "
    "INFERENCEKEY_CHAT_GGUF and INFERENCEKEY_EMBED_GGUF"
)


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The cache root of the real-model scripts."""
    root = environ.get("INFERENCEKEY_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "inferencekey"


@dataclass(frozen=True)
class RealModels:
    """The three files command mode needs to serve real models."""

    llama_server: Path
    chat_gguf: Path
    embed_gguf: Path

    @classmethod
    def locate(cls, environ: Mapping[str, str] = os.environ) -> RealModels:
        """The expected paths, whether or not the files exist (see :meth:`missing`)."""
        cache = cache_dir(environ)
        server = environ.get("INFERENCEKEY_LLAMA_SERVER")
        if server:
            llama_server = Path(server)
        else:
            llama_server = cache / "llama-server" / LLAMA_CPP_VERSION / "bin" / "llama-server"
            on_path = shutil.which("llama-server")
            if not llama_server.is_file() and on_path:
                llama_server = Path(on_path)
        models = cache / "models"
        return cls(
            llama_server=llama_server,
            chat_gguf=Path(environ.get("INFERENCEKEY_CHAT_GGUF") or models / CHAT_FILE),
            embed_gguf=Path(environ.get("INFERENCEKEY_EMBED_GGUF") or models / EMBED_FILE),
        )

    def missing(self) -> list[str]:
        """What is absent, as ``name (path)`` items; empty when everything is there."""
        out = []
        if not (self.llama_server.is_file() and os.access(self.llama_server, os.X_OK)):
            out.append(f"llama-server ({self.llama_server})")
        for name, path in (("chat model", self.chat_gguf), ("embedding model", self.embed_gguf)):
            if not path.is_file():
                out.append(f"{name} ({path})")
        return out

    def _command(self, model: Path, alias: str, *extra: str) -> str:
        # The emulator appends --host and --port.
        words = [str(self.llama_server), "-m", str(model), "--alias", alias]
        words += ["-c", "4096", "-np", "2", "-t", "2", "--no-webui", *extra]
        return shlex.join(words)

    def chat_command(self) -> str:
        """``config.command`` of a chat workload served by SmolLM2."""
        return self._command(self.chat_gguf, "smollm2")

    def embed_command(self) -> str:
        """``config.command`` of an embedding workload served by MiniLM."""
        return self._command(self.embed_gguf, "minilm", "--embeddings")
