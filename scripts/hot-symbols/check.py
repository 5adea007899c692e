"""How much of `hot-symbols.txt` a built extension still matches.

    python scripts/hot-symbols/check.py [path/to/_native.abi3.so]

The list names functions by their mangled symbols, which change with dependencies,
compiler and build profile. Symbols the linker cannot find are skipped, so a stale list
breaks nothing; it only stops packing the code together. Below about 90 %, regenerate it
with `generate.py`.
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
        ["nm", "--defined-only", str(library)], capture_output=True, text=True, check=True
    ).stdout
    present = {parts[-1] for parts in map(str.split, listing.splitlines()) if len(parts) == 3}
    found = sum(1 for name in wanted if name in present)
    share = found / len(wanted) if wanted else 0.0
    print(f"{found} of {len(wanted)} listed functions are in {library.name} ({share:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
