#!/usr/bin/env python3
"""Rewrite the generated tables of the docs: the recipes (dbtasks.names) in README.md,
the settings (dbtasks.config) in docs/configuration.md.

Usage: python scripts/readme_tables.py [--check]

Each table sits between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``
markers in its page. With --check nothing is written and the exit code is 1
when a table is stale (the test suite runs this check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"


def tables() -> dict[Path, dict[str, str]]:
    """Each page's generated tables, by marker name."""
    from dbtasks import config, names
    from dbtasks.checks.runner import registry

    registry()  # the checks add their recipes to the name table
    return {README: {"recipes": names.markdown_table()}, CONFIGURATION: {"settings": config.markdown_table()}}


def render(text: str, page_tables: dict[str, str], page: str = "README.md") -> str:
    for name, table in page_tables.items():
        pattern = re.compile(rf"(<!-- begin {name} -->\n).*?(<!-- end {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{page} has no <!-- begin {name} --> ... <!-- end {name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + table + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    stale = []
    for path, page_tables in tables().items():
        where = str(path.relative_to(ROOT))
        current = path.read_text()
        fresh = render(current, page_tables, where)
        if fresh == current:
            continue
        if "--check" in argv:
            stale.append(where)
        else:
            path.write_text(fresh)
            print(f"{where} tables updated")
    if stale:
        print(f"{', '.join(stale)}: tables are stale; run: python scripts/readme_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
