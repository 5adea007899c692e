"""An in-process emulator of the InferenceKey platform, for development and tests.

It serves the control plane, the readiness stream and the OpenAI-compatible data plane
on 127.0.0.1 (built-in deterministic engines, no model weights), with the platform's
status codes and error envelope::

    from inferencekey.local import LocalPlatform
    from inferencekey.sync import ManagementClient

    with LocalPlatform() as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)

``readiness`` sets how long workloads take to become ready: ``"instant"`` (the
default, for tests), ``"demo"`` (about two seconds through every phase), a number of
seconds per phase and step, or a mapping with any of ``scheduling``, ``provisioning``,
``image_pull``, ``weights_download``, ``model_load`` and ``health_check`` (seconds;
unnamed ones take no time).

``run_commands=True`` turns on command mode: a workload of backend ``llamacpp``,
``vllm``, ``sglang`` or ``ollama`` whose ``config`` holds a ``command`` (for example
``llama-server -m model.gguf``) is served by running that command on this machine, in
its own process group, on a free port (a ``{port}`` placeholder in the command is
replaced, else the backend's port flag is appended). Its readiness follows the real
process: ``provisioning`` when it is spawned, ``bootstrapping`` (step ``model_load``)
until its health route answers, then ``ready``; a process that exits early puts the
workload in ``error`` with its last output lines. Data-plane calls are proxied to it.
Deleting or updating the workload, and stopping the platform, stop the process group;
so does the end of this Python process, however it ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from . import _native
from ._client import _run
from .errors import ConfigurationError

__all__ = ["LocalPlatform"]


class LocalPlatform:
    """A local platform; a context manager (sync and async) that starts and stops it.

    The credentials (``sdk_token``, ``read_only_token``, ``api_key``) are the full
    secrets of the configured project; ``repr`` never shows them.
    """

    def __init__(
        self,
        *,
        project: str = "demo",
        port: int = 0,
        readiness: str | float | Mapping[str, float] = "instant",
        keepalive_interval: float = 15.0,
        token_rate: float | None = None,
        embedding_dim: int = 384,
        upstreams: Mapping[str, str] | None = None,
        upstream_api_keys: Mapping[str, str] | None = None,
        failing_slugs: Iterable[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
        run_commands: bool = False,
        _enable_faults: bool = False,
    ) -> None:
        self._options: dict[str, Any] = {
            "project": project,
            "port": port,
            "readiness": dict(readiness) if isinstance(readiness, Mapping) else readiness,
            "keepalive_interval": keepalive_interval,
            "token_rate": token_rate,
            "embedding_dim": embedding_dim,
            "upstreams": None if upstreams is None else dict(upstreams),
            "upstream_api_keys": None if upstream_api_keys is None else dict(upstream_api_keys),
            "failing_slugs": None if failing_slugs is None else list(failing_slugs),
            "state_file": None if state_file is None else os.fspath(state_file),
            "enable_faults": _enable_faults,
            "run_commands": run_commands,
        }
        self._native: _native.LocalPlatform | None = None

    def _running(self) -> _native.LocalPlatform:
        if self._native is None or not self._native.running:
            raise ConfigurationError("the local platform is not running; call start() first")
        return self._native

    @property
    def running(self) -> bool:
        return self._native is not None and self._native.running

    def start(self) -> LocalPlatform:
        """Starts serving (no-op when already running) and returns ``self``."""
        if not self.running:
            self._native = _native.LocalPlatform.start(**self._options).wait()
        return self

    def stop(self) -> None:
        """Stops serving and waits for open connections to close; idempotent."""
        native, self._native = self._native, None
        if native is not None:
            native.stop().wait()

    async def astart(self) -> LocalPlatform:
        """Async :meth:`start`."""
        if not self.running:
            self._native = await _run(_native.LocalPlatform.start(**self._options))
        return self

    async def astop(self) -> None:
        """Async :meth:`stop`."""
        native, self._native = self._native, None
        if native is not None:
            await _run(native.stop())

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalPlatform:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self._running().base_url

    @property
    def project(self) -> str:
        """The configured project's slug."""
        return self._running().project

    @property
    def sdk_token(self) -> str:
        """The project's ``ik_sdk_`` token with every scope."""
        return self._running().sdk_token

    @property
    def read_only_token(self) -> str:
        """The project's ``ik_sdk_`` token with ``workload:read`` only."""
        return self._running().read_only_token

    @property
    def api_key(self) -> str:
        """The project's ``ik_live_`` key granted ``<project>/*``."""
        return self._running().api_key

    def mint_api_key(
        self, grants: Iterable[str] | None = None, *, project: str | None = None
    ) -> str:
        """A new ``ik_live_`` key with ``grants`` (``project/workload`` or ``project/*``;
        default: the whole project). ``project`` mints it in another project."""
        native = self._running()
        owner = project or native.project
        granted = [f"{owner}/*"] if grants is None else list(grants)
        if project is None:
            return native.mint_api_key(granted)
        return native.mint_api_key_in(project, granted)

    def mint_sdk_token(self, scopes: Iterable[str], *, project: str | None = None) -> str:
        """A new ``ik_sdk_`` token with ``scopes`` (``workload:read``, ``workload:write``,
        ``assignment:write``)."""
        native = self._running()
        return native.mint_sdk_token(project or native.project, list(scopes))

    def add_project(self, name: str) -> dict[str, str]:
        """Adds a project; returns its ``project``, ``sdk_token``, ``read_only_token`` and
        ``api_key``."""
        project, sdk, read_only, key = self._running().add_project(name)
        return {
            "project": project,
            "sdk_token": sdk,
            "read_only_token": read_only,
            "api_key": key,
        }

    def revoke(self, token: str) -> bool:
        """Revokes a token or key; ``True`` if it was known."""
        return self._running().revoke(token)

    def phase(self, workload_slug: str, *, project: str | None = None) -> tuple[str, str] | None:
        """The workload's current ``(phase, message)``, or ``None`` if unknown."""
        native = self._running()
        return native.phase(project or native.project, workload_slug)

    def workloads(self) -> list[dict[str, Any]]:
        """Every stored workload (all projects), in creation order."""
        return self._running().workloads()

    def __repr__(self) -> str:
        if self.running and self._native is not None:
            return (
                f"LocalPlatform(base_url={self._native.base_url!r}, "
                f"project={self._native.project!r})"
            )
        return f"LocalPlatform(project={self._options['project']!r}, running=False)"
