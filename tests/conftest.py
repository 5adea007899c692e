"""Shared fixtures: one instant local platform per session, fresh clients per test,
and workloads that serve chat, embeddings and rerank."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL, EMBED_MODEL, RERANK_MODEL
from inferencekey import DataClient, ManagementClient, TaskType
from inferencekey.local import LocalPlatform

pytest_plugins = ["pytester"]

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's own INFERENCEKEY_* settings must never leak into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("INFERENCEKEY_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def platform() -> Iterator[LocalPlatform]:
    with LocalPlatform(readiness="instant") as p:
        yield p


@pytest.fixture
def slug(request: pytest.FixtureRequest) -> str:
    """A slug no other test uses, readable in failures."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{base}-{next(_counter)}"


@pytest.fixture
async def mgmt(platform: LocalPlatform) -> AsyncIterator[ManagementClient]:
    async with ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    ) as client:
        yield client


@pytest.fixture
async def data(platform: LocalPlatform) -> AsyncIterator[DataClient]:
    async with DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    ) as client:
        yield client


@pytest.fixture
def sync_mgmt(platform: LocalPlatform) -> Iterator[iks.ManagementClient]:
    with iks.ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    ) as client:
        yield client


@pytest.fixture
def sync_data(platform: LocalPlatform) -> Iterator[iks.DataClient]:
    with iks.DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    ) as client:
        yield client


def _serving(platform: LocalPlatform, slug: str, model: str, task_type: TaskType | None) -> str:
    mgmt = iks.ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    spec = iks.WorkloadSpec(name=slug, slug=slug, backend="vllm", model=model, task_type=task_type)
    ref = mgmt.ensure(spec)
    mgmt.wait_until_ready(ref.workload_slug, timeout=30, silent=True)
    return ref.workload_slug


@pytest.fixture(scope="session")
def chat_slug(platform: LocalPlatform) -> str:
    return _serving(platform, "shared-chat", CHAT_MODEL, None)


@pytest.fixture(scope="session")
def embed_slug(platform: LocalPlatform) -> str:
    return _serving(platform, "shared-embed", EMBED_MODEL, TaskType.EMBEDDING)


@pytest.fixture(scope="session")
def rerank_slug(platform: LocalPlatform) -> str:
    return _serving(platform, "shared-rerank", RERANK_MODEL, TaskType.RERANKER)
