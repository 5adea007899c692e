"""Blocking twins of the asyncio clients: same names, same signatures, no ``await``.

Calls release the GIL while they wait, so other threads keep running, and a Ctrl-C
raises ``KeyboardInterrupt`` within a fraction of a second and closes the connection.
One client may be shared by many threads.

>>> from inferencekey.sync import DataClient
>>> with DataClient.from_env() as data:
...     print(data.endpoint("triage-bot").generate_text(prompt="Hello").text)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from . import _client, _native
from ._client import (
    _at_least_one,
    _chat_kwargs,
    _check_timeout,
    _documents,
    _endpoint_ref,
    _inputs,
    _not_ready,
    _on_drift,
    _spec_payload,
    _view,
    _warn_drift,
)
from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    DriftWarning,
    InferenceKeyError,
    InferenceKeyTimeout,
    PermissionDenied,
    ValidationError,
)
from .types import (
    Backend,
    DriftEntry,
    EmbedResult,
    EndpointRef,
    ExecutionPolicy,
    OnDrift,
    ReadinessEvent,
    RerankItem,
    RerankResult,
    TaskType,
    TextChunk,
    TextResult,
    Usage,
    WorkloadSpec,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Backend",
    "ConfigurationError",
    "DataClient",
    "DriftEntry",
    "DriftWarning",
    "EmbedResult",
    "Endpoint",
    "EndpointRef",
    "ExecutionPolicy",
    "InferenceKeyError",
    "InferenceKeyTimeout",
    "ManagementClient",
    "OnDrift",
    "PermissionDenied",
    "ReadinessEvent",
    "RerankItem",
    "RerankResult",
    "TaskType",
    "TextChunk",
    "TextResult",
    "TextStream",
    "Usage",
    "ValidationError",
    "WorkloadSpec",
]

ProgressCallback = Callable[[ReadinessEvent], Any]


def _call_progress(callback: ProgressCallback, event: ReadinessEvent) -> None:
    outcome = callback(event)
    if outcome is not None and hasattr(outcome, "__await__"):
        # A coroutine function given to the blocking client: run it to completion here.
        import asyncio

        async def finish() -> None:
            await outcome

        asyncio.run(finish())


class ManagementClient(_client._ManagementBase):
    """Blocking control-plane client; see :class:`inferencekey.ManagementClient`."""

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ensure(
        self,
        spec: WorkloadSpec | Mapping[str, Any],
        *,
        on_drift: OnDrift | str = OnDrift.RECONCILE,
        project: str | None = None,
    ) -> EndpointRef:
        """Makes the workload match ``spec``, idempotent by ``spec.slug``."""
        payload = _spec_payload(spec)
        mode = _on_drift(on_drift)
        ref = _endpoint_ref(self._native.ensure(payload, mode, project).wait())
        _warn_drift(ref, mode)
        return ref

    def wait_until_ready(
        self,
        workload_slug: str,
        *,
        project: str | None = None,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        silent: bool = False,
    ) -> None:
        """Follows the readiness stream until ``ready``; see the async twin."""
        limit = _check_timeout(timeout)
        follower = self._native.readiness(workload_slug, project)
        view = _view(workload_slug, silent, on_progress)
        deadline = time.monotonic() + limit
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _not_ready(workload_slug, limit)
                wait = min(remaining, _client._TICK if view is not None else _client._LONGEST_READ)
                item = follower.next(wait).wait()
                if item is None:
                    if view is not None:
                        view.tick()
                    continue
                event = ReadinessEvent(*item)
                if view is not None:
                    view.update(event)
                if on_progress is not None:
                    _call_progress(on_progress, event)
                if event.phase == "ready":
                    if view is not None:
                        view.finish(True)
                    return
        except BaseException as e:
            if view is not None:
                view.finish(False, str(e))
            raise
        finally:
            follower.close()

    def delete(self, workload_slug: str, *, project: str | None = None) -> bool:
        """Deletes the workload; ``True`` if it existed. Idempotent."""
        return bool(self._native.delete(workload_slug, project).wait())

    def workload(
        self,
        spec: WorkloadSpec | Mapping[str, Any],
        *,
        on_drift: OnDrift | str = OnDrift.RECONCILE,
        project: str | None = None,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        silent: bool = False,
    ) -> WorkloadLifecycle:
        """``with mgmt.workload(spec) as ref:`` ensures, waits until ready, and deletes
        the workload on every exit (``KeyboardInterrupt`` included)."""
        return WorkloadLifecycle(
            self,
            spec,
            on_drift=on_drift,
            project=project,
            timeout=timeout,
            on_progress=on_progress,
            silent=silent,
        )


class WorkloadLifecycle:
    """The context manager returned by :meth:`ManagementClient.workload`."""

    def __init__(
        self,
        client: ManagementClient,
        spec: WorkloadSpec | Mapping[str, Any],
        *,
        on_drift: OnDrift | str,
        project: str | None,
        timeout: float,
        on_progress: ProgressCallback | None,
        silent: bool,
    ) -> None:
        self._client = client
        self._spec = spec
        self._on_drift = on_drift
        self._project = project
        self._timeout = timeout
        self._on_progress = on_progress
        self._silent = silent
        self._ref: EndpointRef | None = None

    def __enter__(self) -> EndpointRef:
        ref = self._client.ensure(self._spec, on_drift=self._on_drift, project=self._project)
        self._ref = ref
        try:
            self._client.wait_until_ready(
                ref.workload_slug,
                project=ref.project_slug,
                timeout=self._timeout,
                on_progress=self._on_progress,
                silent=self._silent,
            )
        except BaseException:
            self._delete()
            raise
        return ref

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._delete()

    def _delete(self) -> None:
        ref, self._ref = self._ref, None
        if ref is not None and ref.action != "planned":
            self._client.delete(ref.workload_slug, project=ref.project_slug)


class DataClient(_client._DataBase):
    """Blocking data-plane client; see :class:`inferencekey.DataClient`."""

    def __enter__(self) -> DataClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def endpoint(self, workload_slug: str, *, api_key: str | None = None) -> Endpoint:
        """The endpoint of one workload; no request is made."""
        return Endpoint(self._native.endpoint(workload_slug, api_key))


class Endpoint(_client._EndpointBase):
    """Blocking twin of :class:`inferencekey.Endpoint`."""

    def generate_text(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> TextResult:
        """A chat completion from a ``prompt`` or ``messages`` (exactly one)."""
        kwargs = _chat_kwargs(prompt, messages, temperature, max_tokens, extra, timeout)
        return TextResult._from_native(self._native.generate_text(**kwargs).wait())

    def generate_text_stream(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> TextStream:
        """Opens a streamed chat completion (errors before the first chunk raise here)
        and returns an iterator of :class:`TextChunk`."""
        kwargs = _chat_kwargs(prompt, messages, temperature, max_tokens, extra, timeout)
        return TextStream(self._native.generate_text_stream(**kwargs).wait())

    def embed(self, *, input: str | Sequence[str]) -> EmbedResult:
        """Embeds one string or a list of strings; vectors come back in input order."""
        return EmbedResult._from_native(self._native.embed(_inputs(input)).wait())

    def rerank(
        self, *, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> RerankResult:
        """Scores ``documents`` against ``query``, highest first."""
        op = self._native.rerank(query, _documents(documents), _at_least_one("top_n", top_n))
        return RerankResult._from_native(op.wait())


class TextStream:
    """An open streamed chat completion: an iterator of :class:`TextChunk` and a context
    manager. ``close()`` (idempotent), leaving ``with``, an interrupted read or dropping
    the stream closes the connection."""

    def __init__(self, native: _native.TextStream) -> None:
        self._native = native
        self._buffer: deque[TextChunk] = deque()
        self._finished = False

    def __iter__(self) -> Iterator[TextChunk]:
        return self

    def __next__(self) -> TextChunk:
        if self._buffer:
            return self._buffer.popleft()
        if self._finished:
            raise StopIteration
        try:
            batch = self._native.next_batch().wait()
        except BaseException:
            self.close()
            raise
        if not batch:
            self.close()
            raise StopIteration
        self._buffer.extend(batch)
        return self._buffer.popleft()

    @property
    def closed(self) -> bool:
        return self._finished and not self._buffer

    def close(self) -> None:
        """Closes the connection now; idempotent."""
        self._finished = True
        self._native.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._buffer.clear()

    def text(self) -> str:
        """Reads the rest of the stream and returns its text."""
        return "".join(chunk.text for chunk in self)
