"""The asyncio clients.

Every network method returns a coroutine: nothing is sent until it is awaited, and
cancelling the awaiting task aborts the native call, which closes its connection.
The blocking twins in :mod:`inferencekey.sync` share the helpers defined here.
"""

from __future__ import annotations

import enum
import os
import sys
import time
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _native
from .errors import ConfigurationError, DriftWarning, InferenceKeyTimeout, ValidationError
from .types import (
    DriftEntry,
    EmbedResult,
    EndpointRef,
    OnDrift,
    ReadinessEvent,
    RerankResult,
    TextChunk,
    TextResult,
    WorkloadSpec,
)

if TYPE_CHECKING:
    import asyncio

    from ._progress import ProgressView

__all__ = ["DataClient", "Endpoint", "ManagementClient", "TextStream"]

_T = TypeVar("_T")

ProgressCallback = Callable[[ReadinessEvent], "Awaitable[None] | None"]

_SPEC_KEYS = frozenset(
    (
        "name",
        "slug",
        "model",
        "backend",
        "task_type",
        "description",
        "project",
        "command",
        "vllm_version",
        "config",
        "worker_id",
        "gpu_resource_id",
        "execution_policy",
        "execution_policy_config",
    )
)

#: How often the live progress line is redrawn while no event arrives (seconds).
_TICK = 1.0
#: The longest single read of the readiness stream, so that ``timeout=math.inf`` works.
_LONGEST_READ = 3600.0


# -- shared helpers (also used by the blocking clients) ---------------------------------


def _user_agent_impl() -> str:
    names = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}
    impl = sys.implementation.name
    v = sys.version_info
    return f"{names.get(impl, impl)} {v.major}.{v.minor}"


def _sync_log_level() -> None:
    import logging

    logger = logging.getLogger("inferencekey")
    # A library never prints through logging's last-resort handler; users opt in by
    # configuring logging.
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    _native.set_log_level(logger.getEffectiveLevel())


def _wire(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _spec_payload(spec: WorkloadSpec | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, WorkloadSpec):
        items = {k: getattr(spec, k) for k in _SPEC_KEYS}
    elif isinstance(spec, Mapping):
        unknown = sorted(str(k) for k in spec if k not in _SPEC_KEYS)
        if unknown:
            raise ValidationError(
                f"unknown workload spec key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_SPEC_KEYS))})"
            )
        items = dict(spec)
    else:
        raise ValidationError(
            f"spec must be a WorkloadSpec or a mapping, not {type(spec).__name__}"
        )
    payload: dict[str, Any] = {}
    for key, value in items.items():
        value = _wire(value)
        if value is None:
            continue
        if key in ("config", "execution_policy_config"):
            if not isinstance(value, Mapping):
                raise ValidationError(f"spec.{key} must be a mapping")
            value = dict(value)
        elif not isinstance(value, str):
            raise ValidationError(f"spec.{key} must be a string, not {type(value).__name__}")
        payload[key] = value
    return payload


def _on_drift(value: OnDrift | str) -> str:
    mode = str(_wire(value))
    if mode not in OnDrift._value2member_map_:
        raise ValidationError(
            f"on_drift must be one of {', '.join(m.value for m in OnDrift)}; got {value!r}"
        )
    return mode


def _endpoint_ref(raw: tuple[str, str, str, list[tuple[str, Any, Any]]]) -> EndpointRef:
    plan = tuple(DriftEntry(f, live, desired) for f, live, desired in raw[3])
    return EndpointRef(raw[0], raw[1], raw[2], plan)


def _warn_drift(ref: EndpointRef, mode: str) -> None:
    if mode == OnDrift.WARN.value and ref.action == "drift_ignored":
        fields = ", ".join(e.field for e in ref.plan)
        warnings.warn(
            f"workload '{ref.workload_slug}' in project '{ref.project_slug}' drifted from "
            f"its spec ({fields}); left as it is",
            DriftWarning,
            stacklevel=3,
        )


def _messages(messages: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, str | None]] | None:
    if messages is None:
        return None
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValidationError("messages must be a list of {'role', 'content'} mappings")
    out: list[tuple[str, str | None]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValidationError(f"message {i} must be a mapping with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not (content is None or isinstance(content, str)):
            raise ValidationError(f"message {i} needs a string 'role' and a string 'content'")
        out.append((role, content))
    return out


def _inputs(input: str | Sequence[str]) -> list[str]:
    if isinstance(input, str):
        return [input]
    if isinstance(input, bytes) or not isinstance(input, Sequence):
        raise ValidationError("input must be a string or a list of strings")
    items = list(input)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValidationError(f"input[{i}] must be a string, not {type(item).__name__}")
    return items


def _documents(documents: Sequence[str]) -> list[str]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise ValidationError("documents must be a list of strings")
    items = list(documents)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValidationError(f"documents[{i}] must be a string, not {type(item).__name__}")
    return items


def _at_least_one(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer")
    if value < 1:
        raise ValidationError(f"{name} must be at least 1, got {value}")
    return value


def _chat_kwargs(
    prompt: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    temperature: float | None,
    max_tokens: int | None,
    extra: Mapping[str, Any] | None,
    timeout: float | None,
) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "messages": _messages(messages),
        "temperature": temperature,
        "max_tokens": _at_least_one("max_tokens", max_tokens),
        "extra": None if extra is None else dict(extra),
        "timeout": timeout,
    }


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _not_ready(slug: str, timeout: float) -> InferenceKeyTimeout:
    return InferenceKeyTimeout(f"workload '{slug.strip()}' was not ready within {timeout:.1f} s")


def _view(slug: str, silent: bool, on_progress: object) -> ProgressView | None:
    if silent or on_progress is not None:
        return None
    from ._progress import ProgressView

    return ProgressView(slug.strip())


def _client_options(
    timeout: float | None,
    max_retries: int | None,
    user_agent: str | None,
    connect_timeout: float | None,
    stream_idle_timeout: float | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The native constructor keywords shared by both clients."""
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ConfigurationError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    _sync_log_level()
    return {
        "timeout": timeout,
        "max_retries": max_retries,
        "user_agent": user_agent,
        "connect_timeout": connect_timeout,
        "stream_idle_timeout": stream_idle_timeout,
        "user_agent_impl": _user_agent_impl(),
        "_headers": None if headers is None else list(headers.items()),
    }


# -- the asyncio bridge -----------------------------------------------------------------


# Per thread: the native queue where finished calls wait for that thread's event loops
# (`completions`), and a weak reference to the loop its descriptor was last registered
# with (`loop`). Created on first use, so importing the package stays cheap.
_per_thread: Any = None


def _thread_state() -> Any:
    global _per_thread
    if _per_thread is None:
        import threading

        _per_thread = threading.local()
    return _per_thread


def _forget_after_fork() -> None:
    # A child must not share its parent's wake-up socket.
    global _per_thread
    _per_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _completions(loop: asyncio.AbstractEventLoop) -> _native.Completions:
    """This thread's completion queue, watched by `loop`."""
    state = _per_thread or _thread_state()
    completions: _native.Completions | None = getattr(state, "completions", None)
    if completions is None:
        completions = state.completions = _native.Completions()
    last: Callable[[], object] | None = getattr(state, "loop", None)
    if last is None or last() is not loop:
        # A loop keeps the registration until it is closed; registering again with a
        # loop that already has it only replaces the callback.
        try:
            loop.add_reader(completions.fileno(), completions.drain)
            completions.wake_with(None)
        except NotImplementedError:
            completions.wake_with(loop)
        try:
            state.loop = weakref.ref(loop)
        except TypeError:
            state.loop = lambda: loop
        # A poll scheduled on another loop runs only with that loop.
        state.polling = False
    return completions


#: After a call starts or finishes, how long (seconds) the event loop keeps polling for
#: a finished call instead of sleeping in `select`. On a virtual machine a sleeping
#: thread takes tens of microseconds to wake, as long as a fast server takes to answer.
_POLL_WINDOW = 200e-6
#: Polling pays off for a loop waiting on a call or two; with more in flight the loop
#: seldom sleeps anyway, and the CPU is better left to the calls.
_POLL_MAX_PENDING = 2


def _keep_loop_awake(loop: asyncio.AbstractEventLoop, completions: _native.Completions) -> None:
    """Starts (or extends) a short poll of `completions` on `loop`: a callback that
    reschedules itself, so the loop's `select` does not block while it runs."""
    state = _per_thread
    state.poll_until = loop.time() + _POLL_WINDOW
    if not getattr(state, "polling", False) and completions.pending <= _POLL_MAX_PENDING:
        state.polling = True
        loop.call_soon(_poll, loop, completions, state)


def _poll(loop: asyncio.AbstractEventLoop, completions: _native.Completions, state: Any) -> None:
    if completions.ready:
        completions.drain()
        state.poll_until = loop.time() + _POLL_WINDOW
    pending = completions.pending
    if 0 < pending <= _POLL_MAX_PENDING and loop.time() < state.poll_until:
        loop.call_soon(_poll, loop, completions, state)
    else:
        state.polling = False


async def _run(op: _native.Operation, *, poll: bool = True) -> Any:
    """Runs a native operation on the shared runtime and awaits its result; `poll`
    keeps the loop awake for a moment (see `_keep_loop_awake`), which stream reads, whose
    data is usually there already, do without."""
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    completions = _completions(loop)
    op.start(completions, future)
    if poll:
        _keep_loop_awake(loop, completions)
    try:
        return await future
    except asyncio.CancelledError:
        op.cancel()
        raise


async def _shielded(awaitable: Awaitable[_T]) -> _T:
    """Awaits to completion even if the calling task is cancelled meanwhile; the
    cancellation is re-raised afterwards."""
    import asyncio

    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# -- control plane ----------------------------------------------------------------------


_M = TypeVar("_M", bound="_ManagementBase")
_D = TypeVar("_D", bound="_DataBase")


class _ManagementBase:
    """Construction, configuration and closing, shared by both control-plane clients."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        project: str | None = None,
        sdk_token: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        _headers: Mapping[str, str] | None = None,
    ) -> None:
        self._native = _native.ManagementClient(
            base_url=base_url,
            project=project,
            sdk_token=sdk_token,
            **_client_options(
                timeout, max_retries, user_agent, connect_timeout, stream_idle_timeout, _headers
            ),
        )

    @classmethod
    def from_env(
        cls: type[_M],
        *,
        base_url: str | None = None,
        project: str | None = None,
        sdk_token: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
    ) -> _M:
        """A client from the ``INFERENCEKEY_*`` variables, overridden by any argument."""
        return cls(
            base_url=base_url,
            project=project,
            sdk_token=sdk_token,
            timeout=timeout,
            max_retries=max_retries,
            user_agent=user_agent,
            connect_timeout=connect_timeout,
            stream_idle_timeout=stream_idle_timeout,
        )

    @property
    def base_url(self) -> str:
        return self._native.base_url

    @property
    def project(self) -> str | None:
        return self._native.project

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, project={self.project!r}, "
            f"sdk_token={self._native.sdk_token!r})"
        )

    def close(self) -> None:
        """Releases the connection pool (calls in flight finish first); idempotent."""
        self._native.close()


class ManagementClient(_ManagementBase):
    """Control-plane client (``ik_sdk_`` token): ensure, wait until ready, delete.

    >>> async with ManagementClient.from_env() as mgmt:
    ...     ref = await mgmt.ensure(spec)
    ...     await mgmt.wait_until_ready(ref.workload_slug)

    Configuration: explicit argument > ``INFERENCEKEY_*`` environment variable > default.
    ``timeout`` bounds one attempt (seconds, default 60), ``max_retries`` the retries
    (default 2), ``user_agent`` is appended to the User-Agent. A client is safe to share
    across tasks and threads and owns one connection pool; ``close()`` releases it.
    """

    async def aclose(self) -> None:
        """Releases the connection pool; idempotent."""
        self.close()

    async def __aenter__(self) -> ManagementClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ensure(
        self,
        spec: WorkloadSpec | Mapping[str, Any],
        *,
        on_drift: OnDrift | str = OnDrift.RECONCILE,
        project: str | None = None,
    ) -> EndpointRef:
        """Makes the workload match ``spec``, idempotent by ``spec.slug``.

        The project is ``project``, else ``spec.project``, else the client's.
        """
        payload = _spec_payload(spec)
        mode = _on_drift(on_drift)
        ref = _endpoint_ref(await _run(self._native.ensure(payload, mode, project)))
        _warn_drift(ref, mode)
        return ref

    async def wait_until_ready(
        self,
        workload_slug: str,
        *,
        project: str | None = None,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        silent: bool = False,
    ) -> None:
        """Follows the readiness stream until ``ready``.

        Raises ``ApiError`` (code ``workload_error``) with the server's message on
        ``error``, and ``InferenceKeyTimeout`` once ``timeout`` seconds have passed, even
        while no event arrives. ``on_progress`` (a function or coroutine function) gets
        every :class:`ReadinessEvent`; without it, and unless ``silent``, progress is
        shown on ``sys.stderr``.
        """
        limit = _check_timeout(timeout)
        follower = self._native.readiness(workload_slug, project)
        view = _view(workload_slug, silent, on_progress)
        deadline = time.monotonic() + limit
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _not_ready(workload_slug, limit)
                wait = min(remaining, _TICK if view is not None else _LONGEST_READ)
                item = await _run(follower.next(wait))
                if item is None:
                    if view is not None:
                        view.tick()
                    continue
                event = ReadinessEvent(*item)
                if view is not None:
                    view.update(event)
                if on_progress is not None:
                    outcome = on_progress(event)
                    if outcome is not None and hasattr(outcome, "__await__"):
                        await outcome
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

    async def delete(self, workload_slug: str, *, project: str | None = None) -> bool:
        """Deletes the workload; ``True`` if it existed. Idempotent."""
        return bool(await _run(self._native.delete(workload_slug, project)))

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
        """``async with mgmt.workload(spec) as ref:`` ensures the workload, waits until it
        is ready, and deletes it on every exit (exception and cancellation included)."""
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
    """The async context manager returned by :meth:`ManagementClient.workload`."""

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

    async def __aenter__(self) -> EndpointRef:
        ref = await self._client.ensure(self._spec, on_drift=self._on_drift, project=self._project)
        self._ref = ref
        try:
            await self._client.wait_until_ready(
                ref.workload_slug,
                project=ref.project_slug,
                timeout=self._timeout,
                on_progress=self._on_progress,
                silent=self._silent,
            )
        except BaseException:
            await self._delete()
            raise
        return ref

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._delete()

    async def _delete(self) -> None:
        ref, self._ref = self._ref, None
        if ref is not None and ref.action != "planned":
            await _shielded(self._client.delete(ref.workload_slug, project=ref.project_slug))


# -- data plane -------------------------------------------------------------------------


class _DataBase:
    """Construction, configuration and closing, shared by both data-plane clients."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        project: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        _headers: Mapping[str, str] | None = None,
    ) -> None:
        self._native = _native.DataClient(
            base_url=base_url,
            project=project,
            api_key=api_key,
            **_client_options(
                timeout, max_retries, user_agent, connect_timeout, stream_idle_timeout, _headers
            ),
        )

    @classmethod
    def from_env(
        cls: type[_D],
        *,
        base_url: str | None = None,
        project: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
    ) -> _D:
        """A client from the ``INFERENCEKEY_*`` variables, overridden by any argument."""
        return cls(
            base_url=base_url,
            project=project,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            user_agent=user_agent,
            connect_timeout=connect_timeout,
            stream_idle_timeout=stream_idle_timeout,
        )

    @property
    def base_url(self) -> str:
        return self._native.base_url

    @property
    def project(self) -> str:
        return self._native.project

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, project={self.project!r}, "
            f"api_key={self._native.api_key!r})"
        )

    def close(self) -> None:
        """Releases the connection pool (calls in flight finish first); idempotent."""
        self._native.close()


class DataClient(_DataBase):
    """Data-plane client: hands out :class:`Endpoint` objects, one per workload.

    >>> async with DataClient.from_env() as data:
    ...     ep = data.endpoint("triage-bot")
    ...     print((await ep.generate_text(prompt="Summarise ticket 4411")).text)
    """

    async def aclose(self) -> None:
        """Releases the connection pool; idempotent."""
        self.close()

    async def __aenter__(self) -> DataClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def endpoint(self, workload_slug: str, *, api_key: str | None = None) -> Endpoint:
        """The endpoint of one workload; ``api_key`` overrides the client's key. No
        request is made."""
        return Endpoint(self._native.endpoint(workload_slug, api_key))


class _EndpointBase:
    """Identity and repr, shared by both endpoint classes."""

    def __init__(self, native: _native.Endpoint) -> None:
        self._native = native

    @property
    def project_slug(self) -> str:
        return self._native.project_slug

    @property
    def workload_slug(self) -> str:
        return self._native.workload_slug

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(project_slug={self.project_slug!r}, "
            f"workload_slug={self.workload_slug!r}, api_key={self._native.api_key!r})"
        )


class Endpoint(_EndpointBase):
    """One workload's OpenAI-compatible endpoint (see ``DataClient.endpoint``)."""

    async def generate_text(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> TextResult:
        """A chat completion from a ``prompt`` or ``messages`` (exactly one).

        ``extra`` holds other OpenAI fields (``top_p``, ``stop``, ``seed``, …) passed
        through unchanged; ``timeout`` overrides the client's per-attempt timeout.
        """
        kwargs = _chat_kwargs(prompt, messages, temperature, max_tokens, extra, timeout)
        return TextResult._from_native(await _run(self._native.generate_text(**kwargs)))

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
        """A streamed chat completion; ``await`` it to open the connection eagerly, or
        iterate it with ``async for``."""
        kwargs = _chat_kwargs(prompt, messages, temperature, max_tokens, extra, timeout)
        return TextStream(self._native.generate_text_stream(**kwargs))

    async def embed(self, *, input: str | Sequence[str]) -> EmbedResult:
        """Embeds one string or a list of strings; vectors come back in input order."""
        return EmbedResult._from_native(await _run(self._native.embed(_inputs(input))))

    async def rerank(
        self, *, query: str, documents: Sequence[str], top_n: int | None = None
    ) -> RerankResult:
        """Scores ``documents`` against ``query``, highest first."""
        op = self._native.rerank(query, _documents(documents), _at_least_one("top_n", top_n))
        return RerankResult._from_native(await _run(op))


class TextStream:
    """A streamed chat completion.

    ``await stream`` opens the connection (authentication and validation errors raise
    there); ``async for chunk in stream`` opens it if needed and yields
    :class:`TextChunk` objects until the server's end marker. A stream that ends early
    raises ``ApiError`` with code ``stream_truncated``. ``aclose()`` (idempotent),
    leaving ``async with``, cancelling a read, or dropping the stream closes the
    connection.
    """

    def __init__(self, opener: _native.Operation) -> None:
        self._opener: _native.Operation | None = opener
        self._native: _native.TextStream | None = None
        self._buffer: deque[TextChunk] = deque()
        self._finished = False

    def __await__(self) -> Generator[Any, None, TextStream]:
        return self._open().__await__()

    async def _open(self) -> TextStream:
        if self._native is None and self._opener is not None:
            opener, self._opener = self._opener, None
            try:
                self._native = await _run(opener)
            except BaseException:
                self._finished = True
                raise
        return self

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> TextChunk:
        if self._buffer:
            return self._buffer.popleft()
        if self._finished:
            raise StopAsyncIteration
        await self._open()
        native = self._native
        if native is None:
            raise StopAsyncIteration
        try:
            batch = await _run(native.next_batch(), poll=False)
        except BaseException:
            self.close()
            raise
        if not batch:
            self.close()
            raise StopAsyncIteration
        self._buffer.extend(batch)
        return self._buffer.popleft()

    @property
    def closed(self) -> bool:
        return self._finished and not self._buffer

    def close(self) -> None:
        """Closes the connection now; idempotent. Chunks already received are kept."""
        self._finished = True
        self._opener = None
        if self._native is not None:
            self._native.close()

    async def aclose(self) -> None:
        """Closes the connection; idempotent."""
        self.close()
        self._buffer.clear()

    async def __aenter__(self) -> TextStream:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def text(self) -> str:
        """Reads the rest of the stream and returns its text."""
        return "".join([chunk.text async for chunk in self])
