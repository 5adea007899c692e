"""The lifecycle helper: ``async with mgmt.workload(spec) as ref:`` declares a workload,
waits until it serves, and deletes it when the block ends, whether it ends normally,
with an exception or by cancellation.

Uses the platform named by the ``INFERENCEKEY_*`` environment variables, or an
embedded local platform when none is set::

    python examples/lifecycle.py
"""

from __future__ import annotations

import asyncio
import os

from inferencekey import DataClient, ManagementClient, TaskType, WorkloadSpec

SPEC = WorkloadSpec(
    name="Lifecycle embeddings",
    slug="lifecycle-embed",
    backend="vllm",
    model="BAAI/bge-m3",
    task_type=TaskType.EMBEDDING,
)


class Abort(Exception):
    """Raised on purpose to show that the workload is deleted on errors too."""


async def lifecycle(mgmt: ManagementClient, data: DataClient) -> None:
    async with mgmt.workload(SPEC) as ref:
        result = await data.endpoint(ref.workload_slug).embed(input="hello")
        print(f"{ref.workload_slug} ({ref.action}) served a {len(result.embeddings[0])}-dim vector")
    print(f"after the block, deleting again finds: {await mgmt.delete(ref.workload_slug)}")

    try:
        async with mgmt.workload(SPEC) as ref:
            raise Abort
    except Abort:
        print(f"after an exception, deleting again finds: {await mgmt.delete(ref.workload_slug)}")


async def main() -> None:
    if any(name.startswith("INFERENCEKEY_") for name in os.environ):
        async with ManagementClient.from_env() as mgmt, DataClient.from_env() as data:
            await lifecycle(mgmt, data)
        return

    from inferencekey.local import LocalPlatform

    async with LocalPlatform(readiness="instant") as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
        async with mgmt, data:
            await lifecycle(mgmt, data)


if __name__ == "__main__":
    asyncio.run(main())
