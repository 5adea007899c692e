"""End to end with the async API: ensure, wait until ready, generate, stream, embed,
rerank, delete.

Uses the platform named by the ``INFERENCEKEY_*`` environment variables, or an
embedded local platform when none is set::

    python examples/async_quickstart.py
"""

from __future__ import annotations

import asyncio
import os

from inferencekey import DataClient, ManagementClient, TaskType, WorkloadSpec

CHAT = WorkloadSpec(
    name="Quickstart chat",
    slug="quickstart-chat",
    backend="vllm",
    model="Qwen/Qwen2.5-0.5B-Instruct",
)
EMBED = WorkloadSpec(
    name="Quickstart embeddings",
    slug="quickstart-embed",
    backend="vllm",
    model="BAAI/bge-m3",
    task_type=TaskType.EMBEDDING,
)
RERANK = WorkloadSpec(
    name="Quickstart reranker",
    slug="quickstart-rerank",
    backend="vllm",
    model="BAAI/bge-reranker-v2-m3",
    task_type=TaskType.RERANKER,
)


async def quickstart(mgmt: ManagementClient, data: DataClient) -> None:
    refs = [await mgmt.ensure(spec) for spec in (CHAT, EMBED, RERANK)]
    try:
        for ref in refs:
            print(f"{ref.workload_slug}: {ref.action}")
            await mgmt.wait_until_ready(ref.workload_slug, timeout=300)

        chat = data.endpoint(refs[0].workload_slug)
        result = await chat.generate_text(prompt="Summarise ticket 4411 in one line.")
        print(f"reply ({result.finish_reason}): {result.text}")

        print("streamed: ", end="")
        async for chunk in chat.generate_text_stream(prompt="And in five words?", max_tokens=32):
            print(chunk.text, end="", flush=True)
        print()

        embedded = await data.endpoint(refs[1].workload_slug).embed(
            input=["refund policy", "2FA reset"]
        )
        print(f"{len(embedded.embeddings)} embeddings of {len(embedded.embeddings[0])} dims")

        ranked = await data.endpoint(refs[2].workload_slug).rerank(
            query="how do I rotate a key",
            documents=["Keys are rotated from Settings.", "Our office is in Lyon."],
        )
        for item in ranked.results:
            print(f"rerank: document {item.index} scored {item.relevance_score:.3f}")
    finally:
        for ref in refs:
            deleted = await mgmt.delete(ref.workload_slug)
            print(f"{ref.workload_slug}: {'deleted' if deleted else 'already gone'}")


async def main() -> None:
    if any(name.startswith("INFERENCEKEY_") for name in os.environ):
        async with ManagementClient.from_env() as mgmt, DataClient.from_env() as data:
            await quickstart(mgmt, data)
        return

    from inferencekey.local import LocalPlatform

    async with LocalPlatform(readiness="instant") as p:
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
        async with mgmt, data:
            await quickstart(mgmt, data)


if __name__ == "__main__":
    asyncio.run(main())
