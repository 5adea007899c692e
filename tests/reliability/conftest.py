"""Fixtures of the reliability suite: a platform with the fault layer enabled, and the
choice between the asyncio clients and their blocking twins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL
from inferencekey.local import LocalPlatform

from .harness import CHAT, Api, new_key, wait_connections_at_most


def _with_chat(p: LocalPlatform, slug: str = CHAT) -> None:
    mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    with mgmt:
        mgmt.ensure(iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL))
        mgmt.wait_until_ready(slug, timeout=30, silent=True)
    # The test starts with no connection open.
    assert wait_connections_at_most(p, 0) == 0


@pytest.fixture(scope="session")
def faulty() -> Iterator[LocalPlatform]:
    """A platform whose fault layer is on, serving the chat workload ``chat``."""
    with LocalPlatform(readiness="instant", _enable_faults=True) as p:
        _with_chat(p)
        yield p


@pytest.fixture
def fresh() -> Iterator[LocalPlatform]:
    """Like ``faulty``, but for this test alone: the connections it holds open are
    this test's, which connection counts need."""
    with LocalPlatform(readiness="instant", _enable_faults=True) as p:
        _with_chat(p)
        yield p


@pytest.fixture
def slow() -> Iterator[LocalPlatform]:
    """Like ``fresh``, but chat streams send four tokens a second, so a stream can be
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
