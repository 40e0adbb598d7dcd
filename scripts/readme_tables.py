#!/usr/bin/env python3
"""Rewrite the generated tables of README.md: recipes (dbtasks.names) and settings (dbtasks.config).

Usage: python scripts/readme_tables.py [--check]

Each table sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
markers. With --check nothing is written and the exit code is 1 when a table
is stale (the test suite runs this check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def tables() -> dict[str, str]:
    from dbtasks import config, names
    from dbtasks.checks.runner import registry

    registry()  # the checks add their recipes to the name table
    return {"recipes": names.markdown_table(), "settings": config.markdown_table()}


def render(text: str) -> str:
    for name, table in tables().items():
        pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- begin {name} --> ... <!-- end {name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + table + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print("README.md tables are stale; run: python scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        README.write_text(fresh)
        print("README.md tables updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
