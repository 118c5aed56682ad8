"""Files derived from the code (`make docs` writes them; tests/deploy fails while one is stale)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stale(files: Mapping[Path, str]) -> list[Path]:
    """The files whose committed text differs from what the code derives now."""
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]


def write_or_check(files: Mapping[Path, str], description: str, command: str, argv: Sequence[str] | None) -> int:
    """Write the stale files, or with `--check` only report them (exit 1)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    args = parser.parse_args(argv)
    outdated = stale(files)
    if args.check:
        if outdated:
            names = ", ".join(str(p.relative_to(ROOT)) for p in outdated)
            print(f"stale (run `{command}` or `make docs`): {names}", file=sys.stderr)
            return 1
        return 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0
