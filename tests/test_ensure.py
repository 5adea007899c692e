"""ensure(): every action and OnDrift mode, project precedence, slug canonicalisation;
delete() idempotency; the workload() lifecycle helper."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

import inferencekey
from _support import CHAT_MODEL, EMBED_MODEL, wire
from inferencekey import (
    DataClient,
    ManagementClient,
    OnDrift,
    PermissionDenied,
    TaskType,
    ValidationError,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform


def spec_for(slug: str, **extra: Any) -> WorkloadSpec:
    fields: dict[str, Any] = {"name": slug, "slug": slug, "backend": "vllm", "model": CHAT_MODEL}
    fields.update(extra)
    return WorkloadSpec(**fields)


def plan_fields(ref: Any) -> list[str]:
    return [entry.field for entry in ref.plan]


async def test_created_then_unchanged(mgmt: ManagementClient, slug: str) -> None:
    first = await mgmt.ensure(spec_for(slug))
    assert wire(first.action) == "created"
    assert first.workload_slug == slug
    assert list(first.plan) == []
    second = await mgmt.ensure(spec_for(slug))
    assert wire(second.action) == "unchanged"
    assert second.workload_slug == slug
    assert list(second.plan) == []


async def test_drift_is_updated_with_its_plan(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug))
    ref = await mgmt.ensure(spec_for(slug, model="Qwen/Qwen2.5-7B-Instruct", description="v2"))
    assert wire(ref.action) == "updated"
    entries = {entry.field: entry for entry in ref.plan}
    assert set(entries) == {"model_name", "description"}
    assert entries["model_name"].live == CHAT_MODEL
    assert entries["model_name"].desired == "Qwen/Qwen2.5-7B-Instruct"
    assert entries["description"].live is None
    again = await mgmt.ensure(spec_for(slug, model="Qwen/Qwen2.5-7B-Instruct", description="v2"))
    assert wire(again.action) == "unchanged"


async def test_undeclared_fields_are_left_alone(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug, description="kept", config={"command": "vllm serve m"}))
    # Neither description nor config is declared here: no drift.
    ref = await mgmt.ensure(spec_for(slug))
    assert wire(ref.action) == "unchanged"


async def test_config_compares_declared_keys_only(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug, config={"command": "vllm serve m", "extra": 1}))
    ref = await mgmt.ensure(spec_for(slug, config={"command": "vllm serve m"}))
    assert wire(ref.action) == "unchanged"
    ref = await mgmt.ensure(spec_for(slug, command="vllm serve other"))
    assert wire(ref.action) == "updated"
    assert plan_fields(ref) == ["config"]


async def test_warn_leaves_drift_and_warns(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug))
    warning_class = getattr(inferencekey, "DriftWarning", UserWarning)
    with pytest.warns(warning_class) as record:
        ref = await mgmt.ensure(spec_for(slug, model="other-model"), on_drift=OnDrift.WARN)
    assert wire(ref.action) == "drift_ignored"
    assert plan_fields(ref) == ["model_name"]
    assert any("model_name" in str(w.message) for w in record)
    # Nothing was sent: the live workload still has the old model.
    check = await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)
    assert wire(check.action) == "unchanged"


async def test_ignore_leaves_drift_silently(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = await mgmt.ensure(spec_for(slug, name="Renamed"), on_drift=OnDrift.IGNORE)
    assert wire(ref.action) == "drift_ignored"
    assert plan_fields(ref) == ["name"]
    check = await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)
    assert wire(check.action) == "unchanged"


async def test_fail_raises_naming_the_fields(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug))
    with pytest.raises(ValidationError) as info:
        await mgmt.ensure(spec_for(slug, backend="sglang"), on_drift=OnDrift.FAIL)
    assert "backend" in str(info.value)
    check = await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)
    assert wire(check.action) == "unchanged"


@pytest.mark.parametrize("mode", [OnDrift.FAIL, OnDrift.WARN, OnDrift.IGNORE, OnDrift.RECONCILE])
async def test_absent_is_created_in_every_mutating_mode(
    mgmt: ManagementClient, slug: str, mode: OnDrift
) -> None:
    ref = await mgmt.ensure(spec_for(slug), on_drift=mode)
    assert wire(ref.action) == "created"
    assert await mgmt.delete(slug)


async def test_dry_run_never_mutates(mgmt: ManagementClient, slug: str) -> None:
    ref = await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)
    assert wire(ref.action) == "planned"
    assert ref.workload_slug == slug
    assert await mgmt.delete(slug) is False

    await mgmt.ensure(spec_for(slug))
    ref = await mgmt.ensure(spec_for(slug, model="other"), on_drift=OnDrift.DRY_RUN)
    assert wire(ref.action) == "planned"
    assert [(e.field, e.live, e.desired) for e in ref.plan] == [("model_name", CHAT_MODEL, "other")]
    assert wire((await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)).action) == "unchanged"


async def test_task_type_change_is_not_patchable(mgmt: ManagementClient, slug: str) -> None:
    await mgmt.ensure(spec_for(slug))
    changed = spec_for(slug, model=EMBED_MODEL, task_type=TaskType.EMBEDDING)
    with pytest.raises(ValidationError) as info:
        await mgmt.ensure(changed)
    assert "task_type" in str(info.value)
    planned = await mgmt.ensure(changed, on_drift=OnDrift.DRY_RUN)
    assert wire(planned.action) == "planned"
    assert "task_type" in plan_fields(planned)
    assert wire((await mgmt.ensure(spec_for(slug), on_drift=OnDrift.DRY_RUN)).action) == "unchanged"


async def test_plain_mapping_spec(mgmt: ManagementClient, slug: str) -> None:
    mapping = {"name": "Mapping", "slug": slug, "backend": "vllm", "model": CHAT_MODEL}
    assert wire((await mgmt.ensure(mapping)).action) == "created"
    assert wire((await mgmt.ensure(mapping)).action) == "unchanged"


async def test_slug_is_canonicalised(mgmt: ManagementClient) -> None:
    ref = await mgmt.ensure(spec_for("Triage Bot (v2)"))
    try:
        assert ref.workload_slug == "triage-bot-v2"
        again = await mgmt.ensure(spec_for("  triage__BOT..v2 ", name="Triage Bot (v2)"))
        assert wire(again.action) == "unchanged"
        assert again.workload_slug == "triage-bot-v2"
    finally:
        assert await mgmt.delete("Triage Bot (v2)")


async def test_project_precedence(
    mgmt: ManagementClient, platform: LocalPlatform, slug: str
) -> None:
    # spec.project beats the client's project: another project is refused.
    with pytest.raises(PermissionDenied) as info:
        await mgmt.ensure(spec_for(slug, project="other-project"))
    assert info.value.code == "project_scope_mismatch"
    # the explicit argument beats spec.project.
    ref = await mgmt.ensure(spec_for(slug, project="other-project"), project=platform.project)
    assert ref.project_slug == platform.project
    assert wire(ref.action) == "created"
    # and the explicit argument beats the client's project.
    with pytest.raises(PermissionDenied):
        await mgmt.ensure(spec_for(slug), project="other-project")
    with pytest.raises(PermissionDenied):
        await mgmt.delete(slug, project="other-project")
    assert await mgmt.delete(slug, project=platform.project)


async def test_delete_is_idempotent(mgmt: ManagementClient, slug: str) -> None:
    assert await mgmt.delete(slug) is False
    await mgmt.ensure(spec_for(slug))
    assert await mgmt.delete(slug) is True
    assert await mgmt.delete(slug) is False
    assert wire((await mgmt.ensure(spec_for(slug))).action) == "created"
    assert await mgmt.delete(slug.upper()) is True


async def test_server_policy_validation_against_stored_config(
    mgmt: ManagementClient, slug: str
) -> None:
    policy = {"replicas": 1}
    ref = await mgmt.ensure(
        spec_for(slug, execution_policy="fixed", execution_policy_config=policy)
    )
    assert wire(ref.action) == "created"
    ref = await mgmt.ensure(
        spec_for(slug, execution_policy="fixed", execution_policy_config=policy)
    )
    assert wire(ref.action) == "unchanged"


async def test_workload_helper_deletes_on_exit(
    mgmt: ManagementClient, data: DataClient, slug: str
) -> None:
    async with mgmt.workload(spec_for(slug)) as ref:
        assert ref.workload_slug == slug
        assert wire(ref.action) == "created"
        assert (await data.endpoint(ref.workload_slug).generate_text(prompt="hi")).text
    assert await mgmt.delete(slug) is False


async def test_workload_helper_deletes_on_exception(mgmt: ManagementClient, slug: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with mgmt.workload(spec_for(slug)):
            raise Boom
    assert await mgmt.delete(slug) is False


async def test_workload_helper_deletes_on_cancellation(mgmt: ManagementClient, slug: str) -> None:
    inside = asyncio.Event()

    async def hold() -> None:
        async with mgmt.workload(spec_for(slug)):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(hold())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await mgmt.delete(slug) is False


async def test_workload_helper_passes_options(
    mgmt: ManagementClient, platform: LocalPlatform, slug: str
) -> None:
    async with mgmt.workload(spec_for(slug), project=platform.project, timeout=30) as ref:
        assert ref.project_slug == platform.project
    assert await mgmt.delete(slug) is False


async def test_enum_members_and_strings_are_interchangeable(
    mgmt: ManagementClient, slug: str
) -> None:
    from inferencekey import Backend, ExecutionPolicy

    assert Backend("vllm") is Backend.VLLM
    assert str(ExecutionPolicy.FIXED) == "fixed"
    with_enums = spec_for(
        slug,
        backend=Backend.VLLM,
        task_type=TaskType.TEXT2TEXT,
        execution_policy=ExecutionPolicy.FIXED,
        execution_policy_config={"replicas": 1},
    )
    assert wire((await mgmt.ensure(with_enums, on_drift=OnDrift.RECONCILE)).action) == "created"
    with_strings = spec_for(
        slug,
        backend="vllm",
        task_type="text2text",
        execution_policy="fixed",
        execution_policy_config={"replicas": 1},
    )
    ref = await mgmt.ensure(with_strings, on_drift="reconcile")
    assert wire(ref.action) == "unchanged"
    assert wire((await mgmt.ensure(with_strings, on_drift="dry_run")).action) == "unchanged"


async def test_unknown_on_drift_and_spec_keys_are_refused(
    mgmt: ManagementClient, slug: str
) -> None:
    with pytest.raises(ValidationError):
        await mgmt.ensure(spec_for(slug), on_drift="sometimes")
    with pytest.raises(ValidationError, match="flavour"):
        await mgmt.ensure(
            {"name": "a", "slug": slug, "backend": "vllm", "model": "m", "flavour": 1}
        )
    assert await mgmt.delete(slug) is False


async def test_closed_client_refuses_calls(platform: LocalPlatform) -> None:
    async with ManagementClient(
        base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
    ) as client:
        assert await client.delete("never-created") is False
    assert client.closed
    with pytest.raises(inferencekey.ApiError, match="closed"):
        await client.delete("never-created")
