"""The blocking twin in inferencekey.sync: same names, same behaviour."""

from __future__ import annotations

import time
from typing import Any

import pytest

import inferencekey
import inferencekey.sync as iks
from _support import CHAT_MODEL, wire
from inferencekey.local import LocalPlatform

UNKNOWN_LIVE = "ik_live_0badc0de_" + "4" * 64


def spec_for(slug: str, **extra: Any) -> iks.WorkloadSpec:
    fields: dict[str, Any] = {"name": slug, "slug": slug, "backend": "vllm", "model": CHAT_MODEL}
    fields.update(extra)
    return iks.WorkloadSpec(**fields)


def test_sync_exports_the_same_names() -> None:
    for name in (
        "ManagementClient", "DataClient", "Endpoint", "WorkloadSpec", "EndpointRef",
        "Backend", "OnDrift", "TaskType", "ExecutionPolicy", "TextResult", "TextChunk",
        "TextStream", "EmbedResult", "RerankResult", "ReadinessEvent", "InferenceKeyError",
        "PermissionDenied", "AuthError", "ValidationError", "ConfigurationError", "ApiError",
    ):  # fmt: skip
        assert hasattr(iks, name), name
    # Data types and errors are shared, so one except clause catches both flavours.
    assert iks.ApiError is inferencekey.ApiError
    assert iks.WorkloadSpec is inferencekey.WorkloadSpec


def test_ensure_wait_delete(sync_mgmt: iks.ManagementClient, slug: str) -> None:
    ref = sync_mgmt.ensure(spec_for(slug))
    assert wire(ref.action) == "created"
    assert wire(sync_mgmt.ensure(spec_for(slug)).action) == "unchanged"
    updated = sync_mgmt.ensure(spec_for(slug, model="other"))
    assert wire(updated.action) == "updated"
    events: list[iks.ReadinessEvent] = []
    sync_mgmt.wait_until_ready(slug, timeout=10, on_progress=events.append)
    assert events
    assert sync_mgmt.delete(slug) is True
    assert sync_mgmt.delete(slug) is False


def test_on_drift_modes(sync_mgmt: iks.ManagementClient, slug: str) -> None:
    sync_mgmt.ensure(spec_for(slug))
    with pytest.raises(iks.ValidationError):
        sync_mgmt.ensure(spec_for(slug, model="x"), on_drift=iks.OnDrift.FAIL)
    planned = sync_mgmt.ensure(spec_for(slug, model="x"), on_drift=iks.OnDrift.DRY_RUN)
    assert wire(planned.action) == "planned"
    ignored = sync_mgmt.ensure(spec_for(slug, model="x"), on_drift=iks.OnDrift.IGNORE)
    assert wire(ignored.action) == "drift_ignored"
    assert sync_mgmt.delete(slug)


def test_sync_timeout(slug: str) -> None:
    with LocalPlatform(readiness={"scheduling": 60.0}) as p:
        mgmt = iks.ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        mgmt.ensure(spec_for(slug))
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            mgmt.wait_until_ready(slug, timeout=0.5, silent=True)
        assert isinstance(info.value, iks.ApiError)
        assert time.monotonic() - started < 5


def test_workload_helper(
    sync_mgmt: iks.ManagementClient, sync_data: iks.DataClient, slug: str
) -> None:
    with sync_mgmt.workload(spec_for(slug)) as ref:
        assert sync_data.endpoint(ref.workload_slug).generate_text(prompt="hi").text
    assert sync_mgmt.delete(slug) is False
    with pytest.raises(KeyError), sync_mgmt.workload(spec_for(slug)):
        raise KeyError("boom")
    assert sync_mgmt.delete(slug) is False


def test_generate_text(sync_data: iks.DataClient, chat_slug: str) -> None:
    result = sync_data.endpoint(chat_slug).generate_text(prompt="hi", max_tokens=10)
    assert isinstance(result, iks.TextResult)
    assert result.text
    assert isinstance(result.raw, dict)


def test_stream_iterate_and_close(sync_data: iks.DataClient, chat_slug: str) -> None:
    ep = sync_data.endpoint(chat_slug)
    chunks = list(ep.generate_text_stream(prompt="hello", max_tokens=20))
    assert "".join(c.text for c in chunks)
    assert [c.finish_reason for c in chunks if c.finish_reason] in (["stop"], ["length"])

    with ep.generate_text_stream(prompt="hello", max_tokens=50) as stream:
        first = next(iter(stream))
        assert isinstance(first, iks.TextChunk)
    stream.close()
    stream.close()
    assert list(stream) == []

    for _ in range(5):
        for _chunk in ep.generate_text_stream(prompt="hello", max_tokens=100):
            break
    assert ep.generate_text(prompt="still fine").text


def test_stream_auth_error(platform: LocalPlatform, chat_slug: str) -> None:
    bad = iks.DataClient(base_url=platform.base_url, project=platform.project, api_key=UNKNOWN_LIVE)
    with pytest.raises(iks.AuthError):
        list(bad.endpoint(chat_slug).generate_text_stream(prompt="hello"))


def test_embed_and_buffer(sync_data: iks.DataClient, embed_slug: str) -> None:
    result = sync_data.endpoint(embed_slug).embed(input=["a", "b"])
    assert len(result.embeddings) == 2
    assert result.buffer.shape == (2, len(result.embeddings[0]))


def test_rerank(sync_data: iks.DataClient, rerank_slug: str) -> None:
    result = sync_data.endpoint(rerank_slug).rerank(
        query="key", documents=["no", "key rotation", "keys"], top_n=2
    )
    assert len(result.results) == 2
    assert result.results[0].relevance_score >= result.results[1].relevance_score


def test_errors_are_the_same_classes(platform: LocalPlatform, chat_slug: str) -> None:
    bad = iks.DataClient(base_url=platform.base_url, project=platform.project, api_key=UNKNOWN_LIVE)
    with pytest.raises(inferencekey.AuthError):
        bad.endpoint(chat_slug).generate_text(prompt="hi")
    with pytest.raises(iks.ValidationError):
        bad.endpoint(chat_slug).generate_text(prompt="")


def test_from_env(platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, chat_slug: str) -> None:
    monkeypatch.setenv("INFERENCEKEY_BASE_URL", platform.base_url)
    monkeypatch.setenv("INFERENCEKEY_PROJECT", platform.project)
    monkeypatch.setenv("INFERENCEKEY_API_KEY", platform.api_key)
    monkeypatch.setenv("INFERENCEKEY_SDK_TOKEN", platform.sdk_token)
    assert iks.DataClient.from_env().endpoint(chat_slug).generate_text(prompt="hi").text
    assert iks.ManagementClient.from_env().delete("never-created") is False
    monkeypatch.delenv("INFERENCEKEY_PROJECT")
    no_project = iks.ManagementClient.from_env()
    with pytest.raises(iks.ConfigurationError):
        no_project.delete("x")


def test_sync_platform_and_async_platform_context(slug: str) -> None:
    import asyncio

    async def run() -> str:
        async with LocalPlatform(readiness="instant") as p:
            return p.base_url

    url = asyncio.run(run())
    assert url.startswith("http://127.0.0.1:")
