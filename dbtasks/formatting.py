"""Format a revision file with autoflake, isort and black, in that order.

Run by Alembic's post-write hook (alembic.ini: ``module = dbtasks``,
``format-revision REVISION_SCRIPT_FILENAME``) on the new file only, so the
file passes ``autoflake --check``, ``isort --check-only`` and ``black --check``
without a manual step. A formatter that fails is reported and the file is kept
as Alembic wrote it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclasses.dataclass
class FormatResult:
    path: Path
    changed: bool
    failed_tool: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed_tool is None


# Imports a revision file keeps even when unused (alembic/script.py.mako writes them).
KEPT_IMPORTS = frozenset({"from alembic import op", "import sqlalchemy as sa"})
_KEEP = "  # noqa: dbtasks-keep"


def _black_options(path: Path) -> dict:
    for parent in path.resolve().parents:
        candidate = parent / "pyproject.toml"
        if candidate.is_file():
            try:
                with candidate.open("rb") as fh:
                    return tomllib.load(fh).get("tool", {}).get("black", {})
            except (OSError, tomllib.TOMLDecodeError):
                return {}
    return {}


def format_file(path: str | Path) -> FormatResult:
    """Format ``path`` in place. On failure the file is left untouched."""
    from dbtasks.errors import read_text

    path = Path(path)
    original = read_text(path)  # not text, missing, unreadable: one line from the CLI
    current = original
    for tool in ("autoflake", "isort", "black"):
        try:
            current = _apply(tool, current, path)
        except Exception as exc:  # noqa: BLE001 - any formatter failure is reported, not raised
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return FormatResult(path, False, tool, first)
    if current != original:
        path.write_text(current)
    return FormatResult(path, current != original)


def _apply(tool: str, source: str, path: Path) -> str:
    import autoflake
    import black
    import isort

    if tool == "autoflake":
        # A hand-written revision (`db-migrate-empty`) uses op and sa only once
        # the user fills in upgrade(): those two imports stay even when unused.
        kept = "".join(
            f"{line}{_KEEP}\n" if line.strip() in KEPT_IMPORTS else f"{line}\n" for line in source.split("\n")
        )[:-1]
        return autoflake.fix_code(kept, remove_all_unused_imports=True).replace(_KEEP, "")
    if tool == "isort":
        return isort.code(source, config=isort.Config(profile="black", settings_path=str(path.parent)))
    options = _black_options(path)
    mode = black.Mode(
        line_length=int(options.get("line-length", black.DEFAULT_LINE_LENGTH)),
        string_normalization=not options.get("skip-string-normalization", False),
    )
    return black.format_str(source, mode=mode)
