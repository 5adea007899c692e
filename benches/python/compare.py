"""Side-by-side benchmark of our Python SDK against its peers on one canned server.

    python benches/python/compare.py [--write-results benches/RESULTS.md]

nginx serves precomputed data-plane responses on 127.0.0.1, so the server does as little
work per request as a server can. The same work then runs through our async and blocking
clients, the official wheel (blocking only, in a virtual environment of its own because it
shares our import name), openai-python (async), raw aiohttp + json.loads and raw httpx
(blocking, threads).
Every measurement of every client runs in a fresh interpreter; rounds interleave the
clients and the table reports medians over rounds.

The benchmark tools go into `.bench-venv/` at the repository root, created on first run.
By default our package is built from the repository into that venv (`pip install .`);
`--ours-python PATH` uses an interpreter where it is already installed instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import canned

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_ROOT = REPO / ".bench-venv"
PEER_PACKAGES = ["openai", "aiohttp", "httpx", "numpy"]
OFFICIAL_PACKAGES = ["inferencekey"]
DRIVER = HERE / "drivers.py"
TIMES = "\u00d7"
NOTES_MARKER = "<!-- Notes below this line are kept when the file is regenerated. -->"

MEASUREMENTS = [
    "sequential",
    "concurrent",
    "stream-long",
    "streams-parallel",
    "embed",
    "embed-buffer",
]
OURS = ["ours-async", "ours-sync"]
PEERS = ["official", "openai-async", "aiohttp", "httpx"]
# The statement a user runs to get each client's data-plane class.
IMPORTS = {
    "ours-async": "from inferencekey import DataClient",
    "ours-sync": "from inferencekey.sync import DataClient",
    "official": "from inferencekey import DataClient",
    "openai-async": "from openai import AsyncOpenAI",
    "aiohttp": "import aiohttp",
    "httpx": "import httpx",
}
LABELS = {
    "ours-async": "ours (async)",
    "ours-sync": "ours (sync, threads)",
    "official": "official wheel (sync, threads)",
    "openai-async": "openai-python (async)",
    "aiohttp": "aiohttp + json (async)",
    "httpx": "httpx + json (sync, threads)",
}
DRIVER_TIMEOUT_S = 180
IMPORT_REPEATS = 3


@dataclass(frozen=True)
class Metric:
    key: str
    measurement: str
    field: str
    label: str
    higher_is_better: bool
    digits: int
    # Diagnostic rows explain the others; they get no best peer and no ratio.
    ranked: bool = True


METRICS = [
    Metric("seq_p50", "sequential", "p50_us", "sequential latency p50 (µs)", False, 0),
    Metric("seq_p99", "sequential", "p99_us", "sequential latency p99 (µs)", False, 0),
    Metric("calls_per_s", "concurrent", "calls_per_s", "throughput at c=64 (calls/s)", True, 0),
    Metric("cpu_per_call", "concurrent", "cpu_us_per_call", "CPU per call at c=64 (µs)", False, 0),
    Metric(
        "switches",
        "concurrent",
        "switches_per_call",
        "context switches per call at c=64",
        False,
        2,
        ranked=False,
    ),
    Metric("peak_rss", "concurrent", "peak_rss_mib", "peak RSS at c=64 (MiB)", False, 1),
    Metric(
        "cpu_per_chunk",
        "stream-long",
        "cpu_us_per_chunk",
        "one 10k-chunk stream: CPU per chunk (µs)",
        False,
        2,
    ),
    Metric(
        "stream_rate", "stream-long", "chunks_per_s", "one 10k-chunk stream (chunks/s)", True, 0
    ),
    Metric(
        "parallel_rate",
        "streams-parallel",
        "chunks_per_s",
        "50 x 1k-chunk streams (total chunks/s)",
        True,
        0,
    ),
    Metric("embed_list", "embed", "ms", "embed 64x1024, list path (ms)", False, 2),
    Metric("embed_buffer", "embed-buffer", "ms", "embed 64x1024, buffer path (ms)", False, 2),
    Metric("import", "import", "ms", "import, net of interpreter start (ms)", False, 1),
]
METRIC_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class Client:
    name: str
    python: Path

    @property
    def is_ours(self) -> bool:
        return self.name in OURS


@dataclass
class Samples:
    """Per (client, metric key), one value per round."""

    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, client: str, key: str, value: float) -> None:
        self.values.setdefault((client, key), []).append(value)

    def median(self, client: str, key: str) -> float | None:
        values = self.values.get((client, key))
        return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# Setup


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_logged(
    cmd: Sequence[str | Path], log_file: Path, what: str, env: dict[str, str] | None = None
) -> None:
    with log_file.open("ab") as out:
        done = subprocess.run([str(c) for c in cmd], stdout=out, stderr=out, env=env, check=False)
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{what} failed (exit {done.returncode}); last lines:\n" + "\n".join(tail))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, packages: list[str], log_file: Path) -> Path:
    """Create `venv` if needed and install `packages` once (a marker records what is there)."""
    python = venv_python(venv)
    marker = venv / ".bench-packages"
    wanted = "\n".join(packages)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"setting up {venv.relative_to(REPO)} ({', '.join(packages)}) ...")
    if not python.exists():
        run_logged([sys.executable, "-m", "venv", venv], log_file, f"creating {venv}")
    run_logged(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
        log_file,
        f"installing {' '.join(packages)}",
    )
    marker.write_text(wanted)
    return python


def build_ours(python: Path, log_file: Path) -> None:
    log("building our package into the benchmark venv (pip install .) ...")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(REPO / "target"))
    pip: list[str | Path] = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run_logged(
        [*pip, "--no-deps", "--force-reinstall", REPO], log_file, "pip install . (ours)", env=env
    )


def ensure_nginx(install: bool) -> str:
    nginx = canned.find_nginx()
    if nginx:
        return nginx
    if install and hasattr(os, "geteuid") and os.geteuid() == 0:
        log("installing nginx-light with apt-get ...")
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "nginx-light"], check=True, stdout=subprocess.DEVNULL
        )
        nginx = canned.find_nginx()
        if nginx:
            return nginx
    raise SystemExit(
        "nginx is needed for the canned server. Install it with\n"
        "    sudo apt-get update && sudo apt-get install -y nginx-light\n"
        "or rerun this script as root with --install-nginx."
    )


def package_version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "?"


# ---------------------------------------------------------------------------------------------
# Running the drivers


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCEKEY_")}
    # Loopback only: a proxy configured in the environment must not sit in the middle.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    # Import times are measured with warm bytecode caches, as users mostly see them.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_driver(
    client: Client, measurement: str, base_url: str, cwd: Path
) -> dict[str, float] | str:
    """The driver's JSON result, or the error text when it failed."""
    cmd = [str(client.python), str(DRIVER), client.name, measurement, base_url]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
            cwd=cwd,
            env=child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {DRIVER_TIMEOUT_S} s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def time_command(python: Path, code: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [python, "-c", code], check=True, cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def import_time_ms(client: Client, cwd: Path, repeats: int) -> float:
    """Median wall time of the import minus the median of an empty interpreter, in ms."""
    statement = IMPORTS[client.name]
    time_command(client.python, statement, cwd)  # compile the bytecode caches first
    empty, loaded = [], []
    for _ in range(repeats):
        empty.append(time_command(client.python, "pass", cwd))
        loaded.append(time_command(client.python, statement, cwd))
    return max(0.0, statistics.median(loaded) - statistics.median(empty)) * 1000


def applies(client: Client, measurement: str) -> bool:
    return measurement != "embed-buffer" or client.is_ours


def probe(clients: list[Client], base_url: str, cwd: Path) -> list[Client]:
    """Drop the clients that cannot complete one checked call of each kind."""
    working = []
    for client in clients:
        result = run_driver(client, "probe", base_url, cwd)
        if isinstance(result, str):
            log(f"  {client.name}: unusable, left out: {result}")
        else:
            working.append(client)
    return working


def run_rounds(clients: list[Client], base_url: str, cwd: Path, rounds: int) -> Samples:
    samples = Samples()
    for round_no in range(rounds):
        # Rotate the order each round so no client always runs first or last.
        order = clients[round_no % len(clients) :] + clients[: round_no % len(clients)]
        for measurement in MEASUREMENTS:
            for client in order:
                if not applies(client, measurement):
                    continue
                started = time.perf_counter()
                result = run_driver(client, measurement, base_url, cwd)
                took = time.perf_counter() - started
                where = f"  round {round_no + 1} {measurement:<17} {client.name:<13}"
                if isinstance(result, str):
                    log(f"{where} FAILED: {result}")
                    samples.errors[(client.name, measurement)] = result
                    continue
                log(f"{where} {took:5.1f} s {result}")
                for metric in METRICS:
                    if metric.measurement == measurement and metric.field in result:
                        samples.add(client.name, metric.key, result[metric.field])
        for client in order:
            ms = import_time_ms(client, cwd, IMPORT_REPEATS)
            log(f"  round {round_no + 1} import            {client.name:<13} {ms:.1f} ms")
            samples.add(client.name, "import", ms)
    return samples


# ---------------------------------------------------------------------------------------------
# Report


def best_peer(samples: Samples, metric: Metric, peers: list[str]) -> tuple[str, float] | None:
    if not metric.ranked:
        return None
    found = [(p, v) for p in peers if (v := samples.median(p, metric.key)) is not None]
    if not found:
        return None
    pick: Callable[..., tuple[str, float]] = max if metric.higher_is_better else min
    return pick(found, key=lambda pv: pv[1])


def advantage(metric: Metric, ours: float, peer: float) -> float:
    """How many times better ours is than the peer (> 1 means ours wins)."""
    if metric.higher_is_better:
        return ours / peer if peer else float("inf")
    return peer / ours if ours else float("inf")


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def table(samples: Samples, clients: list[Client]) -> str:
    names = [c.name for c in clients]
    ours = [n for n in names if n in OURS]
    peers = [n for n in names if n in PEERS]
    head = ["metric", *(LABELS[n] for n in names), *(f"{LABELS[o]} vs best peer" for o in ours)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        row = [metric.label]
        best = best_peer(samples, metric, peers)
        for name in names:
            value = fmt(samples.median(name, metric.key), metric.digits)
            if best and name == best[0]:
                value = f"**{value}**"
            row.append(value)
        for name in ours:
            value_ours = samples.median(name, metric.key)
            if best is None or value_ours is None:
                row.append("—")
            else:
                row.append(f"{advantage(metric, value_ours, best[1]):.2f}{TIMES}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    description: str
    metric: str
    # Either a factor of the best peer (ours must be at least that many times better),
    # or an absolute bound in the metric's unit.
    factor: float | None = None
    bound: float | None = None


TARGETS = [
    Target("throughput at c=64 ≥ 1.5x best peer", "calls_per_s", factor=1.5),
    Target("sequential p50 ≤ best peer", "seq_p50", factor=1.0),
    Target("CPU per streamed chunk ≤ 3 µs", "cpu_per_chunk", bound=3.0),
    Target("50-stream chunks/s ≥ 1.5x best peer", "parallel_rate", factor=1.5),
    Target("embeddings, list path ≤ 15 ms", "embed_list", bound=15.0),
    Target("embeddings, buffer path ≤ 3 ms", "embed_buffer", bound=3.0),
    Target("import ≤ 50 ms net", "import", bound=50.0),
    Target("peak RSS at c=64 ≤ best peer", "peak_rss", factor=1.0),
]


def verdicts(samples: Samples, clients: list[Client]) -> list[str]:
    names = [c.name for c in clients]
    peers = [n for n in names if n in PEERS]
    out = []
    for name in (n for n in names if n in OURS):
        for target in TARGETS:
            metric = METRIC_BY_KEY[target.metric]
            value = samples.median(name, metric.key)
            if value is None:
                out.append(f"- n/a  {LABELS[name]}: {target.description} (not measured)")
                continue
            shown = fmt(value, metric.digits)
            if target.bound is not None:
                ok = value <= target.bound
                detail = shown
            else:
                best = best_peer(samples, metric, peers)
                if best is None:
                    out.append(f"- n/a  {LABELS[name]}: {target.description} (no peer)")
                    continue
                ratio = advantage(metric, value, best[1])
                ok = ratio >= (target.factor or 1.0)
                detail = f"{shown} vs {fmt(best[1], metric.digits)} ({best[0]}), {ratio:.2f}{TIMES}"
            verdict = "PASS" if ok else "FAIL"
            out.append(f"- {verdict} {LABELS[name]}: {target.description} — {detail}")
    return out


def load_average() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def environment_lines(
    clients: list[Client], nginx: str, workers: int, loads: tuple[str, str]
) -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx_version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    lines = [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}",
        f"- server: {nginx_version.stderr.strip()}, {workers} worker(s), canned bodies, keep-alive",
        f"- load average (1/5/15 min): {loads[0]} before, {loads[1]} after; the benchmark "
        "itself keeps about one core busy and nginx part of the other",
    ]
    packages = {
        "ours-async": "inferencekey",
        "ours-sync": "inferencekey",
        "official": "inferencekey",
        "openai-async": "openai",
        "aiohttp": "aiohttp",
        "httpx": "httpx",
    }
    versions: dict[str, str] = {}
    for client in clients:
        key = "ours" if client.is_ours else client.name
        if key not in versions:
            versions[key] = (
                f"{packages[client.name]} {package_version(client.python, packages[client.name])}"
            )
    if "openai-async" in versions:
        openai_python = next(c.python for c in clients if c.name == "openai-async")
        versions["openai-async"] += f" (over httpx {package_version(openai_python, 'httpx')})"
    if "ours" in versions:
        versions["ours"] += " (ours, built from this repository)"
    if "official" in versions:
        versions["official"] += " (official wheel, in a venv of its own)"
    lines.append("- clients: " + "; ".join(versions.values()))
    py = subprocess.run(
        [clients[0].python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines.append(f"- Python {py.stdout.strip()}, plain asyncio event loop")
    return lines


def write_results(path: Path, command: str, body: str) -> None:
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    path.write_text(
        f"# Python benchmark results\n\nCommand: `{command}`\n\n{body}\n\n{NOTES_MARKER}{notes}"
    )


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--ours-python",
        type=Path,
        help="interpreter where our package is installed (default: build it into the bench venv)",
    )
    parser.add_argument(
        "--clients",
        default=",".join(OURS + PEERS),
        help="comma-separated subset of: " + ", ".join(OURS + PEERS),
    )
    parser.add_argument(
        "--write-results", type=Path, metavar="PATH", help="also write the markdown here"
    )
    parser.add_argument(
        "--install-nginx",
        action="store_true",
        help="apt-get install nginx when missing (root only)",
    )
    parser.add_argument("--nginx-workers", type=int, default=1)
    args = parser.parse_args()

    wanted = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(OURS + PEERS))
    if unknown:
        parser.error(f"unknown clients: {', '.join(unknown)}")

    started = time.perf_counter()
    nginx = ensure_nginx(args.install_nginx)
    VENV_ROOT.mkdir(exist_ok=True)
    setup_log = VENV_ROOT / "setup.log"
    peers_python = ensure_venv(VENV_ROOT / "peers", PEER_PACKAGES, setup_log)
    # Absolute but not resolved: a venv's interpreter is a symlink that must stay one.
    ours_python = Path(os.path.abspath(args.ours_python)) if args.ours_python else None
    if ours_python is not None and not ours_python.exists():
        parser.error(f"--ours-python {args.ours_python}: no such file")
    if ours_python is None and any(n in OURS for n in wanted):
        build_ours(peers_python, setup_log)
        ours_python = peers_python
    official_python = (
        ensure_venv(VENV_ROOT / "official", OFFICIAL_PACKAGES, setup_log)
        if "official" in wanted
        else peers_python
    )
    pythons = {"official": official_python, "ours-async": ours_python, "ours-sync": ours_python}
    clients = [Client(n, Path(pythons.get(n) or peers_python)) for n in wanted]

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="ik-bench-") as tmp:
        workdir = Path(tmp)
        # nginx workers run unprivileged when started by root and must reach the bodies.
        workdir.chmod(0o755)
        server = canned.start_server(nginx, workdir / "nginx", workers=args.nginx_workers)
        try:
            canned.check_server(server.base_url)
            log(f"canned server on {server.base_url}; checking every client once ...")
            clients = probe(clients, server.base_url, workdir)
            if not clients:
                log("no client could be driven")
                return 1
            ours_missing = sorted(set(wanted) & set(OURS) - {c.name for c in clients})
            samples = run_rounds(clients, server.base_url, workdir, args.rounds)
        finally:
            server.close()

    elapsed = time.perf_counter() - started
    load_after = load_average()
    command = "python benches/python/compare.py " + " ".join(sys.argv[1:])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Run on {now}; {args.rounds} interleaved rounds, medians over rounds; "
        f"{elapsed:.0f} s in total.",
        "\n".join(environment_lines(clients, nginx, args.nginx_workers, (load_before, load_after))),
        "Best peer per row in bold. The last columns say how many times better ours is "
        "than the best peer on that row (> 1 means ours wins, whichever way the metric "
        "points).",
        table(samples, clients),
        "## Targets\n\n" + "\n".join(verdicts(samples, clients)),
    ]
    if samples.errors:
        parts.append(
            "## Failed measurements\n\n"
            + "\n".join(f"- {c} {m}: {e}" for (c, m), e in sorted(samples.errors.items()))
        )
    body = "\n\n".join(parts)
    print(body)
    if args.write_results:
        write_results(args.write_results, command.strip(), body)
        log(f"wrote {args.write_results}")
    if ours_missing:
        log(f"our clients could not be driven: {', '.join(ours_missing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
