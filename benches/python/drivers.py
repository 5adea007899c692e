"""One measurement of one client, run in its own interpreter by compare.py.

    python drivers.py CLIENT MEASUREMENT BASE_URL

prints one JSON object on its last line of output. Every result is checked against the canned
bodies (text, chunk count and joined text, embedding count, dims and a checksum) so no
client can win by skipping work; a failed check exits non-zero.

Only the client under test is imported, so the same file runs in the benchmark venv and in
the venv that holds the official wheel.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import canned

SEQUENTIAL_CALLS = 1_000
SEQUENTIAL_WARMUP = 50
CONCURRENCY = 64
# Throughput is measured over a fixed time rather than a fixed number of calls: the fast
# clients finish thousands of calls in a fraction of a second, where one hiccup of a
# shared machine would decide the result.
CONCURRENT_SECONDS = 1.5
CONCURRENT_WARMUP = CONCURRENCY * 2
PARALLEL_STREAMS = 50
EMBED_CALLS = 20
EMBED_WARMUP = 2
LONG_STREAM_REPEATS = 3

MESSAGES = [{"role": "user", "content": canned.PROMPT}]


# Expected values are computed on first use, so a measurement that does not need them
# (the peak-RSS one above all) does not carry them.
@functools.cache
def expected_stream_text(chunks: int) -> str:
    return canned.stream_text(chunks)


@functools.cache
def expected_embedding() -> tuple[float, float]:
    """The checksum of the canned matrix and its last value."""
    rows = canned.embedding_matrix()
    return canned.embedding_checksum(rows), rows[-1][-1]


class CheckFailed(Exception):
    """A client returned something other than the canned response."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def check_text(text: str | None) -> None:
    check(text == canned.CHAT_TEXT, f"chat text {text!r}")


def check_stream(workload: str, count: int, text: str) -> None:
    if workload == canned.STREAM_LONG_WORKLOAD:
        chunks = canned.STREAM_LONG_CHUNKS
    else:
        chunks = canned.STREAM_SHORT_CHUNKS
    expected = expected_stream_text(chunks)
    check(count == chunks, f"{workload}: {count} chunks, expected {chunks}")
    check(text == expected, f"{workload}: joined text differs ({len(text)} vs {len(expected)})")


def check_embeddings(n: int, dims: int, value: Callable[[int, int], float], tol: float) -> None:
    check(n == canned.EMBED_INPUTS, f"{n} embeddings, expected {canned.EMBED_INPUTS}")
    check(dims == canned.EMBED_DIMS, f"{dims} dims, expected {canned.EMBED_DIMS}")
    checksum, expected_last = expected_embedding()
    got = sum(value(i, (i * 37) % canned.EMBED_DIMS) for i in range(0, canned.EMBED_INPUTS, 3))
    check(abs(got - checksum) <= tol, f"checksum {got} != {checksum}")
    last = value(canned.EMBED_INPUTS - 1, canned.EMBED_DIMS - 1)
    check(abs(last - expected_last) <= tol, f"last value {last} != {expected_last}")


def check_rows(rows: Sequence[Sequence[float]]) -> None:
    check_embeddings(len(rows), len(rows[0]) if rows else 0, lambda i, j: rows[i][j], 1e-6)
    check(all(len(r) == canned.EMBED_DIMS for r in rows), "ragged embeddings")


def check_buffer(exporter: Any) -> None:
    view = memoryview(exporter)
    shape = view.shape or ()
    check(len(shape) == 2, f"buffer has shape {shape}")
    check(view.format == "f", f"buffer format {view.format!r}, expected float32")
    check_embeddings(shape[0], shape[1], lambda i, j: float(view[i, j]), 1e-5)


# ---------------------------------------------------------------------------------------------
# Clients: each exposes chat, stream and embed, doing exactly what a user would write.


class SyncClient(Protocol):
    def chat(self) -> str | None: ...
    def stream(self, workload: str) -> tuple[int, str]: ...
    def embed(self) -> Sequence[Sequence[float]]: ...
    def close(self) -> None: ...


class AsyncClient(Protocol):
    async def chat(self) -> str | None: ...
    async def stream(self, workload: str) -> tuple[int, str]: ...
    async def embed(self) -> Sequence[Sequence[float]]: ...
    async def aclose(self) -> None: ...


class OursAsync:
    def __init__(self, base_url: str) -> None:
        import inferencekey

        self.client = inferencekey.DataClient(
            base_url=base_url, project=canned.PROJECT, api_key=canned.API_KEY
        )
        self.chat_ep = self.client.endpoint(canned.CHAT_WORKLOAD)
        self.embed_ep = self.client.endpoint(canned.EMBED_WORKLOAD)
        self.stream_eps = {
            w: self.client.endpoint(w)
            for w in (canned.STREAM_LONG_WORKLOAD, canned.STREAM_SHORT_WORKLOAD)
        }

    async def chat(self) -> str | None:
        text: str = (await self.chat_ep.generate_text(prompt=canned.PROMPT)).text
        return text

    async def stream(self, workload: str) -> tuple[int, str]:
        pieces = []
        async for chunk in self.stream_eps[workload].generate_text_stream(prompt=canned.PROMPT):
            pieces.append(chunk.text)
        return len(pieces), "".join(pieces)

    async def embed(self) -> Sequence[Sequence[float]]:
        rows: Sequence[Sequence[float]] = (
            await self.embed_ep.embed(input=canned.EMBED_TEXTS)
        ).embeddings
        return rows

    async def embed_result(self) -> object:
        return await self.embed_ep.embed(input=canned.EMBED_TEXTS)

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()


class OursSync:
    """Also drives the official wheel, whose blocking data client has the same shape."""

    def __init__(self, base_url: str, module: str = "inferencekey.sync") -> None:
        import importlib

        client_class = importlib.import_module(module).DataClient
        self.client = client_class(
            base_url=base_url, project=canned.PROJECT, api_key=canned.API_KEY
        )
        self.chat_ep = self.client.endpoint(canned.CHAT_WORKLOAD)
        self.embed_ep = self.client.endpoint(canned.EMBED_WORKLOAD)
        self.stream_eps = {
            w: self.client.endpoint(w)
            for w in (canned.STREAM_LONG_WORKLOAD, canned.STREAM_SHORT_WORKLOAD)
        }

    def chat(self) -> str | None:
        text: str = self.chat_ep.generate_text(prompt=canned.PROMPT).text
        return text

    def stream(self, workload: str) -> tuple[int, str]:
        pieces = []
        for chunk in self.stream_eps[workload].generate_text_stream(prompt=canned.PROMPT):
            pieces.append(chunk.text)
        return len(pieces), "".join(pieces)

    def embed(self) -> Sequence[Sequence[float]]:
        rows: Sequence[Sequence[float]] = self.embed_ep.embed(input=canned.EMBED_TEXTS).embeddings
        return rows

    def embed_result(self) -> object:
        return self.embed_ep.embed(input=canned.EMBED_TEXTS)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


class Official(OursSync):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, module="inferencekey")


class OpenAIAsync:
    def __init__(self, base_url: str) -> None:
        from openai import AsyncOpenAI

        def make(workload: str) -> AsyncOpenAI:
            url = f"{base_url}/endpoint/{canned.PROJECT}/{workload}/v1"
            return AsyncOpenAI(base_url=url, api_key=canned.API_KEY, max_retries=0)

        self.chat_client = make(canned.CHAT_WORKLOAD)
        self.embed_client = make(canned.EMBED_WORKLOAD)
        self.stream_clients = {
            w: make(w) for w in (canned.STREAM_LONG_WORKLOAD, canned.STREAM_SHORT_WORKLOAD)
        }

    async def chat(self) -> str | None:
        response = await self.chat_client.chat.completions.create(
            model=canned.MODEL,
            messages=[{"role": "user", "content": canned.PROMPT}],
        )
        text: str | None = response.choices[0].message.content
        return text

    async def stream(self, workload: str) -> tuple[int, str]:
        pieces = []
        stream = await self.stream_clients[workload].chat.completions.create(
            model=canned.MODEL,
            messages=[{"role": "user", "content": canned.PROMPT}],
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
        return len(pieces), "".join(pieces)

    async def embed(self) -> Sequence[Sequence[float]]:
        response = await self.embed_client.embeddings.create(
            model=canned.EMBED_MODEL, input=canned.EMBED_TEXTS, encoding_format="float"
        )
        return [d.embedding for d in response.data]

    async def aclose(self) -> None:
        for c in (self.chat_client, self.embed_client, *self.stream_clients.values()):
            await c.close()


def _chat_payload(stream: bool) -> bytes:
    return json.dumps({"model": canned.MODEL, "messages": MESSAGES, "stream": stream}).encode()


def _sse_content(line: bytes) -> str | None:
    """Content of one `data:` line, "" for a line without content, None at `[DONE]`."""
    if not line.startswith(b"data:"):
        return ""
    data = line[5:].strip()
    if data == b"[DONE]":
        return None
    event = json.loads(data)
    if "error" in event:
        raise CheckFailed(f"stream error event {event['error']!r}")
    choices = event["choices"]
    if not choices:
        return ""
    content: str | None = choices[0]["delta"].get("content")
    return content or ""


class AiohttpRaw:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.headers = {
            "Authorization": f"Bearer {canned.API_KEY}",
            "Content-Type": "application/json",
        }
        self.session: Any = None

    def _session(self) -> Any:
        import aiohttp

        if self.session is None:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
            self.session = aiohttp.ClientSession(connector=connector, headers=self.headers)
        return self.session

    async def _post(self, path: str, body: bytes) -> Any:
        async with self._session().post(self.base_url + path, data=body) as response:
            check(response.status == 200, f"status {response.status}")
            return json.loads(await response.read())

    async def chat(self) -> str | None:
        payload = _chat_payload(False)
        body = await self._post(canned.chat_path(canned.CHAT_WORKLOAD), payload)
        text: str | None = body["choices"][0]["message"]["content"]
        return text

    async def stream(self, workload: str) -> tuple[int, str]:
        pieces = []
        url = self.base_url + canned.chat_path(workload)
        async with self._session().post(url, data=_chat_payload(True)) as response:
            check(response.status == 200, f"status {response.status}")
            done = False
            async for line in response.content:
                content = _sse_content(line)
                if content is None:
                    done = True
                    break
                if line.startswith(b"data:"):
                    pieces.append(content)
            check(done, "stream ended before [DONE]")
        return len(pieces), "".join(pieces)

    async def embed(self) -> Sequence[Sequence[float]]:
        payload = json.dumps({"model": canned.EMBED_MODEL, "input": canned.EMBED_TEXTS}).encode()
        body = await self._post(canned.embed_path(), payload)
        data = sorted(body["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class HttpxRaw:
    def __init__(self, base_url: str) -> None:
        import httpx

        limits = httpx.Limits(
            max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY * 2
        )
        self.client = httpx.Client(
            base_url=base_url,
            limits=limits,
            headers={
                "Authorization": f"Bearer {canned.API_KEY}",
                "Content-Type": "application/json",
            },
        )

    def _post(self, path: str, body: bytes) -> Any:
        response = self.client.post(path, content=body)
        check(response.status_code == 200, f"status {response.status_code}")
        return json.loads(response.content)

    def chat(self) -> str | None:
        body = self._post(canned.chat_path(canned.CHAT_WORKLOAD), _chat_payload(False))
        text: str | None = body["choices"][0]["message"]["content"]
        return text

    def stream(self, workload: str) -> tuple[int, str]:
        pieces = []
        path = canned.chat_path(workload)
        with self.client.stream("POST", path, content=_chat_payload(True)) as response:
            check(response.status_code == 200, f"status {response.status_code}")
            done = False
            for line in response.iter_lines():
                raw = line.encode()
                content = _sse_content(raw)
                if content is None:
                    done = True
                    break
                if raw.startswith(b"data:"):
                    pieces.append(content)
            check(done, "stream ended before [DONE]")
        return len(pieces), "".join(pieces)

    def embed(self) -> Sequence[Sequence[float]]:
        payload = json.dumps({"model": canned.EMBED_MODEL, "input": canned.EMBED_TEXTS}).encode()
        body = self._post(canned.embed_path(), payload)
        data = sorted(body["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]

    def close(self) -> None:
        self.client.close()


ASYNC_CLIENTS: dict[str, Callable[[str], AsyncClient]] = {
    "ours-async": OursAsync,
    "openai-async": OpenAIAsync,
    "aiohttp": AiohttpRaw,
}
SYNC_CLIENTS: dict[str, Callable[[str], SyncClient]] = {
    "ours-sync": OursSync,
    "official": Official,
    "httpx": HttpxRaw,
}


# ---------------------------------------------------------------------------------------------
# Measurements


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _latency_result(samples_ns: list[int]) -> dict[str, float]:
    us = [s / 1_000 for s in samples_ns]
    return {"p50_us": _percentile(us, 0.5), "p99_us": _percentile(us, 0.99)}


class _Meter:
    """Wall time, CPU time (every thread of the process) and context switches from now on."""

    def __init__(self) -> None:
        self.usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def throughput(self, calls: int) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        usage = resource.getrusage(resource.RUSAGE_SELF)
        switches = (usage.ru_nvcsw - self.usage.ru_nvcsw) + (usage.ru_nivcsw - self.usage.ru_nivcsw)
        return {
            "calls_per_s": calls / wall,
            "cpu_us_per_call": cpu / calls * 1e6,
            "switches_per_call": switches / calls,
            "peak_rss_mib": _peak_rss_mib(usage),
        }


def _peak_rss_mib(usage: resource.struct_rusage) -> float:
    """This process's own peak resident set. On Linux that is `VmHWM`: `ru_maxrss`
    carries over the peak of the process that forked this one (the orchestrator, tens of
    MiB), so every client would report at least that."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _embed_stats(samples_ns: list[int]) -> dict[str, float]:
    return {"ms": statistics.median(samples_ns) / 1e6}


async def run_async(client: AsyncClient, measurement: str) -> dict[str, float]:
    if measurement == "probe":
        check_text(await client.chat())
        check_stream(
            canned.STREAM_SHORT_WORKLOAD, *await client.stream(canned.STREAM_SHORT_WORKLOAD)
        )
        check_rows(await client.embed())
        if isinstance(client, OursAsync):
            check_buffer(as_buffer(await client.embed_result(), _numpy()))
        return {}

    if measurement == "sequential":
        for _ in range(SEQUENTIAL_WARMUP):
            check_text(await client.chat())
        samples = []
        for _ in range(SEQUENTIAL_CALLS):
            start = time.perf_counter_ns()
            text = await client.chat()
            samples.append(time.perf_counter_ns() - start)
            check_text(text)
        return _latency_result(samples)

    if measurement == "concurrent":

        async def calls(more: Callable[[], bool]) -> int:
            finished = 0

            async def worker() -> None:
                nonlocal finished
                while more():
                    check_text(await client.chat())
                    finished += 1

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return finished

        warmup = itertools.count()
        await calls(lambda: next(warmup) < CONCURRENT_WARMUP)
        meter = _Meter()
        deadline = time.perf_counter() + CONCURRENT_SECONDS
        finished = await calls(lambda: time.perf_counter() < deadline)
        return meter.throughput(finished)

    if measurement == "stream-long":
        check_stream(
            canned.STREAM_SHORT_WORKLOAD, *await client.stream(canned.STREAM_SHORT_WORKLOAD)
        )
        streams: list[tuple[float, float, int]] = []
        for _ in range(LONG_STREAM_REPEATS):
            cpu, wall = time.process_time(), time.perf_counter()
            count, text = await client.stream(canned.STREAM_LONG_WORKLOAD)
            streams.append((time.process_time() - cpu, time.perf_counter() - wall, count))
            check_stream(canned.STREAM_LONG_WORKLOAD, count, text)
        return _stream_stats(streams)

    if measurement == "streams-parallel":
        workload = canned.STREAM_SHORT_WORKLOAD
        check_stream(workload, *await client.stream(workload))
        wall = time.perf_counter()
        results = await asyncio.gather(*(client.stream(workload) for _ in range(PARALLEL_STREAMS)))
        wall = time.perf_counter() - wall
        for count, text in results:
            check_stream(workload, count, text)
        return {"chunks_per_s": PARALLEL_STREAMS * canned.STREAM_SHORT_CHUNKS / wall}

    if measurement == "embed":
        for _ in range(EMBED_WARMUP):
            check_rows(await client.embed())
        samples = []
        for _ in range(EMBED_CALLS):
            start = time.perf_counter_ns()
            rows = await client.embed()
            samples.append(time.perf_counter_ns() - start)
            check_rows(rows)
        return _embed_stats(samples)

    if measurement == "embed-buffer" and isinstance(client, OursAsync):
        numpy = _numpy()
        for _ in range(EMBED_WARMUP):
            check_buffer(as_buffer(await client.embed_result(), numpy))
        samples = []
        for _ in range(EMBED_CALLS):
            start = time.perf_counter_ns()
            result = await client.embed_result()
            view = as_buffer(result, numpy)
            samples.append(time.perf_counter_ns() - start)
            check_buffer(view)
        return _embed_stats(samples)

    raise SystemExit(f"measurement {measurement!r} does not apply")


def _stream_stats(samples: list[tuple[float, float, int]]) -> dict[str, float]:
    """Medians over (cpu seconds, wall seconds, chunks) of repeated long streams."""
    return {
        "cpu_us_per_chunk": statistics.median(cpu / n * 1e6 for cpu, _, n in samples),
        "chunks_per_s": statistics.median(n / wall for _, wall, n in samples),
    }


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def as_buffer(result: Any, numpy: Any) -> Any:
    """The zero-copy view a user would take: numpy when installed, else the buffer protocol
    (Python 3.12+), else the documented `buffer` property."""
    if numpy is not None:
        return numpy.asarray(result)
    if sys.version_info >= (3, 12):
        return memoryview(result)
    return result.buffer


def run_sync(client: SyncClient, measurement: str) -> dict[str, float]:
    if measurement == "probe":
        check_text(client.chat())
        check_stream(canned.STREAM_SHORT_WORKLOAD, *client.stream(canned.STREAM_SHORT_WORKLOAD))
        check_rows(client.embed())
        if type(client) is OursSync:
            check_buffer(as_buffer(client.embed_result(), _numpy()))
        return {}

    if measurement == "sequential":
        for _ in range(SEQUENTIAL_WARMUP):
            check_text(client.chat())
        samples = []
        for _ in range(SEQUENTIAL_CALLS):
            start = time.perf_counter_ns()
            text = client.chat()
            samples.append(time.perf_counter_ns() - start)
            check_text(text)
        return _latency_result(samples)

    if measurement == "concurrent":
        warmup = itertools.count()
        warmup_lock = threading.Lock()

        def warming() -> bool:
            with warmup_lock:
                return next(warmup) < CONCURRENT_WARMUP

        _threaded_calls(client, warming)
        meter = _Meter()
        deadline = time.perf_counter() + CONCURRENT_SECONDS
        finished = _threaded_calls(client, lambda: time.perf_counter() < deadline)
        return meter.throughput(finished)

    if measurement == "stream-long":
        check_stream(canned.STREAM_SHORT_WORKLOAD, *client.stream(canned.STREAM_SHORT_WORKLOAD))
        streams: list[tuple[float, float, int]] = []
        for _ in range(LONG_STREAM_REPEATS):
            cpu, wall = time.process_time(), time.perf_counter()
            count, text = client.stream(canned.STREAM_LONG_WORKLOAD)
            streams.append((time.process_time() - cpu, time.perf_counter() - wall, count))
            check_stream(canned.STREAM_LONG_WORKLOAD, count, text)
        return _stream_stats(streams)

    if measurement == "streams-parallel":
        workload = canned.STREAM_SHORT_WORKLOAD
        check_stream(workload, *client.stream(workload))
        results: list[tuple[int, str]] = []
        lock = threading.Lock()

        def one() -> None:
            result = client.stream(workload)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=one) for _ in range(PARALLEL_STREAMS)]
        wall = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall
        check(len(results) == PARALLEL_STREAMS, f"{len(results)} streams finished")
        for count, text in results:
            check_stream(workload, count, text)
        return {"chunks_per_s": PARALLEL_STREAMS * canned.STREAM_SHORT_CHUNKS / wall}

    if measurement == "embed":
        for _ in range(EMBED_WARMUP):
            check_rows(client.embed())
        samples = []
        for _ in range(EMBED_CALLS):
            start = time.perf_counter_ns()
            rows = client.embed()
            samples.append(time.perf_counter_ns() - start)
            check_rows(rows)
        return _embed_stats(samples)

    if measurement == "embed-buffer" and type(client) is OursSync:
        numpy = _numpy()
        for _ in range(EMBED_WARMUP):
            check_buffer(as_buffer(client.embed_result(), numpy))
        samples = []
        for _ in range(EMBED_CALLS):
            start = time.perf_counter_ns()
            result = client.embed_result()
            view = as_buffer(result, numpy)
            samples.append(time.perf_counter_ns() - start)
            check_buffer(view)
        return _embed_stats(samples)

    raise SystemExit(f"measurement {measurement!r} does not apply")


def _threaded_calls(client: SyncClient, more: Callable[[], bool]) -> int:
    """Calls from CONCURRENCY threads while `more()` holds; returns how many finished."""
    finished = [0] * CONCURRENCY
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            while more():
                check_text(client.chat())
                finished[slot] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(finished)


def main(argv: list[str]) -> int:
    name, measurement, base_url = argv
    if name in ASYNC_CLIENTS:
        make_async = ASYNC_CLIENTS[name]

        async def go() -> dict[str, float]:
            client = make_async(base_url)
            try:
                return await run_async(client, measurement)
            finally:
                await client.aclose()

        result = asyncio.run(go())
    elif name in SYNC_CLIENTS:
        client = SYNC_CLIENTS[name](base_url)
        try:
            result = run_sync(client, measurement)
        finally:
            client.close()
    else:
        raise SystemExit(f"unknown client {name!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
