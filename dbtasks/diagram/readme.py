"""The README's copy of the diagram: a ```mermaid block between two marker lines.

GitHub and GitLab render a ```mermaid block in place, so a project's README
can show its schema. Put the two markers on lines of their own where the
diagram belongs (what is between them may start empty)::

    <!-- dbtasks:diagram:begin -->
    ```mermaid
    erDiagram
        ...
    ```
    <!-- dbtasks:diagram:end -->

``regenerate-db-diagram`` rewrites only the lines between the markers, with
the text of diagram.mmd in a ```mermaid fence; ``check-db-docs`` reports a
block that differs. A README without the markers is never touched.

A marker counts only alone on its line (up to three spaces before it) and
outside a fenced code block, so a README can show the markers in an example.
The README's line endings and every byte outside the markers are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import tempfile
from pathlib import Path

from dbtasks import names
from dbtasks.errors import ConfigError, UsageError

README_FILE = "README.md"
BEGIN = "<!-- dbtasks:diagram:begin -->"
END = "<!-- dbtasks:diagram:end -->"

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class ReadmeMarkerError(UsageError):
    """The README's diagram markers do not pair up."""


@dataclasses.dataclass(frozen=True)
class Block:
    """The text between one pair of markers: ``text[start:end]``."""

    start: int  # the first character after the begin marker's line
    end: int  # the first character of the end marker's line
    line: int  # the begin marker's line number (1-based)
    newline: str  # the begin marker line's ending, used inside the block


def read_readme(path: Path) -> str | None:
    """The README's text with its line endings as they are, or None when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a file", "rename it, or keep the README in a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None


def _marker(line: str) -> str | None:
    stripped = line.rstrip("\r\n")
    if len(stripped) - len(stripped.lstrip(" ")) > 3:
        return None  # indented code, not a marker
    word = stripped.strip()
    return word if word in (BEGIN, END) else None


def find_blocks(text: str, shown: str = README_FILE) -> list[Block]:
    """Every marked block of ``text``; a :class:`ReadmeMarkerError` when the markers do not pair up."""
    blocks: list[Block] = []
    fence: str | None = None  # the fence of the code block we are in, outside the markers
    begin: tuple[int, int, str] | None = None  # (start, line number, newline) of an open begin marker
    offset = 0
    fix = f"put the begin and end markers on lines of their own around the ```mermaid block, then {names.run('regenerate-db-diagram')}"
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        here, offset = offset, offset + len(line)
        if begin is None and fence is not None:
            match = _FENCE.match(line.rstrip("\r\n"))
            if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) and not match["info"].strip():
                fence = None
            continue
        marker = _marker(line)
        if marker == BEGIN:
            if begin is not None:
                raise ReadmeMarkerError(f"{shown} line {begin[1]}: {BEGIN} has no {END} before the next begin marker (line {number})", fix)
            newline = line[len(line.rstrip("\r\n")):] or "\n"
            begin = (offset, number, newline)
        elif marker == END:
            if begin is None:
                raise ReadmeMarkerError(f"{shown} line {number}: {END} has no {BEGIN} before it", fix)
            blocks.append(Block(begin[0], here, begin[1], begin[2]))
            begin = None
        elif begin is None:
            match = _FENCE.match(line.rstrip("\r\n"))
            if match and not (match["fence"][0] == "`" and "`" in match["info"]):
                fence = match["fence"]
    if begin is not None:
        raise ReadmeMarkerError(f"{shown} line {begin[1]}: {BEGIN} has no {END} after it", fix)
    return blocks


def block_text(mermaid: str, newline: str = "\n") -> str:
    """What belongs between the markers: diagram.mmd in a ```mermaid fence."""
    body = mermaid if mermaid.endswith("\n") else mermaid + "\n"
    return ("```mermaid\n" + body + "```\n").replace("\n", newline)


def refresh(text: str, mermaid: str, blocks: list[Block]) -> str:
    """``text`` with every marked block holding ``mermaid``; nothing else changes."""
    out, at = [], 0
    for block in blocks:
        out += [text[at:block.start], block_text(mermaid, block.newline)]
        at = block.end
    out.append(text[at:])
    return "".join(out)


def stale_blocks(text: str, mermaid: str, blocks: list[Block]) -> list[tuple[Block, str, str]]:
    """(block, what it holds, what it should hold) for each block that differs."""
    found = []
    for block in blocks:
        want = block_text(mermaid, block.newline)
        have = text[block.start:block.end]
        if have != want:
            found.append((block, have, want))
    return found


def write_readme(path: Path, text: str) -> None:
    """Replace the README's content atomically, keeping its file mode (a symlink's target is written)."""
    path = path.resolve()
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {exc.strerror}", "check its permissions") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
