"""Configuration: explicit argument > INFERENCEKEY_* environment > default, and
configuration errors raised before any request."""

from __future__ import annotations

from typing import Any

import pytest

from _support import CHAT_MODEL, closed_port_url, wire
from inferencekey import (
    ConfigurationError,
    DataClient,
    InferenceKeyError,
    ManagementClient,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform

FAKE_SDK = "ik_sdk_0badc0de_" + "0" * 64
FAKE_LIVE = "ik_live_0badc0de_" + "0" * 64


def spec_for(slug: str) -> WorkloadSpec:
    return WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL)


async def test_from_env_reads_every_variable(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, slug: str
) -> None:
    monkeypatch.setenv("INFERENCEKEY_BASE_URL", platform.base_url)
    monkeypatch.setenv("INFERENCEKEY_PROJECT", platform.project)
    monkeypatch.setenv("INFERENCEKEY_SDK_TOKEN", platform.sdk_token)
    monkeypatch.setenv("INFERENCEKEY_API_KEY", platform.api_key)
    mgmt = ManagementClient.from_env()
    ref = await mgmt.ensure(spec_for(slug))
    assert wire(ref.action) == "created"
    assert ref.project_slug == platform.project
    result = await DataClient.from_env().endpoint(ref.workload_slug).generate_text(prompt="hi")
    assert result.text
    assert await mgmt.delete(slug)


async def test_explicit_arguments_beat_environment(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, slug: str
) -> None:
    # Every variable points somewhere wrong; the explicit arguments must win.
    monkeypatch.setenv("INFERENCEKEY_BASE_URL", closed_port_url())
    monkeypatch.setenv("INFERENCEKEY_PROJECT", "not-this-project")
    monkeypatch.setenv("INFERENCEKEY_SDK_TOKEN", FAKE_SDK)
    monkeypatch.setenv("INFERENCEKEY_API_KEY", FAKE_LIVE)
    mgmt = ManagementClient.from_env(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    ref = await mgmt.ensure(spec_for(slug))
    assert ref.project_slug == platform.project
    data = DataClient.from_env(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    assert (await data.endpoint(ref.workload_slug).generate_text(prompt="hi")).text
    assert await mgmt.delete(slug)


async def test_environment_fills_what_is_not_given(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, slug: str
) -> None:
    monkeypatch.setenv("INFERENCEKEY_BASE_URL", platform.base_url)
    monkeypatch.setenv("INFERENCEKEY_SDK_TOKEN", platform.sdk_token)
    monkeypatch.setenv("INFERENCEKEY_PROJECT", "not-this-project")
    # Only the project is explicit; the URL and token come from the environment.
    mgmt = ManagementClient.from_env(project=platform.project)
    ref = await mgmt.ensure(spec_for(slug))
    assert ref.project_slug == platform.project
    assert await mgmt.delete(slug)


def test_default_base_url_is_production(monkeypatch: pytest.MonkeyPatch) -> None:
    mgmt = ManagementClient.from_env(project="p", sdk_token=FAKE_SDK)
    assert "https://api.inferencekey.com" in repr(mgmt)
    data = DataClient.from_env(project="p", api_key=FAKE_LIVE)
    assert "https://api.inferencekey.com" in repr(data)


def test_environment_base_url_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCEKEY_BASE_URL", "http://127.0.0.1:9")
    mgmt = ManagementClient.from_env(project="p", sdk_token=FAKE_SDK)
    assert "127.0.0.1:9" in repr(mgmt)
    assert "api.inferencekey.com" not in repr(mgmt)


def test_missing_sdk_token_is_a_configuration_error_before_any_request() -> None:
    # Refused when the client is built, long before any request.
    with pytest.raises(ConfigurationError) as info:
        ManagementClient.from_env(base_url=closed_port_url(), project="p")
    assert info.value.status is None
    assert "INFERENCEKEY_SDK_TOKEN" in str(info.value)


async def test_missing_project_is_a_configuration_error_before_any_request(slug: str) -> None:
    mgmt = ManagementClient(base_url=closed_port_url(), sdk_token=FAKE_SDK)
    with pytest.raises(ConfigurationError) as info:
        await mgmt.ensure(spec_for(slug))
    assert info.value.status is None
    with pytest.raises(ConfigurationError):
        await mgmt.delete(slug)
    with pytest.raises(ConfigurationError):
        await mgmt.wait_until_ready(slug, timeout=1)


def test_missing_api_key_is_a_configuration_error() -> None:
    # A key may still come per endpoint, so the client builds; the endpoint does not.
    data = DataClient.from_env(base_url=closed_port_url(), project="p")
    with pytest.raises(ConfigurationError) as info:
        data.endpoint("w")
    assert "INFERENCEKEY_API_KEY" in str(info.value)


def test_missing_data_project_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        DataClient(base_url=closed_port_url(), api_key=FAKE_LIVE)
    assert "INFERENCEKEY_PROJECT" in str(info.value)


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com", "http://", ""])
def test_bad_base_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ManagementClient(base_url=url, project="p", sdk_token=FAKE_SDK)
    with pytest.raises(ConfigurationError):
        DataClient(base_url=url, project="p", api_key=FAKE_LIVE)


async def test_trailing_slashes_in_base_url_are_ignored(platform: LocalPlatform, slug: str) -> None:
    mgmt = ManagementClient(
        base_url=platform.base_url + "//", project=platform.project, sdk_token=platform.sdk_token
    )
    ref = await mgmt.ensure(spec_for(slug))
    assert wire(ref.action) == "created"
    assert await mgmt.delete(slug)


async def test_endpoint_api_key_overrides_client_key(platform: LocalPlatform) -> None:
    data = DataClient(base_url=closed_port_url(), project=platform.project)
    # No key on the client; the per-endpoint key is enough to build the endpoint.
    ep = data.endpoint("anything", api_key=FAKE_LIVE)
    assert FAKE_LIVE not in repr(ep)


async def test_endpoint_key_wins_over_client_key(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(base_url=platform.base_url, project=platform.project, api_key=FAKE_LIVE)
    ok = data.endpoint(chat_slug, api_key=platform.api_key)
    assert (await ok.generate_text(prompt="hi")).text


async def test_shared_options_are_accepted(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(
        base_url=platform.base_url,
        project=platform.project,
        api_key=platform.api_key,
        timeout=30.0,
        max_retries=0,
        user_agent="tests/1.0",
    )
    assert (await data.endpoint(chat_slug).generate_text(prompt="hi")).text
    mgmt = ManagementClient.from_env(
        base_url=platform.base_url,
        project=platform.project,
        sdk_token=platform.sdk_token,
        timeout=30.0,
        max_retries=1,
        user_agent="tests/1.0",
    )
    assert await mgmt.delete("never-created") is False


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"max_retries": -1},
    ],
)
def test_bad_options_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        ManagementClient(base_url="http://127.0.0.1:9", project="p", sdk_token=FAKE_SDK, **bad)


def test_all_errors_share_a_base() -> None:
    assert issubclass(ConfigurationError, InferenceKeyError)
