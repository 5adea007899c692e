"""Helpers of the reliability suite.

The emulator's fault layer is driven per request: a client built with
``_headers={"x-ik-fault": spec, "x-ik-fault-key": key}`` sends the fault with every
request, and the layer's test-only routes tell how many requests carried ``key``
(retries) and how many connections the server still holds open (leaks). See
``crates/inferencekey-local/src/faults.rs`` for the specs.

:class:`Api` runs one test body against the asyncio clients or their blocking twins;
a blocking call simply blocks the test's event loop, which has nothing else to do.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import inferencekey
import inferencekey.sync as iks
from _support import wait_for
from inferencekey.local import LocalPlatform

CHAT = "chat"

_keys = itertools.count()


def new_key(label: str) -> str:
    """A fault key no other request uses."""
    return f"{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')[:60]}-{next(_keys)}"


def fault_headers(fault: str | None, key: str | None) -> dict[str, str]:
    headers = {}
    if fault is not None:
        headers["x-ik-fault"] = fault
    if key is not None:
        headers["x-ik-fault-key"] = key
    return headers


def _get_json(p: LocalPlatform, route: str) -> Any:
    # urllib sends `Connection: close`, so the asking connection never lingers.
    with urllib.request.urlopen(p.base_url + route, timeout=10) as reply:
        return json.loads(reply.read())


def hits(p: LocalPlatform, key: str, method: str | None = None) -> int:
    """How many requests carrying ``key`` reached the server (of ``method``, or all)."""
    counts: dict[str, int] = _get_json(p, f"/_faults/hits/{key}")
    return counts.get(method or "total", 0)


def open_connections(p: LocalPlatform) -> int:
    """The connections the server holds open right now, not counting the asking one."""
    return int(_get_json(p, "/_faults/connections")["open"]) - 1


def wait_connections_at_most(p: LocalPlatform, limit: int, timeout: float = 5.0) -> int:
    """Polls until the server holds at most ``limit`` connections; returns the last count."""
    seen = [open_connections(p)]

    def settled() -> bool:
        seen.append(open_connections(p))
        return seen[-1] <= limit

    wait_for(settled, timeout)
    return seen[-1]


@dataclass
class Outcome:
    """What reading a stream produced: its chunks, then the error that ended it."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.texts)


class Api:
    """The asyncio clients (``kind == "async"``) or the blocking twins (``"sync"``)."""

    def __init__(self, kind: str) -> None:
        assert kind in ("async", "sync")
        self.kind = kind
        self._clients: list[Any] = []

    @property
    def is_async(self) -> bool:
        return self.kind == "async"

    def data(
        self,
        p: LocalPlatform,
        fault: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Any:
        cls = inferencekey.DataClient if self.is_async else iks.DataClient
        client = cls(
            base_url=p.base_url,
            project=p.project,
            api_key=p.api_key,
            _headers=fault_headers(fault, key),
            **options,
        )
        self._clients.append(client)
        return client

    def endpoint(
        self,
        p: LocalPlatform,
        fault: str | None = None,
        key: str | None = None,
        workload: str = CHAT,
        **options: Any,
    ) -> Any:
        return self.data(p, fault, key, **options).endpoint(workload)

    def mgmt(
        self,
        p: LocalPlatform,
        fault: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> Any:
        cls = inferencekey.ManagementClient if self.is_async else iks.ManagementClient
        client = cls(
            base_url=p.base_url,
            project=p.project,
            sdk_token=p.sdk_token,
            _headers=fault_headers(fault, key),
            **options,
        )
        self._clients.append(client)
        return client

    async def call(self, bound: Any, /, **kwargs: Any) -> Any:
        """``await bound(**kwargs)`` for the async clients, ``bound(**kwargs)`` else."""
        if self.is_async:
            return await bound(**kwargs)
        return bound(**kwargs)

    async def stream(self, ep: Any, **kwargs: Any) -> Outcome:
        """Reads a whole chat stream; a failure is recorded, not raised."""
        out = Outcome()
        started = time.monotonic()
        try:
            if self.is_async:
                async for chunk in ep.generate_text_stream(**kwargs):
                    out.texts.append(chunk.text)
                    if chunk.finish_reason:
                        out.finish_reasons.append(chunk.finish_reason)
            else:
                for chunk in ep.generate_text_stream(**kwargs):
                    out.texts.append(chunk.text)
                    if chunk.finish_reason:
                        out.finish_reasons.append(chunk.finish_reason)
        except Exception as exc:
            out.error = exc
        out.seconds = time.monotonic() - started
        return out

    async def open_stream(self, ep: Any, **kwargs: Any) -> Any:
        """An open stream (response headers received)."""
        if self.is_async:
            return await ep.generate_text_stream(**kwargs)
        return ep.generate_text_stream(**kwargs)

    async def next_chunk(self, stream: Any) -> Any:
        if self.is_async:
            return await stream.__anext__()
        return next(stream)

    def close_all(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
