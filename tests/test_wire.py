"""What the SDK sends and how it reads what comes back, against a small real HTTP
server written here: headers, bodies, and the response variants PROTOCOL.md says
clients must tolerate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from _support import Server, serve_http
from inferencekey import (
    ApiError,
    DataClient,
    ManagementClient,
    OnDrift,
    PermissionDenied,
    ValidationError,
    WorkloadSpec,
)

SDK = "ik_sdk_5c07e1aa_" + "a" * 64
LIVE = "ik_live_5c07e1aa_" + "b" * 64


@pytest.fixture
def server() -> Iterator[Server]:
    with serve_http() as state:
        yield state


CHAT = "/endpoint/orbit/triage-bot/v1/chat/completions"


def chat_body(content: Any, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c-1",
        "object": "chat.completion",
        "created": 1,
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    body.update(extra)
    return body


def data_client(server: Server, **options: Any) -> DataClient:
    return DataClient(base_url=server.base_url, project="orbit", api_key=LIVE, **options)


async def test_chat_request_headers_and_body(server: Server) -> None:
    server.reply("POST", CHAT, 200, chat_body("hello", usage={"prompt_tokens": 3}))
    ep = data_client(server, user_agent="tests/1.0").endpoint("triage-bot")
    result = await ep.generate_text(prompt="Summarise 4411", temperature=0.3, max_tokens=12)
    assert result.text == "hello"
    assert result.model == "Qwen/Qwen2.5-7B-Instruct"
    assert result.usage is not None
    assert result.usage.prompt_tokens == 3
    (request,) = server.requests
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {LIVE}"
    assert request.headers["user-agent"].startswith("inferencekey-py/")
    assert request.headers["user-agent"].endswith("tests/1.0")
    assert request.headers["content-type"].startswith("application/json")
    assert "application/json" in request.headers["accept"]
    sent = request.json()
    assert sent["model"] == "triage-bot"
    assert sent["messages"] == [{"role": "user", "content": "Summarise 4411"}]
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 12
    assert not sent.get("stream", False)
    assert LIVE not in request.path


async def test_null_content_missing_usage_and_unknown_fields(server: Server) -> None:
    server.reply("POST", CHAT, 200, chat_body(None, system_fingerprint="fp_1"))
    result = await data_client(server).endpoint("triage-bot").generate_text(prompt="hi")
    assert result.text == ""
    assert result.usage is None
    assert result.raw["system_fingerprint"] == "fp_1"


async def test_stream_parsing_tolerates_crlf_comments_and_metadata(server: Server) -> None:
    events = [
        ": a comment\r\n\r\n",
        'event: message\r\ndata: {"choices":[{"index":0,"delta":{"role":"assistant"},'
        '"finish_reason":null}]}\r\n\r\n',
        'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\r\n\r\n',
        'data: {"choices":[{"index":0,"delta":{"content":"lo ✓"},"finish_reason":null}]}\n\n',
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,'
        '"total_tokens":3}}\n\n',
        "data: [DONE]\n\n",
    ]
    server.reply("POST", CHAT, 200, "".join(events).encode(), "text/event-stream")
    ep = data_client(server).endpoint("triage-bot")
    chunks = [c async for c in ep.generate_text_stream(prompt="hi")]
    assert "".join(c.text for c in chunks) == "Hello ✓"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    (request,) = server.requests
    assert request.json()["stream"] is True
    assert "text/event-stream" in request.headers["accept"]


async def test_stream_without_done_is_truncated(server: Server) -> None:
    body = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    server.reply("POST", CHAT, 200, body.encode(), "text/event-stream")
    stream = data_client(server).endpoint("triage-bot").generate_text_stream(prompt="hi")
    with pytest.raises(ApiError) as info:
        await stream.text()
    assert info.value.code == "stream_truncated"


async def test_embeddings_ordered_by_index(server: Server) -> None:
    path = "/endpoint/orbit/triage-bot/v1/embeddings"
    server.reply(
        "POST",
        path,
        200,
        {
            "object": "list",
            "model": "BAAI/bge-m3",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.5, 0.25]},
                {"object": "embedding", "index": 0, "embedding": [1.0, -1.0]},
            ],
        },
    )
    result = await data_client(server).endpoint("triage-bot").embed(input=["first", "second"])
    assert result.embeddings == [[1.0, -1.0], [0.5, 0.25]]
    assert result.buffer.shape == (2, 2)
    assert server.requests[0].json()["input"] == ["first", "second"]


async def test_embeddings_count_mismatch_is_rejected(server: Server) -> None:
    path = "/endpoint/orbit/triage-bot/v1/embeddings"
    server.reply("POST", path, 200, {"data": [{"index": 0, "embedding": [1.0]}]})
    with pytest.raises(ApiError):
        await data_client(server).endpoint("triage-bot").embed(input=["a", "b"])


async def test_rerank_accepts_score_and_sorts(server: Server) -> None:
    path = "/endpoint/orbit/triage-bot/v1/rerank"
    server.reply(
        "POST",
        path,
        200,
        {
            "results": [
                {"index": 0, "score": 0.1},
                {"index": 2, "score": 0.9},
                {"index": 1, "score": 0.5},
            ]
        },
    )
    result = (
        await data_client(server)
        .endpoint("triage-bot")
        .rerank(query="q", documents=["a", "b", "c"], top_n=3)
    )
    assert [(i.index, i.relevance_score) for i in result.results] == [(2, 0.9), (1, 0.5), (0, 0.1)]
    assert result.model is None
    assert server.requests[0].json() == {
        "model": "triage-bot",
        "query": "q",
        "documents": ["a", "b", "c"],
        "top_n": 3,
    }


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (
            403,
            {"error": "scope_insufficient", "message": "nope"},
            PermissionDenied,
            "scope_insufficient",
        ),
        (
            400,
            {"error": {"message": "bad", "type": "invalid_request", "code": 1234}},
            ValidationError,
            "1234",
        ),
        (
            422,
            {"error": {"code": "validation_error", "message": "bad"}},
            ValidationError,
            "validation_error",
        ),
        (500, {"object": "error", "message": "boom"}, ApiError, None),
        (502, b"<html><body>Bad gateway</body></html>", ApiError, None),
    ],
)
async def test_error_envelope_variants(
    server: Server, status: int, body: Any, cls: type[Exception], code: str | None
) -> None:
    server.reply("POST", CHAT, status, body, "text/html" if isinstance(body, bytes) else "")
    with pytest.raises(cls) as info:
        await data_client(server, max_retries=0).endpoint("triage-bot").generate_text(prompt="hi")
    error: Any = info.value
    assert error.status == status
    if code is not None:
        assert str(error.code) == code


@pytest.mark.parametrize("listing", [[], None, {"workloads": None}, {"workloads": []}])
async def test_list_variants_mean_empty(server: Server, listing: Any) -> None:
    server.reply("GET", "/api/projects/orbit/workloads", 200, listing)
    mgmt = ManagementClient(base_url=server.base_url, project="orbit", sdk_token=SDK)
    spec = WorkloadSpec(name="Triage bot", slug="Triage Bot", backend="vllm", model="m")
    ref = await mgmt.ensure(spec, on_drift=OnDrift.DRY_RUN)
    assert (ref.action, ref.workload_slug) == ("planned", "triage-bot")
    assert [r.method for r in server.requests] == ["GET"]
    assert server.requests[0].headers["authorization"] == f"Bearer {SDK}"


async def test_ensure_skips_unparseable_entries_and_patches_by_id(server: Server) -> None:
    live = {
        "id": "wl_7d1c9e20",
        "slug": "triage-bot",
        "name": "Triage bot",
        "backend": "vllm",
        "model_name": "old",
        "task_type": "text2text",
        "config": {"command": "serve", "added_by_server": 1},
        "some_future_field": {"x": 1},
    }
    server.reply(
        "GET", "/api/projects/orbit/workloads", 200, [{"slug": 42}, {"nonsense": True}, live]
    )
    server.reply("PATCH", "/api/workloads/wl_7d1c9e20", 200, {**live, "model_name": "new"})
    mgmt = ManagementClient(base_url=server.base_url, project="orbit", sdk_token=SDK)
    spec = WorkloadSpec(
        name="Triage bot", slug="triage-bot", backend="vllm", model="new", command="serve"
    )
    ref = await mgmt.ensure(spec)
    assert ref.action == "updated"
    patch = server.requests[-1]
    assert (patch.method, patch.path) == ("PATCH", "/api/workloads/wl_7d1c9e20")
    assert patch.json() == {"model_name": "new"}


async def test_delete_lists_then_deletes_by_id(server: Server) -> None:
    live = {"id": "wl_1", "slug": "triage-bot", "name": "n", "backend": "vllm", "model_name": "m"}
    server.reply("GET", "/api/projects/orbit/workloads", 200, [live])
    server.reply("DELETE", "/api/workloads/wl_1", 204, b"")
    mgmt = ManagementClient(base_url=server.base_url, project="orbit", sdk_token=SDK)
    assert await mgmt.delete("Triage Bot") is True
    assert [(r.method, r.path) for r in server.requests][-1] == ("DELETE", "/api/workloads/wl_1")
    # A 404 on DELETE (someone else deleted it meanwhile) still means "absent".
    server.reply("DELETE", "/api/workloads/wl_1", 404, {"error": {"code": "not_found"}})
    assert await mgmt.delete("triage-bot") is False


async def test_extra_fields_pass_through_and_usage_chunk(server: Server) -> None:
    events = (
        'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
        'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,'
        '"total_tokens":5}}\n\n'
        "data: [DONE]\n\n"
    )
    server.reply("POST", CHAT, 200, events.encode(), "text/event-stream")
    ep = data_client(server).endpoint("triage-bot")
    extra = {"top_p": 0.9, "seed": 7, "stream_options": {"include_usage": True}}
    chunks = [c async for c in ep.generate_text_stream(prompt="hi", extra=extra)]
    sent = server.requests[0].json()
    assert (sent["top_p"], sent["seed"], sent["stream_options"]) == (
        0.9,
        7,
        {"include_usage": True},
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].total_tokens == 5
