"""Fixtures of the reliability suite: a platform with the fault layer enabled, and the
choice between the asyncio clients and their blocking twins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL
from inferencekey.local import LocalPlatform

from .harness import CHAT, Api, new_key


def _with_chat(p: LocalPlatform, slug: str = CHAT) -> None:
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    with mgmt:
        mgmt.ensure(iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL))
        mgmt.wait_until_ready(slug, timeout=30, silent=True)


@pytest.fixture(scope="session")
def faulty() -> Iterator[LocalPlatform]:
    """A platform whose fault layer is on, serving the chat workload ``chat``."""
    with LocalPlatform(readiness="instant", _enable_faults=True) as p:
        _with_chat(p)
        yield p


@pytest.fixture(scope="session")
def slow() -> Iterator[LocalPlatform]:
    """Like ``faulty``, but chat streams send four tokens a second, so a stream can be
    caught (and left) mid-flight."""
    with LocalPlatform(readiness="instant", token_rate=4.0, _enable_faults=True) as p:
        _with_chat(p)
        yield p


@pytest.fixture(params=["async", "sync"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """The asyncio clients, then the blocking twins."""
    chosen = Api(request.param)
    yield chosen
    chosen.close_all()


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A fault key of this test alone, for counting its requests."""
    return new_key(request.node.name)
