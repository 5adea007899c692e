"""Each HTTP status maps to one exception class, with status, code and request id;
errors pickle and never carry a secret."""

from __future__ import annotations

import pickle

import pytest

from _support import CHAT_MODEL
from inferencekey import (
    ApiError,
    AuthError,
    ConfigurationError,
    DataClient,
    InferenceKeyError,
    ManagementClient,
    PermissionDenied,
    ValidationError,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform

UNKNOWN_SDK = "ik_sdk_0badc0de_" + "1" * 64
UNKNOWN_LIVE = "ik_live_0badc0de_" + "1" * 64


def spec_for(slug: str, **extra: object) -> WorkloadSpec:
    return WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL, **extra)  # type: ignore[arg-type]


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    text = f"{error!s} {error!r} {error.args!r}"
    for secret in secrets:
        assert secret not in text
        assert secret[-64:] not in text


def test_hierarchy() -> None:
    for cls in (ConfigurationError, ValidationError, AuthError, PermissionDenied, ApiError):
        assert issubclass(cls, InferenceKeyError)
    assert issubclass(InferenceKeyError, Exception)


async def test_unknown_sdk_token_is_401_auth_error(platform: LocalPlatform, slug: str) -> None:
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=UNKNOWN_SDK
    )
    with pytest.raises(AuthError) as info:
        await mgmt.ensure(spec_for(slug))
    assert info.value.status == 401
    assert info.value.code == "unauthorized"
    assert info.value.request_id
    assert_no_secret(info.value, UNKNOWN_SDK)


async def test_unknown_data_key_is_401_auth_error(platform: LocalPlatform, chat_slug: str) -> None:
    data = DataClient(base_url=platform.base_url, project=platform.project, api_key=UNKNOWN_LIVE)
    with pytest.raises(AuthError) as info:
        await data.endpoint(chat_slug).generate_text(prompt="hi")
    assert info.value.status == 401
    assert_no_secret(info.value, UNKNOWN_LIVE)


async def test_data_key_on_control_plane_is_wrong_credential_type(
    platform: LocalPlatform, slug: str
) -> None:
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.api_key
    )
    with pytest.raises(PermissionDenied) as info:
        await mgmt.ensure(spec_for(slug))
    assert info.value.code == "wrong_credential_type"
    assert_no_secret(info.value, platform.api_key)


async def test_sdk_token_on_data_plane_is_wrong_credential_type(
    platform: LocalPlatform, chat_slug: str
) -> None:
    data = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.sdk_token
    )
    with pytest.raises(PermissionDenied) as info:
        await data.endpoint(chat_slug).generate_text(prompt="hi")
    assert info.value.code == "wrong_credential_type"
    assert_no_secret(info.value, platform.sdk_token)


async def test_other_project_is_project_scope_mismatch(mgmt: ManagementClient, slug: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        await mgmt.ensure(spec_for(slug), project="somebody-else")
    assert info.value.status == 403
    assert info.value.code == "project_scope_mismatch"


async def test_data_key_of_other_project_is_rejected(
    platform: LocalPlatform, chat_slug: str
) -> None:
    data = DataClient(base_url=platform.base_url, project="somebody-else", api_key=platform.api_key)
    with pytest.raises(PermissionDenied) as info:
        await data.endpoint(chat_slug).generate_text(prompt="hi")
    assert info.value.status == 403
    assert info.value.code == "project_scope_mismatch"


async def test_read_only_token_cannot_write(platform: LocalPlatform, slug: str) -> None:
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.read_only_token
    )
    with pytest.raises(PermissionDenied) as info:
        await mgmt.ensure(spec_for(slug))
    assert info.value.status == 403
    assert info.value.code == "scope_insufficient"
    assert_no_secret(info.value, platform.read_only_token)


async def test_read_only_token_can_list_and_follow_readiness(
    platform: LocalPlatform, chat_slug: str
) -> None:
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.read_only_token
    )
    # ensure in dry-run only lists; readiness needs workload:read.
    from inferencekey import OnDrift

    ref = await mgmt.ensure(
        WorkloadSpec(name="shared-chat", slug=chat_slug, backend="vllm", model=CHAT_MODEL),
        on_drift=OnDrift.DRY_RUN,
    )
    assert ref.workload_slug == chat_slug
    await mgmt.wait_until_ready(chat_slug, timeout=10, silent=True)


async def test_read_only_token_cannot_delete(
    platform: LocalPlatform, mgmt: ManagementClient, slug: str
) -> None:
    await mgmt.ensure(spec_for(slug))
    reader = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.read_only_token
    )
    with pytest.raises(PermissionDenied) as info:
        await reader.delete(slug)
    assert info.value.code == "scope_insufficient"
    assert await mgmt.delete(slug)


async def test_unknown_workload_on_data_plane_is_404(data: DataClient) -> None:
    with pytest.raises(ApiError) as info:
        await data.endpoint("no-such-workload").generate_text(prompt="hi")
    assert info.value.status == 404
    assert info.value.code == "not_found"
    assert not isinstance(info.value, (AuthError, PermissionDenied, ValidationError))


async def test_unknown_workload_readiness_is_404(mgmt: ManagementClient) -> None:
    with pytest.raises(ApiError) as info:
        await mgmt.wait_until_ready("no-such-workload", timeout=10, silent=True)
    assert info.value.status == 404


async def test_server_validation_is_400_validation_error(mgmt: ManagementClient, slug: str) -> None:
    # The platform checks policy configs; autoscaling needs a positive hourly cost.
    spec = spec_for(
        slug,
        execution_policy="autoscaling",
        execution_policy_config={
            "min_workers": 0,
            "max_workers": 1,
            "workers": {"source": "cloud"},
        },
    )
    with pytest.raises(ValidationError) as info:
        await mgmt.ensure(spec)
    assert info.value.status == 400
    assert info.value.code in ("validation_error", "bad_request")
    assert info.value.request_id
    assert await mgmt.delete(slug) is False


async def test_not_ready_workload_is_503_api_error(slug: str) -> None:
    with LocalPlatform(readiness="demo") as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        ref = await mgmt.ensure(spec_for(slug))
        data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key, max_retries=0)
        with pytest.raises(ApiError) as info:
            await data.endpoint(ref.workload_slug).generate_text(prompt="hi")
        assert info.value.status == 503
        assert info.value.code == "upstream_unavailable"
        await mgmt.wait_until_ready(ref.workload_slug, timeout=30, silent=True)
        assert (await data.endpoint(ref.workload_slug).generate_text(prompt="hi")).text


async def test_errors_pickle_with_their_attributes(
    platform: LocalPlatform, chat_slug: str, slug: str
) -> None:
    errors: list[InferenceKeyError] = []
    bad = DataClient(base_url=platform.base_url, project=platform.project, api_key=UNKNOWN_LIVE)
    good = DataClient(
        base_url=platform.base_url, project=platform.project, api_key=platform.api_key
    )
    mgmt = ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    )
    for call in (
        lambda: bad.endpoint(chat_slug).generate_text(prompt="hi"),
        lambda: good.endpoint("no-such-workload").generate_text(prompt="hi"),
        lambda: good.endpoint(chat_slug).generate_text(prompt=" "),
        lambda: mgmt.ensure(spec_for(slug), project="somebody-else"),
    ):
        try:
            await call()
        except InferenceKeyError as e:
            errors.append(e)
    assert [type(e) for e in errors] == [AuthError, ApiError, ValidationError, PermissionDenied]
    for error in errors:
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert (clone.status, clone.code, clone.request_id) == (
            error.status,
            error.code,
            error.request_id,
        )


async def test_key_without_grant_is_scope_insufficient(
    platform: LocalPlatform, chat_slug: str, embed_slug: str
) -> None:
    key = platform.mint_api_key([f"{platform.project}/{chat_slug}"])
    data = DataClient(base_url=platform.base_url, project=platform.project, api_key=key)
    assert (await data.endpoint(chat_slug).generate_text(prompt="hi")).text
    with pytest.raises(PermissionDenied) as info:
        await data.endpoint(embed_slug).embed(input="x")
    assert info.value.status == 403
    assert info.value.code == "scope_insufficient"
    assert_no_secret(info.value, key)


async def test_wildcard_key_covers_later_workloads(
    platform: LocalPlatform, mgmt: ManagementClient, slug: str
) -> None:
    key = platform.mint_api_key([f"{platform.project}/*"])
    await mgmt.ensure(spec_for(slug))
    await mgmt.wait_until_ready(slug, silent=True)
    data = DataClient(base_url=platform.base_url, project=platform.project, api_key=key)
    assert (await data.endpoint(slug).generate_text(prompt="hi")).text
    assert await mgmt.delete(slug)


async def test_revoked_credentials(platform: LocalPlatform, chat_slug: str, slug: str) -> None:
    key = platform.mint_api_key([f"{platform.project}/*"])
    token = platform.mint_sdk_token(["workload:write", "workload:read"])
    assert platform.revoke(key)
    assert platform.revoke(token)
    data = DataClient(base_url=platform.base_url, project=platform.project, api_key=key)
    with pytest.raises(AuthError) as auth:
        await data.endpoint(chat_slug).generate_text(prompt="hi")
    assert auth.value.status == 401
    mgmt = ManagementClient(base_url=platform.base_url, project=platform.project, sdk_token=token)
    with pytest.raises(PermissionDenied) as denied:
        await mgmt.ensure(spec_for(slug))
    assert denied.value.code == "scope_insufficient"
