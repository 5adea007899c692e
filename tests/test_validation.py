"""Bad arguments are refused locally, before any request: every client here points at
a port nobody listens on, so a ValidationError proves nothing was sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from _support import CHAT_MODEL, closed_port_url
from inferencekey import (
    ApiError,
    DataClient,
    Endpoint,
    ManagementClient,
    PermissionDenied,
    ValidationError,
    WorkloadSpec,
)

SDK = "ik_sdk_0badc0de_" + "2" * 64
LIVE = "ik_live_0badc0de_" + "2" * 64


@pytest.fixture
def offline_endpoint() -> Endpoint:
    return DataClient(base_url=closed_port_url(), project="p", api_key=LIVE).endpoint("w")


@pytest.fixture
def offline_mgmt() -> ManagementClient:
    return ManagementClient(base_url=closed_port_url(), project="p", sdk_token=SDK)


TEXT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("neither prompt nor messages", {}),
    ("both prompt and messages", {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}),
    ("blank prompt", {"prompt": "   "}),
    ("empty prompt", {"prompt": ""}),
    ("empty messages", {"messages": []}),
    ("blank content", {"messages": [{"role": "user", "content": " "}]}),
    ("max_tokens zero", {"prompt": "hi", "max_tokens": 0}),
    ("max_tokens negative", {"prompt": "hi", "max_tokens": -5}),
    ("temperature above 2", {"prompt": "hi", "temperature": 2.5}),
    ("temperature below 0", {"prompt": "hi", "temperature": -0.1}),
]


@pytest.mark.parametrize(("case", "kwargs"), TEXT_CASES, ids=[c for c, _ in TEXT_CASES])
async def test_generate_text_arguments(
    offline_endpoint: Endpoint, case: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as info:
        await offline_endpoint.generate_text(**kwargs)
    assert info.value.status is None


@pytest.mark.parametrize(("case", "kwargs"), TEXT_CASES, ids=[c for c, _ in TEXT_CASES])
async def test_generate_text_stream_arguments(
    offline_endpoint: Endpoint, case: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        await offline_endpoint.generate_text_stream(**kwargs)


async def test_boundary_values_pass_validation(offline_endpoint: Endpoint) -> None:
    # Valid arguments get past validation and fail only on the closed port.
    with pytest.raises(ApiError, match="connect") as info:
        await offline_endpoint.generate_text(prompt="hi", max_tokens=1, temperature=0.0)
    assert not isinstance(info.value, ValidationError)
    with pytest.raises(ApiError, match="connect") as info:
        await offline_endpoint.generate_text(prompt="hi", temperature=2.0)
    assert not isinstance(info.value, ValidationError)


@pytest.mark.parametrize(
    "call",
    [
        lambda ep: ep.embed(input=[]),
        lambda ep: ep.rerank(query=" ", documents=["a"]),
        lambda ep: ep.rerank(query="q", documents=[]),
        lambda ep: ep.rerank(query="q", documents=["a"], top_n=0),
    ],
    ids=["embed empty list", "rerank blank query", "rerank no documents", "rerank top_n 0"],
)
async def test_embed_and_rerank_arguments(
    offline_endpoint: Endpoint, call: Callable[[Endpoint], Awaitable[Any]]
) -> None:
    with pytest.raises(ValidationError):
        await call(offline_endpoint)


SPEC_CASES: list[tuple[str, dict[str, Any]]] = [
    ("blank name", {"name": " ", "slug": "ok", "backend": "vllm", "model": CHAT_MODEL}),
    ("blank slug", {"name": "ok", "slug": "  ", "backend": "vllm", "model": CHAT_MODEL}),
    ("slug canonicalises to empty", {"name": "ok", "slug": "!!!", "backend": "vllm", "model": "m"}),
    ("blank model", {"name": "ok", "slug": "ok", "backend": "vllm", "model": ""}),
    (
        "token in a field",
        {"name": "ok", "slug": "ok", "backend": "vllm", "model": "m", "description": LIVE},
    ),
    (
        "sdk token in command",
        {"name": "ok", "slug": "ok", "backend": "vllm", "model": "m", "command": SDK},
    ),
]


@pytest.mark.parametrize(("case", "fields"), SPEC_CASES, ids=[c for c, _ in SPEC_CASES])
async def test_ensure_spec_checks(
    offline_mgmt: ManagementClient, case: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as info:
        await offline_mgmt.ensure(fields)
    assert LIVE not in str(info.value)
    assert SDK not in str(info.value)
    with pytest.raises(ValidationError):
        await offline_mgmt.ensure(WorkloadSpec(**fields))


async def test_ensure_with_data_key_is_refused_locally() -> None:
    mgmt = ManagementClient(base_url=closed_port_url(), project="p", sdk_token=LIVE)
    with pytest.raises(PermissionDenied) as info:
        await mgmt.ensure(WorkloadSpec(name="ok", slug="ok", backend="vllm", model="m"))
    assert info.value.code == "wrong_credential_type"
    assert info.value.status is None
    assert LIVE[12:] not in str(info.value)


async def test_wait_until_ready_rejects_bad_timeout(offline_mgmt: ManagementClient) -> None:
    with pytest.raises(ValidationError):
        await offline_mgmt.wait_until_ready("w", timeout=-1)
