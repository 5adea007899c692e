"""Secrets: no token or key, nor its secret part, in any exception, repr, log line or
URL, whatever went wrong."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import inferencekey.sync as iks
from _support import CHAT_MODEL
from inferencekey import (
    DataClient,
    InferenceKeyError,
    ManagementClient,
    WorkloadSpec,
)
from inferencekey.local import LocalPlatform

from .harness import Api


def texts_of(value: Any) -> list[str]:
    texts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        texts += [str(a) for a in value.args]
        texts += [str(v) for v in vars(value).values()]
    return texts


async def test_no_secret_in_errors_reprs_logs_or_urls(
    faulty: LocalPlatform, caplog: pytest.LogCaptureFixture, slug: str
) -> None:
    p = faulty
    caplog.set_level(logging.DEBUG)
    extra_key = p.mint_api_key()
    secrets = [p.sdk_token, p.api_key, p.read_only_token, extra_key]
    texts: list[str] = [repr(p)]
    clients: list[Any] = []
    for module in (None, iks):
        mgmt_cls = ManagementClient if module is None else iks.ManagementClient
        data_cls = DataClient if module is None else iks.DataClient
        mgmt = mgmt_cls(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        data = data_cls(base_url=p.base_url, project=p.project, api_key=p.api_key)
        clients += [mgmt, data, data.endpoint("chat"), data.endpoint("chat", api_key=extra_key)]
    texts += [t for c in clients for t in texts_of(c)]

    # Normal traffic, logged at DEBUG by the client and by the emulator.
    mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
    ep = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key).endpoint("chat")
    await mgmt.ensure(WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL))
    await mgmt.wait_until_ready(slug, silent=True)
    texts += texts_of(await ep.generate_text(prompt="hi"))
    async for chunk in ep.generate_text_stream(prompt="hi"):
        texts += texts_of(chunk)
    await mgmt.delete(slug)

    # Every kind of failure, with the secrets in play.
    failures: list[Any] = [
        ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.api_key).ensure(
            WorkloadSpec(name=slug, slug=slug, backend="vllm", model=CHAT_MODEL)
        ),
        DataClient(base_url=p.base_url, project=p.project, api_key=p.sdk_token)
        .endpoint("chat")
        .generate_text(prompt="hi"),
        ManagementClient(
            base_url=p.base_url, project=p.project, sdk_token=p.read_only_token
        ).delete("chat"),
        DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key + "0")
        .endpoint("chat")
        .generate_text(prompt="hi"),
        mgmt.ensure(WorkloadSpec(name=slug, slug=slug, backend="vllm", model=p.api_key)),
    ]
    api = Api("async")
    for fault in ("status=500", "html502", "reset", "invalid_json", "stall"):
        faulty_ep = api.endpoint(p, fault, None, max_retries=0, timeout=0.5)
        failures.append(faulty_ep.generate_text(prompt="hi"))
    for call in failures:
        with pytest.raises(InferenceKeyError) as info:
            await call
        texts += texts_of(info.value)
    for fault in ("error_event", "cut_after=150", "drop_done"):
        out = await api.stream(api.endpoint(p, fault, None), prompt="hi")
        assert out.error is not None
        texts += texts_of(out.error)
    api.close_all()

    client_lines = [r.getMessage() for r in caplog.records if r.name == "inferencekey"]
    server_lines = [r.getMessage() for r in caplog.records if r.name == "inferencekey.local"]
    # The URLs requested are logged on both sides; the test needs them to look at.
    assert any("/api/projects/" in line and "status=" in line for line in client_lines)
    assert any("/endpoint/" in line for line in server_lines)
    haystack = "\n".join(texts) + "\n" + caplog.text
    haystack += "\n".join(str(r.args) for r in caplog.records)
    # Credentials do show up, redacted: the haystack is the right one.
    assert f"{p.api_key[:16]}…" in haystack
    assert f"{p.sdk_token[:15]}…" in haystack
    for secret in secrets:
        assert secret not in haystack
        assert secret[-64:] not in haystack
