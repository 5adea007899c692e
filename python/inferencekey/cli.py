"""The ``inferencekey`` command line.

Commands::

    inferencekey demo [--json] [--real]
    inferencekey local [--port N] [--project SLUG] [--state FILE]
                       [--upstream SLUG=URL ...] [--readiness instant|demo]
                       [--run-commands] [--json]
    inferencekey ensure FILE [--on-drift MODE] [--project SLUG] [--json]
    inferencekey wait SLUG [--timeout SECONDS] [--project SLUG] [--json]
    inferencekey delete SLUG [--project SLUG] [--json]
    inferencekey chat SLUG PROMPT [--max-tokens N] [--temperature T] [--json]
    inferencekey embed SLUG TEXT... [--json]

Configuration comes from ``--base-url`` and ``--project`` when given, else from
``INFERENCEKEY_BASE_URL`` and ``INFERENCEKEY_PROJECT``. Tokens are read only from
``INFERENCEKEY_SDK_TOKEN`` (control plane: ensure, wait, delete) and
``INFERENCEKEY_API_KEY`` (data plane: chat, embed), never from flags, so they do not
show up in process listings or shell history.

Exit codes:

- 0: success (``delete`` of an absent workload is a success too);
- 1: the platform answered with an error, or could not be reached;
- 2: usage or configuration error: bad flags, missing or invalid spec file, missing
  environment, a token of the wrong kind, a request the SDK or the platform rejected
  as invalid;
- 130: interrupted with Ctrl-C.

``inferencekey local`` runs until Ctrl-C or SIGTERM and exits 0 on either, since that
is how a foreground server is meant to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from inferencekey import DriftEntry, WorkloadSpec, sync
    from inferencekey._real_models import RealModels

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EPILOG = """\
environment:
  INFERENCEKEY_BASE_URL   platform URL (default https://api.inferencekey.com)
  INFERENCEKEY_PROJECT    project slug
  INFERENCEKEY_SDK_TOKEN  control-plane token (ik_sdk_...) for ensure, wait, delete
  INFERENCEKEY_API_KEY    data-plane key (ik_live_...) for chat, embed
  Tokens are read from the environment only, never from flags.

exit codes:
  0    success
  1    API error (the platform answered with an error or could not be reached)
  2    usage or configuration error (bad flags, bad spec file, missing env, wrong token kind)
  130  interrupted (Ctrl-C); `local` exits 0 on Ctrl-C or SIGTERM, its normal way to stop
"""

_ON_DRIFT_CHOICES = ("reconcile", "fail", "dry_run", "warn", "ignore")


class UsageError(Exception):
    """Bad input from the command line itself: reported on one line, exit 2."""


class _AlreadyReported(Exception):
    """An SDK error whose message is already on stderr (by the readiness view)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# ---------------------------------------------------------------------------------
# Output helpers


def _err(message: str) -> None:
    text = " ".join(message.split())
    print(f"inferencekey: {text}", file=sys.stderr, flush=True)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str), flush=True)


def _plan_entries(plan: Sequence[DriftEntry]) -> list[dict[str, Any]]:
    return [{"field": e.field, "live": e.live, "desired": e.desired} for e in plan]


# ---------------------------------------------------------------------------------
# Environment and clients


def _check_token_kind(variable: str, expected_prefix: str) -> None:
    """Refuse a token of the other plane before anything is sent.

    The message names the variable and the kinds, never the token itself.
    """
    value = os.environ.get(variable)
    if not value:
        return
    if not value.startswith(expected_prefix):
        other = "ik_live_" if expected_prefix == "ik_sdk_" else "ik_sdk_"
        got = f"an {other} token" if value.startswith(other) else "not an InferenceKey token"
        raise UsageError(f"{variable} must hold an {expected_prefix}... token, got {got}")


def _require_env(variable: str, flag_value: str | None = None) -> None:
    if flag_value:
        return
    if not os.environ.get(variable):
        raise UsageError(f"{variable} is not set")


def _management_client(args: argparse.Namespace) -> sync.ManagementClient:
    from inferencekey.sync import ManagementClient

    _require_env("INFERENCEKEY_SDK_TOKEN")
    _check_token_kind("INFERENCEKEY_SDK_TOKEN", "ik_sdk_")
    _require_env("INFERENCEKEY_PROJECT", args.project)
    return ManagementClient.from_env(base_url=args.base_url, project=args.project)


def _data_client(args: argparse.Namespace) -> sync.DataClient:
    from inferencekey.sync import DataClient

    _require_env("INFERENCEKEY_API_KEY")
    _check_token_kind("INFERENCEKEY_API_KEY", "ik_live_")
    _require_env("INFERENCEKEY_PROJECT", args.project)
    return DataClient.from_env(base_url=args.base_url, project=args.project)


# ---------------------------------------------------------------------------------
# ensure / wait / delete


def _load_spec(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {path_text}") from None
    except OSError as exc:
        raise UsageError(f"cannot read spec file {path_text}: {exc.strerror}") from None

    if path.suffix.lower() == ".json":
        data = _parse_json_spec(raw, path_text)
    elif path.suffix.lower() == ".toml":
        data = _parse_toml_spec(raw, path_text)
    else:
        try:
            data = _parse_json_spec(raw, path_text)
        except UsageError:
            data = _parse_toml_spec(raw, path_text)

    if not isinstance(data, dict):
        raise UsageError(f"spec file {path_text} must hold a table/object of workload fields")
    # A file may also nest the fields under a single [workload] table.
    if set(data) == {"workload"} and isinstance(data["workload"], dict):
        data = data["workload"]
    return data


def _parse_json_spec(raw: bytes, path_text: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"invalid JSON in {path_text}: {exc}") from None


def _parse_toml_spec(raw: bytes, path_text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib as toml_module
    else:  # pragma: no cover - exercised only on Python 3.10
        try:
            import tomli as toml_module  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise UsageError(
                "reading TOML needs Python 3.11+ or the 'tomli' package; "
                "install tomli or give a JSON file"
            ) from None
    try:
        return toml_module.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, toml_module.TOMLDecodeError) as exc:
        raise UsageError(f"invalid TOML in {path_text}: {exc}") from None


def _build_spec(data: dict[str, Any]) -> WorkloadSpec:
    from inferencekey import WorkloadSpec

    try:
        return WorkloadSpec(**data)
    except TypeError as exc:
        raise UsageError(f"invalid workload spec: {exc}") from None


def _cmd_ensure(args: argparse.Namespace) -> int:
    from inferencekey import OnDrift

    data = _load_spec(args.file)
    spec = _build_spec(data)
    on_drift = OnDrift(args.on_drift.replace("-", "_"))
    mgmt = _management_client(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = mgmt.ensure(spec, on_drift=on_drift, project=args.project)
    for warning in caught:
        _err(f"warning: {warning.message}")
    plan = _plan_entries(ref.plan)
    action = ref.action
    if args.json:
        _print_json(
            {
                "project_slug": ref.project_slug,
                "workload_slug": ref.workload_slug,
                "action": action,
                "plan": plan,
            }
        )
        return EXIT_OK
    print(f"{action}: {ref.project_slug}/{ref.workload_slug}", flush=True)
    for entry in plan:
        live = json.dumps(entry["live"], default=str)
        desired = json.dumps(entry["desired"], default=str)
        print(f"  {entry['field']}: {live} -> {desired}", flush=True)
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace) -> int:
    from inferencekey import InferenceKeyError

    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    mgmt = _management_client(args)
    started = time.monotonic()
    try:
        mgmt.wait_until_ready(
            args.slug, project=args.project, timeout=args.timeout, silent=args.json
        )
    except InferenceKeyError as exc:
        # The readiness view has already printed the reason as its last line.
        if args.json:
            raise
        raise _AlreadyReported(exc) from exc
    elapsed = time.monotonic() - started
    if args.json:
        _print_json({"workload_slug": args.slug, "ready": True, "seconds": round(elapsed, 3)})
    else:
        print(f"ready: {args.slug} ({elapsed:.1f} s)", flush=True)
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    mgmt = _management_client(args)
    existed = bool(mgmt.delete(args.slug, project=args.project))
    if args.json:
        _print_json({"workload_slug": args.slug, "deleted": existed})
    else:
        print(f"{'deleted' if existed else 'absent'}: {args.slug}", flush=True)
    return EXIT_OK


# ---------------------------------------------------------------------------------
# chat / embed


def _cmd_chat(args: argparse.Namespace) -> int:
    data = _data_client(args)
    ep = data.endpoint(args.slug)
    options: dict[str, Any] = {"prompt": args.prompt}
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        options["temperature"] = args.temperature

    stream = args.stream if args.stream is not None else sys.stdout.isatty()
    if args.json:
        result = ep.generate_text(**options)
        _print_json(
            {
                "text": result.text,
                "model": result.model,
                "finish_reason": result.finish_reason,
                "usage": result.usage,
            }
        )
    elif stream:
        with ep.generate_text_stream(**options) as chunks:
            for chunk in chunks:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        result = ep.generate_text(**options)
        print(result.text, flush=True)
    return EXIT_OK


def _cmd_embed(args: argparse.Namespace) -> int:
    data = _data_client(args)
    ep = data.endpoint(args.slug)
    result = ep.embed(input=list(args.texts))
    vectors: list[list[float]] = [list(v) for v in result.embeddings]
    if args.json:
        _print_json({"model": result.model, "embeddings": vectors, "usage": result.usage})
        return EXIT_OK
    dim = len(vectors[0]) if vectors else 0
    print(f"{len(vectors)} vector(s) of {dim} dimensions (model {result.model})", flush=True)
    for text, vector in zip(args.texts, vectors, strict=True):
        head = ", ".join(f"{x:+.4f}" for x in vector[:4])
        print(f"  {_shorten(text, 40):<40}  [{head}, ...]", flush=True)
    return EXIT_OK


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------
# local


def _parse_upstreams(items: Sequence[str]) -> dict[str, str]:
    upstreams: dict[str, str] = {}
    for item in items:
        slug, sep, url = item.partition("=")
        if not sep or not slug.strip() or not url.strip():
            raise UsageError(f"--upstream expects SLUG=URL, got {item!r}")
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--upstream URL must start with http:// or https://: {url!r}")
        upstreams[slug.strip()] = url.strip()
    return upstreams


def _cmd_local(args: argparse.Namespace) -> int:
    from inferencekey.local import LocalPlatform

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    options: dict[str, Any] = {"readiness": args.readiness, "port": args.port}
    if args.project:
        options["project"] = args.project
    if args.state:
        options["state_file"] = args.state
    upstreams = _parse_upstreams(args.upstream)
    if upstreams:
        options["upstreams"] = upstreams
    if args.run_commands:
        options["run_commands"] = True

    stop = threading.Event()

    def _on_term(signum: int, frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        with LocalPlatform(**options) as platform:
            env = {
                "INFERENCEKEY_BASE_URL": platform.base_url,
                "INFERENCEKEY_PROJECT": platform.project,
                "INFERENCEKEY_SDK_TOKEN": platform.sdk_token,
                "INFERENCEKEY_API_KEY": platform.api_key,
            }
            if args.json:
                print(json.dumps(env), flush=True)
            else:
                for name, value in env.items():
                    print(f"export {name}={shlex.quote(value)}", flush=True)
            print(
                f"# local InferenceKey platform on {platform.base_url}, project "
                f"{platform.project!r}; Ctrl-C or SIGTERM stops it",
                file=sys.stderr,
                flush=True,
            )
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            print("# stopping", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


# ---------------------------------------------------------------------------------
# demo


_DEMO_TOKEN_RATE = 40.0
_DEMO_PROMPT = "In two sentences, why does a declared workload beat a hand-made one?"
_REAL_PROMPT = "What is the capital of France? Answer in one sentence."
_DEMO_TEXTS = (
    "How do I reset my password?",
    "I forgot my login credentials.",
    "What are your opening hours?",
    "The invoice total looks wrong.",
)
_DEMO_QUERY = "how do I rotate an API key"
_DEMO_DOCUMENTS = (
    "Keys are rotated from the Settings page.",
    "Our office is in Lyon.",
    "Rotating a key revokes the old one after a grace period.",
    "Invoices are sent on the first day of the month.",
)


@dataclass
class _Step:
    name: str
    detail: str
    seconds: float


@dataclass
class _DemoReport:
    base_url: str = ""
    project: str = ""
    steps: list[_Step] = field(default_factory=list)
    reply: str = ""
    chunks: int = 0
    similarity: list[list[float]] = field(default_factory=list)
    rerank: list[dict[str, Any]] = field(default_factory=list)
    workloads_deleted: int = 0

    def step(self, name: str, detail: str, started: float) -> None:
        self.steps.append(_Step(name, detail, time.monotonic() - started))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _demo_specs(real: RealModels | None) -> tuple[WorkloadSpec, WorkloadSpec]:
    """The chat and embedding workloads: simulated, or llama-server in command mode."""
    from inferencekey import TaskType, WorkloadSpec
    from inferencekey._real_models import CHAT_MODEL, EMBED_MODEL

    if real is not None:
        return (
            WorkloadSpec(
                name="Demo chat",
                slug="demo-chat",
                backend="llamacpp",
                model=CHAT_MODEL,
                command=real.chat_command(),
            ),
            WorkloadSpec(
                name="Demo embeddings",
                slug="demo-embed",
                backend="llamacpp",
                model=EMBED_MODEL,
                task_type=TaskType.EMBEDDING,
                command=real.embed_command(),
            ),
        )
    return (
        WorkloadSpec(
            name="Demo chat",
            slug="demo-chat",
            backend="vllm",
            model="Qwen/Qwen2.5-0.5B-Instruct",
        ),
        # A reranker workload serves both embeddings and rerank.
        WorkloadSpec(
            name="Demo embeddings and rerank",
            slug="demo-embed",
            backend="vllm",
            model="BAAI/bge-reranker-v2-m3",
            task_type=TaskType.RERANKER,
        ),
    )


async def _demo(
    as_json: bool, out: TextIO, report: _DemoReport, real: RealModels | None = None
) -> None:
    from inferencekey import DataClient, ManagementClient
    from inferencekey.local import LocalPlatform

    def say(text: str = "") -> None:
        if not as_json:
            print(text, file=out, flush=True)

    platform_options: dict[str, Any] = (
        {"readiness": "demo", "run_commands": True}
        if real is not None
        else {"readiness": "demo", "token_rate": _DEMO_TOKEN_RATE}
    )
    prompt = _REAL_PROMPT if real is not None else _DEMO_PROMPT
    async with LocalPlatform(**platform_options) as platform:
        report.base_url, report.project = platform.base_url, platform.project
        mgmt = ManagementClient(
            base_url=platform.base_url, project=platform.project, sdk_token=platform.sdk_token
        )
        data = DataClient(
            base_url=platform.base_url, project=platform.project, api_key=platform.api_key
        )
        chat_spec, embed_spec = _demo_specs(real)
        say(f"Local InferenceKey platform on {platform.base_url} (project {platform.project!r})")
        if real is not None:
            say(f"  command mode: {real.llama_server.name} serves the workloads on this machine")
        created: list[str] = []
        try:
            started = time.monotonic()
            for spec in (chat_spec, embed_spec):
                ref = await mgmt.ensure(spec)
                created.append(ref.workload_slug)
                say(f"  ensure {ref.workload_slug}: {ref.action}")
            report.step("ensure", f"{len(created)} workloads declared", started)

            say("\nReadiness (live):")
            started = time.monotonic()
            for slug in created:
                await mgmt.wait_until_ready(
                    slug, timeout=300.0 if real is not None else 60.0, silent=as_json
                )
            report.step("readiness", ", ".join(created) + " ready", started)

            chat = data.endpoint(created[0])
            say(f"\nStreamed reply from {created[0]}:")
            say(f"  > {prompt}")
            started = time.monotonic()
            parts: list[str] = []
            async with chat.generate_text_stream(
                prompt=prompt, max_tokens=48, temperature=0.0 if real is not None else None
            ) as stream:
                if not as_json:
                    out.write("  ")
                async for chunk in stream:
                    if chunk.text:
                        parts.append(chunk.text)
                        report.chunks += 1
                        if not as_json:
                            out.write(chunk.text)
                            out.flush()
            report.reply = "".join(parts)
            say()
            report.step("stream", f"streamed {report.chunks} chunks", started)

            embedder = data.endpoint(created[1])
            started = time.monotonic()
            embedded = await embedder.embed(input=list(_DEMO_TEXTS))
            vectors = [list(v) for v in embedded.embeddings]
            report.similarity = [[round(_cosine(a, b), 4) for b in vectors] for a in vectors]
            dim = len(vectors[0]) if vectors else 0
            report.step("embed", f"{len(vectors)} texts x {dim} dims", started)
            say("\nEmbedding similarity (cosine):")
            labels = [f"t{i + 1}" for i in range(len(_DEMO_TEXTS))]
            for label, text in zip(labels, _DEMO_TEXTS, strict=True):
                say(f"  {label}  {text}")
            say("        " + "".join(f"{label:>7}" for label in labels))
            for label, row in zip(labels, report.similarity, strict=True):
                say(f"  {label:<6}" + "".join(f"{value:>7.3f}" for value in row))

            if real is not None:
                # MiniLM is an embedding model; llama-server reranks only with a
                # reranker model.
                return
            started = time.monotonic()
            ranked = await embedder.rerank(query=_DEMO_QUERY, documents=list(_DEMO_DOCUMENTS))
            report.rerank = [
                {
                    "index": item.index,
                    "score": round(float(item.relevance_score), 4),
                    "document": _DEMO_DOCUMENTS[item.index],
                }
                for item in ranked.results
            ]
            report.step("rerank", f"{len(report.rerank)} documents ranked", started)
            say(f"\nRerank: {_DEMO_QUERY!r}")
            for position, item in enumerate(report.rerank, start=1):
                say(f"  {position}. {item['score']:.3f}  {item['document']}")
        finally:
            # By spec, not by what ensure returned: an interruption can land between
            # the server creating a workload and ensure returning.
            started = time.monotonic()
            for spec in (chat_spec, embed_spec):
                if await mgmt.delete(spec.slug):
                    report.workloads_deleted += 1
            report.step("delete", f"workloads deleted: {report.workloads_deleted}", started)


def _print_demo_summary(report: _DemoReport, total: float, out: TextIO, real: bool) -> None:
    print("\nSummary", file=out)
    engines = "llama-server processes (command mode)" if real else "built-in engines"
    print(f"  platform   local emulator at {report.base_url}, {engines}", file=out)
    for step in report.steps:
        print(f"  {step.name:<10} {step.detail:<48} {step.seconds:6.2f} s", file=out)
    print(f"  {'total':<10} {'':<48} {total:6.2f} s", file=out)
    print(f"workloads deleted: {report.workloads_deleted}", file=out, flush=True)


def _cmd_demo(args: argparse.Namespace) -> int:
    real: RealModels | None = None
    if args.real:
        from inferencekey._real_models import HOW_TO_GET, RealModels

        real = RealModels.locate()
        missing = real.missing()
        if missing:
            raise UsageError(
                f"demo --real needs llama-server and two GGUF models; missing: "
                f"{', '.join(missing)}; {HOW_TO_GET}"
            )
    started = time.monotonic()
    report = _DemoReport()
    try:
        asyncio.run(_demo(args.json, sys.stdout, report, real))
    except KeyboardInterrupt:
        # asyncio.run cancelled the demo, whose cleanup deleted what it had created.
        print(f"\nworkloads deleted: {report.workloads_deleted}", flush=True)
        raise
    total = time.monotonic() - started
    if args.json:
        _print_json(
            {
                "base_url": report.base_url,
                "project": report.project,
                "steps": [
                    {"name": s.name, "detail": s.detail, "seconds": round(s.seconds, 3)}
                    for s in report.steps
                ],
                "streamed_reply": report.reply,
                "streamed_chunks": report.chunks,
                "similarity": report.similarity,
                "rerank": report.rerank,
                "workloads_deleted": report.workloads_deleted,
                "total_seconds": round(total, 3),
            }
        )
    else:
        _print_demo_summary(report, total, sys.stdout, real is not None)
    return EXIT_OK


# ---------------------------------------------------------------------------------
# Parser and entry point


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("inferencekey")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``inferencekey`` command."""
    parser = _Parser(
        prog="inferencekey",
        description="Declare, follow and call InferenceKey workloads; run a local platform.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"inferencekey {_version()}")

    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    remote = _Parser(add_help=False)
    remote.add_argument("--base-url", help="platform URL (default: $INFERENCEKEY_BASE_URL)")
    remote.add_argument("--project", help="project slug (default: $INFERENCEKEY_PROJECT)")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, parents: list[_Parser]) -> Any:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=parents,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = add("demo", "run the end-to-end demo on an embedded local platform", [common])
    demo.add_argument(
        "--real",
        action="store_true",
        help="serve real models with llama-server in command mode (SmolLM2 chat, MiniLM "
        "embeddings; see scripts/real-models/ in the source tree)",
    )
    demo.set_defaults(func=_cmd_demo)

    local = add("local", "run the local platform in the foreground", [common])
    local.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    local.add_argument("--project", help="project slug (default: demo)")
    local.add_argument("--state", metavar="FILE", help="keep workloads in FILE across restarts")
    local.add_argument(
        "--upstream",
        metavar="SLUG=URL",
        action="append",
        default=[],
        help="serve workload SLUG by forwarding to the OpenAI-compatible URL (repeatable)",
    )
    local.add_argument(
        "--readiness",
        choices=("instant", "demo"),
        default="demo",
        help="readiness timings: instant, or about two seconds per workload (default)",
    )
    local.add_argument(
        "--run-commands",
        action="store_true",
        help="run the config.command of llamacpp, vllm, sglang and ollama workloads on "
        "this machine and serve from them",
    )
    local.set_defaults(func=_cmd_local)

    ensure = add(
        "ensure", "create or reconcile a workload from a TOML or JSON spec", [common, remote]
    )
    ensure.add_argument("file", metavar="FILE", help="spec file (.toml or .json)")
    ensure.add_argument(
        "--on-drift",
        choices=_ON_DRIFT_CHOICES,
        default="reconcile",
        type=lambda s: s.replace("-", "_"),
        help="what to do when the live workload differs (default: reconcile)",
    )
    ensure.set_defaults(func=_cmd_ensure)

    wait = add("wait", "wait until a workload serves", [common, remote])
    wait.add_argument("slug", metavar="SLUG")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds (default: 600)")
    wait.set_defaults(func=_cmd_wait)

    delete = add("delete", "delete a workload (absent is fine)", [common, remote])
    delete.add_argument("slug", metavar="SLUG")
    delete.set_defaults(func=_cmd_delete)

    chat = add("chat", "send one prompt to a workload", [common, remote])
    chat.add_argument("slug", metavar="SLUG")
    chat.add_argument("prompt", metavar="PROMPT")
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream the reply (default: when stdout is a terminal)",
    )
    chat.set_defaults(func=_cmd_chat)

    embed = add("embed", "embed one or more texts", [common, remote])
    embed.add_argument("slug", metavar="SLUG")
    embed.add_argument("texts", metavar="TEXT", nargs="+")
    embed.set_defaults(func=_cmd_embed)
    return parser


def _exit_code_for(exc: BaseException) -> int:
    from inferencekey import ConfigurationError, PermissionDenied, ValidationError

    if isinstance(exc, (ConfigurationError, ValidationError)):
        return EXIT_USAGE
    # A token of the wrong kind is refused locally (no status): a configuration mistake.
    if isinstance(exc, PermissionDenied) and getattr(exc, "status", None) is None:
        return EXIT_USAGE
    return EXIT_API_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    from inferencekey import InferenceKeyError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except InferenceKeyError as exc:
        _err(f"{type(exc).__name__}: {exc}")
        return _exit_code_for(exc)
    except _AlreadyReported as reported:
        return _exit_code_for(reported.error)
    except BrokenPipeError:
        # Output piped into a closed reader (e.g. `| head`): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run() -> NoReturn:
    """Entry point for ``python -m inferencekey``."""
    sys.exit(main())
