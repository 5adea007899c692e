"""Retries (PROTOCOL.md §2.3): what is retried, how often, after how long, and what is
never retried; and every failed response becomes the documented exception."""

from __future__ import annotations

import time

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL, closed_port_url
from inferencekey import (
    ApiError,
    AuthError,
    DataClient,
    InferenceKeyError,
    InferenceKeyTimeout,
    ValidationError,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform

from .harness import Api, hits

PROMPT = "Summarise ticket 4411"


async def test_flapping_503_is_retried_until_it_succeeds(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """Two 503s, then success: the default two retries absorb them."""
    ep = api.endpoint(faulty, "flap=2", key)
    result = await api.call(ep.generate_text, prompt=PROMPT)
    assert result.text
    assert hits(faulty, key) == 3


async def test_flapping_beyond_the_retry_budget_fails(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    ep = api.endpoint(faulty, "flap=3", key, max_retries=2)
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert (info.value.status, info.value.code) == (503, "upstream_unavailable")
    assert hits(faulty, key) == 3


async def test_retry_after_is_honoured(api: Api, faulty: LocalPlatform, key: str) -> None:
    """A 429 with ``Retry-After: 1`` is retried after one second, not after the
    backoff's fraction of a second."""
    ep = api.endpoint(faulty, "status=429;retry_after=1", key, max_retries=1)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    elapsed = time.monotonic() - started
    assert (info.value.status, info.value.code) == (429, "rate_limited")
    assert hits(faulty, key) == 2
    assert elapsed >= 0.95, f"retried after {elapsed:.2f} s"


async def test_retry_after_over_the_cap_is_not_waited_for(
    api: Api, faulty: LocalPlatform, key: str
) -> None:
    """A ``Retry-After`` over 60 s returns the error at once instead of sleeping."""
    ep = api.endpoint(faulty, "status=503;retry_after=120", key, max_retries=2)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert info.value.status == 503
    assert hits(faulty, key) == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("fault", ["status=502", "status=504", "html502", "reset"])
async def test_gateway_errors_and_resets_are_retried_for_inference(
    api: Api, faulty: LocalPlatform, key: str, fault: str
) -> None:
    """Inference has no side effect but cost: 502, 504 and a connection lost before
    the status are retried (``max_retries`` times)."""
    ep = api.endpoint(faulty, fault, key, max_retries=2)
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert not isinstance(info.value, InferenceKeyTimeout)
    assert hits(faulty, key) == 3


async def test_500_is_not_retried_for_inference(api: Api, faulty: LocalPlatform, key: str) -> None:
    ep = api.endpoint(faulty, "status=500", key, max_retries=2)
    with pytest.raises(ApiError) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert (info.value.status, info.value.code) == (500, "internal")
    assert hits(faulty, key) == 1


async def test_500_is_retried_for_reads(api: Api, faulty: LocalPlatform, key: str) -> None:
    """``delete`` starts with a list (GET), which is idempotent: a 500 is retried."""
    mgmt = api.mgmt(faulty, "status=500;method=GET", key, max_retries=1)
    with pytest.raises(ApiError) as info:
        await api.call(mgmt.delete, workload_slug="anything")
    assert info.value.status == 500
    assert hits(faulty, key, "GET") == 2


@pytest.mark.parametrize(
    ("fault", "posts"),
    [
        ("reset;method=POST", 1),
        ("lost_response;method=POST", 1),
        ("status=502;method=POST", 1),
        ("status=504;method=POST", 1),
        ("status=500;method=POST", 1),
        # Refused before any work: safe to send again.
        ("status=503;method=POST", 3),
        ("status=429;method=POST", 3),
    ],
)
async def test_create_is_retried_only_when_nothing_was_created(
    api: Api, faulty: LocalPlatform, key: str, slug: str, fault: str, posts: int
) -> None:
    """A create (POST) whose request may have reached the server is never sent again:
    the workload could already exist, and a second POST would make a duplicate."""
    mgmt = api.mgmt(faulty, fault, key, max_retries=2)
    spec = WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL)
    with pytest.raises(ApiError):
        await api.call(mgmt.ensure, spec=spec)
    assert hits(faulty, key, "POST") == posts


async def test_lost_create_response_then_ensure_finds_the_workload(
    api: Api, faulty: LocalPlatform, key: str, slug: str
) -> None:
    """The create happened but its answer was lost: the call fails without a second
    POST, and the next ``ensure`` (idempotent by slug) finds the workload instead of
    creating a duplicate."""
    spec = WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL)
    lossy = api.mgmt(faulty, "lost_response;method=POST", key)
    with pytest.raises(ApiError):
        await api.call(lossy.ensure, spec=spec)
    assert hits(faulty, key, "POST") == 1
    assert [w["slug"] for w in faulty.workloads()].count(slug) == 1, "the create happened"
    ref = await api.call(api.mgmt(faulty).ensure, spec=spec)
    assert str(getattr(ref.action, "value", ref.action)) == "unchanged"
    assert [w["slug"] for w in faulty.workloads()].count(slug) == 1, "no duplicate"
    assert await api.call(api.mgmt(faulty).delete, workload_slug=slug)


@pytest.mark.parametrize(
    ("fault", "kind", "status", "code"),
    [
        ("status=400", ValidationError, 400, "bad_request"),
        ("status=401", AuthError, 401, "unauthorized"),
        ("status=404", ApiError, 404, "not_found"),
        ("status=500", ApiError, 500, "internal"),
        ("html502", ApiError, 502, None),
        ("invalid_json", ApiError, None, "malformed_response"),
        (f"huge={8 << 20}", ApiError, None, "malformed_response"),
    ],
)
async def test_failed_responses_become_exceptions(
    api: Api,
    faulty: LocalPlatform,
    key: str,
    fault: str,
    kind: type[InferenceKeyError],
    status: int | None,
    code: str | None,
) -> None:
    """Error statuses, an HTML page from a proxy, a 200 that is not JSON and an 8 MiB
    body of the wrong shape all raise the documented ``InferenceKeyError`` with a
    short message (never a JSON decoding error, never the whole page)."""
    ep = api.endpoint(faulty, fault, key, max_retries=0)
    with pytest.raises(kind) as info:
        await api.call(ep.generate_text, prompt=PROMPT)
    assert info.value.status == status
    if code is not None:
        assert info.value.code == code
    assert len(str(info.value)) < 1000


async def test_connect_failure_is_an_api_error(api: Api) -> None:
    """Nobody listening: retried (nothing was sent), then an ``ApiError``."""
    cls = DataClient if api.is_async else iks.DataClient
    client = cls(base_url=closed_port_url(), project="p", api_key="ik_live_0badc0de_" + "0" * 64)
    with pytest.raises(ApiError) as info:
        await api.call(client.endpoint("chat").generate_text, prompt=PROMPT)
    assert info.value.status is None
    assert "could not connect" in str(info.value)
