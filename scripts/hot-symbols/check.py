"""How much of `hot-symbols.txt` a built extension matches, and whether it is laid out.

    python scripts/hot-symbols/check.py [path/to/_native.abi3.so]

The list names functions by their mangled symbols, which change with dependencies,
compiler and build profile. Symbols the linker cannot find are skipped, so a stale list
breaks nothing; it only stops packing the code together. Below about 90 %, regenerate it
with `generate.py`. "laid out first" says whether the listed functions do come before
all others in the code, which they do not when build.rs found a linker without
`--symbol-ordering-file` (or `INFERENCEKEY_NO_SYMBOL_ORDER` was set).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE.parent.parent / "crates" / "inferencekey-py" / "hot-symbols.txt"


def default_library() -> Path:
    import inferencekey._native as native

    return Path(native.__file__)


def main(argv: list[str]) -> int:
    library = Path(argv[0]) if argv else default_library()
    wanted = [
        line.strip() for line in LIST.read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    listing = subprocess.run(
        ["nm", "--defined-only", "--numeric-sort", str(library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Functions in address order: "address type name".
    functions = [
        parts[2]
        for parts in map(str.split, listing.splitlines())
        if len(parts) == 3 and parts[1] in "tTwW"
    ]
    wanted_set = set(wanted)
    present = wanted_set.intersection(functions)
    share = len(present) / len(wanted) if wanted else 0.0
    print(f"{len(present)} of {len(wanted)} listed functions are in {library.name} ({share:.0%})")
    if not present:
        return 0
    last = max(i for i, name in enumerate(functions) if name in wanted_set)
    strays = sum(1 for name in functions[:last] if name not in wanted_set)
    # A few others sit among them: aliases of one body, and functions the profile missed.
    layout = "laid out first" if strays <= len(present) // 5 else "NOT laid out first"
    print(f"{layout}: {strays} other functions among the listed ones")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
