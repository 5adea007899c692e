"""Writes the list of functions the extension runs in ordinary client use, hottest first.

    python scripts/hot-symbols/generate.py [--python .venv/bin/python]

The linker places these functions side by side at the start of the extension's code
(`--symbol-ordering-file`, see `crates/inferencekey-py/build.rs`). Without it the few
hundred kilobytes a client runs lie scattered over five megabytes of code, and since the
kernel maps code in 64 KiB blocks around each page a process touches, most of the
library ends up resident in every process that makes calls.

How: a local platform runs in a process of its own (so that its server code stays out
of the list), and `workload.py` drives the blocking and the async clients against it
under valgrind's callgrind, which records every function executed; the functions of
the extension are written hottest first (by instructions executed in them). Code that
only runs at full speed (a lock found taken, a poll that finds its answer early) is then
caught by running the workload natively under `perf record -e page-faults`, when perf is
installed: every function that makes the process map a page of the extension is added.

Run it again after a change of dependencies, compiler or build profile; symbols that no
longer exist are ignored by the linker, so a stale list only loses its effect.
`check.py` tells how much of the list a build still matches.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "crates" / "inferencekey-py" / "hot-symbols.txt"
OBJECT = "_native.abi3.so"
NATIVE_RUNS = 3

HEADER = """\
# Functions of the inferencekey._native extension that ordinary client use runs,
# hottest first. build.rs hands this file to the linker (--symbol-ordering-file), which
# lays these functions out side by side. Written by scripts/hot-symbols/generate.py;
# regenerate after a change of dependencies, compiler or build profile.
"""


def start_platform(python: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [python, "-m", "inferencekey", "local", "--json", "--readiness", "instant"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the local platform did not start")
    env: dict[str, str] = json.loads(line)
    return proc, env


def profile(python: str, env: dict[str, str], out: Path) -> None:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--demangle=no",
        f"--callgrind-out-file={out}",
        python,
        str(HERE / "workload.py"),
    ]
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0 or "workload done" not in done.stdout:
        sys.stderr.write(done.stdout + done.stderr[-4000:])
        raise SystemExit("the profiled workload failed")


def hot_functions(callgrind_out: Path) -> list[str]:
    """Functions of the extension with their exclusive instruction counts, hottest first."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    define = re.compile(r"^c?(ob|fn)=\((\d+)\) (.+)$")
    lines = callgrind_out.read_text().splitlines()
    for line in lines:
        m = define.match(line)
        if m:
            names[m.group(1)][m.group(2)] = m.group(3)
    cost: Counter[str] = Counter()
    in_object = False
    current: str | None = None
    skip_next = False
    for line in lines:
        if line.startswith("ob="):
            ref = re.match(r"^ob=\((\d+)\)", line)
            in_object = ref is not None and names["ob"].get(ref.group(1), "").endswith(OBJECT)
        elif line.startswith("fn="):
            ref = re.match(r"^fn=\((\d+)\)", line)
            current = names["fn"].get(ref.group(1)) if ref and in_object else None
            if current is not None:
                cost[current] += 0
        elif line.startswith("calls="):
            # The cost line after a call is the callee's inclusive cost, not ours.
            skip_next = True
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            if skip_next:
                skip_next = False
            elif current is not None:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[current] += int(parts[1])
    # Addresses without a symbol cannot be ordered; callgrind marks recursion with 'N.
    ordered = (re.sub(r"'\d+$", "", name) for name, _ in cost.most_common())
    return list(dict.fromkeys(n for n in ordered if not n.startswith("0x")))


def faulting_functions(python: str, env: dict[str, str], tmp: Path) -> list[str]:
    """Functions of the extension that made the process map a page, in a native run."""
    data = tmp / "perf.data"
    record = [
        "perf", "record", "-q", "-e", "page-faults", "-c", "1", "-o", str(data),
        python, str(HERE / "workload.py"),
    ]  # fmt: skip
    done = subprocess.run(record, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"perf record failed, skipped: {done.stderr.strip()[-300:]}")
        return []
    script = ["perf", "script", "-i", str(data), "-F", "ip,sym,dso", "--no-demangle"]
    out = subprocess.run(script, capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()  # address, symbol, (object)
        if len(parts) == 3 and OBJECT in parts[2] and not parts[1].startswith("["):
            found.append(parts[1])
    return list(dict.fromkeys(found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with the package")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    proc, env = start_platform(args.python)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            profile(args.python, env, out)
            functions = hot_functions(out)
            if shutil.which("perf"):
                for _ in range(NATIVE_RUNS):
                    more = faulting_functions(args.python, env, Path(tmp))
                    functions += [f for f in more if f not in functions]
            else:
                print("perf is not installed: the list holds what callgrind saw")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    args.out.write_text(HEADER + "\n".join(functions) + "\n")
    print(f"{len(functions)} functions written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
