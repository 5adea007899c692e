"""The client work whose machine code `generate.py` packs together in the extension.

Runs against the platform named by the ``INFERENCEKEY_*`` environment variables (the
generator starts a local one in another process, so that only client code is profiled):
the blocking and the async clients, each through the control plane (ensure, readiness,
delete) and every data-plane call, from one thread and from several at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import inferencekey
import inferencekey.sync as sync

CHAT = inferencekey.WorkloadSpec(
    name="Hot chat", slug="hot-chat", backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"
)
EMBED = inferencekey.WorkloadSpec(
    name="Hot embed",
    slug="hot-embed",
    backend="vllm",
    model="BAAI/bge-m3",
    task_type=inferencekey.TaskType.EMBEDDING,
)
RERANK = inferencekey.WorkloadSpec(
    name="Hot rerank",
    slug="hot-rerank",
    backend="vllm",
    model="BAAI/bge-reranker-v2-m3",
    task_type=inferencekey.TaskType.RERANKER,
)
SPECS = (CHAT, EMBED, RERANK)
TEXTS = ["refund policy", "2FA reset", "opening hours", "invoice total"]
CALLS = 10
THREADS = 64


def blocking() -> None:
    with sync.ManagementClient.from_env() as mgmt, sync.DataClient.from_env() as data:
        for spec in SPECS:
            mgmt.ensure(spec)
            mgmt.wait_until_ready(spec.slug, timeout=60, silent=True)
        chat = data.endpoint(CHAT.slug)
        for _ in range(CALLS):
            chat.generate_text(prompt="Summarise ticket 4411 in one line.")
        with chat.generate_text_stream(prompt="And in five words?", max_tokens=32) as stream:
            for _ in stream:
                pass

        def many() -> None:
            for _ in range(CALLS):
                chat.generate_text(messages=[{"role": "user", "content": "hello"}])

        threads = [threading.Thread(target=many) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        embed = data.endpoint(EMBED.slug)
        for _ in range(3):
            result = embed.embed(input=TEXTS)
            _ = result.embeddings, result.buffer
        data.endpoint(RERANK.slug).rerank(query="rotate a key", documents=TEXTS, top_n=2)
        with contextlib.suppress(inferencekey.InferenceKeyError):
            data.endpoint("hot-missing").generate_text(prompt="nobody serves this")
        for spec in SPECS:
            mgmt.delete(spec.slug)


async def concurrent() -> None:
    async with (
        inferencekey.ManagementClient.from_env() as mgmt,
        inferencekey.DataClient.from_env() as data,
    ):
        for spec in SPECS:
            await mgmt.ensure(spec)
            await mgmt.wait_until_ready(spec.slug, timeout=60, silent=True)
        chat = data.endpoint(CHAT.slug)
        for _ in range(CALLS):
            await chat.generate_text(prompt="Summarise ticket 4411 in one line.")
        await asyncio.gather(*(chat.generate_text(prompt="hello") for _ in range(64)))
        async with chat.generate_text_stream(prompt="And in five words?") as stream:
            async for _ in stream:
                pass
        streams = [await chat.generate_text_stream(prompt="again") for _ in range(4)]
        for stream in streams:
            async for _ in stream:
                pass
        embed = data.endpoint(EMBED.slug)
        for _ in range(3):
            result = await embed.embed(input=TEXTS)
            _ = result.embeddings, result.buffer
        await data.endpoint(RERANK.slug).rerank(query="rotate a key", documents=TEXTS)
        for spec in SPECS:
            await mgmt.delete(spec.slug)


if __name__ == "__main__":
    blocking()
    asyncio.run(concurrent())
    print("workload done")
