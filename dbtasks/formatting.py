"""Formatting: revision files (autoflake, isort, black), and the CLI's output (colour, progress lines).

Revision files: run by Alembic's post-write hook (alembic.ini: ``module = dbtasks``,
``format-revision REVISION_SCRIPT_FILENAME``) on the new file only, so the
file passes ``autoflake --check``, ``isort --check-only`` and ``black --check``
without a manual step. A formatter that fails is reported and the file is kept
as Alembic wrote it.

Output: :func:`style` colours what people scan (the ``error:`` prefix,
warnings and notes, check verdicts, "up to date"/"pending") and
:class:`ProgressLine` draws progress reports. Colour is decided per stream
(:func:`colour_enabled`): never when ``NO_COLOR`` is set to anything
(no-color.org), always when ``FORCE_COLOR`` or ``CLICOLOR_FORCE`` is set (to
anything but ``0``), otherwise only when that stream is a terminal whose
``TERM`` is not ``dumb``. Pipes, files and CI logs stay plain.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import IO, Callable

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


# -- colour -----------------------------------------------------------------------

# Roles, not colours, at the call sites: one table says what each looks like.
_ROLES: dict[str, dict] = {
    "error": {"fg": "red", "bold": True},
    "failed": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow"},
    "note": {"fg": "yellow", "dim": True},
    "not-run": {"fg": "yellow"},
    "pending": {"fg": "yellow"},
    "skipped": {"dim": True},
    "ok": {"fg": "green"},
    "bar": {"fg": "cyan"},
    "dim": {"dim": True},
}

# Verdicts of `check` and the prefixes of message lines, to their roles.
VERDICT_ROLES = {"ok": "ok", "FAILED": "failed", "not-run": "not-run", "skipped": "skipped"}
PREFIX_ROLES = {"error:": "error", "warning:": "warning", "note:": "note"}


def _set(name: str) -> bool:
    return bool(os.environ.get(name, ""))


def colour_enabled(stream: IO | None) -> bool:
    """Whether text written to ``stream`` gets colour (see the module docstring for the rules)."""
    if _set("NO_COLOR"):
        return False
    if any(os.environ.get(name, "") not in ("", "0") for name in ("FORCE_COLOR", "CLICOLOR_FORCE")):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real stream
        return False


def style(text: str, role: str, stream: IO | None = None) -> str:
    """``text`` coloured for ``role`` when ``stream`` (default stdout) gets colour, else ``text`` unchanged.

    Pad before styling (``style(f"{v:<8}", ...)``): the escape codes take no
    room on screen but count in ``len``.
    """
    import click

    if not text or role not in _ROLES or not colour_enabled(sys.stdout if stream is None else stream):
        return text
    return click.style(text, **_ROLES[role])


def style_prefix(line: str, stream: IO | None = None) -> str:
    """``line`` with its leading ``error:``/``warning:``/``note:`` coloured; the rest of the line as it was."""
    for prefix, role in PREFIX_ROLES.items():
        if line.startswith(prefix):
            return style(prefix, role, stream) + line[len(prefix):]
    return line


# -- progress lines -------------------------------------------------------------------


def human_bytes(n: float) -> str:
    """Bytes for a person: 812 B, 4.2 kB, 1.3 MB, 2.0 GB (powers of 1024)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# Units whose rate and ETA mean something: the work per unit is about even
# (not so for tables, steps or indexes).
_ETA_UNITS = ("bytes", "rows")


@dataclasses.dataclass
class _Stage:
    name: str
    started: float
    unit: str
    done: int = 0
    total: int | None = None
    detail: str = ""
    drawn: bool = False  # something of this stage is on the stream


class ProgressLine:
    """Draws :class:`dbtasks.data.tools.Progress` reports on ``stream`` (default stderr).

    At a terminal: one line per stage, redrawn in place (at most every
    ``redraw`` seconds): ``restore [#####-----]  48%  13.0 MB/27.0 MB  4.1 MB/s  ETA 0:03  public.events``;
    without a total, done and rate only. The stage's last frame stays, with
    the time it took in place of the ETA. Not at a terminal (pipes, files,
    CI logs): nothing for a stage shorter than ``interval`` seconds, else a
    line every ``interval`` seconds and one closing line, so logs stay short
    and a failing command's error stays the only line of a short run.
    """

    def __init__(self, stream: IO | None = None, tty: bool | None = None, interval: float = 10.0, redraw: float = 0.1, clock: Callable[[], float] = time.monotonic, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError, OSError):
                tty = False
        self.tty = tty
        self.interval = interval
        self.redraw = redraw
        self.clock = clock
        self.width = width
        self.stage: _Stage | None = None
        self.last_write = 0.0
        self.shown = 0  # length of the line on screen (terminal)

    # -- the text -----------------------------------------------------------------

    def _amount(self, n: float, unit: str) -> str:
        return human_bytes(n) if unit == "bytes" else f"{n:,.0f} {unit}"

    def _rate(self, st: _Stage, now: float) -> str:
        elapsed = now - st.started
        if elapsed <= 0 or not st.done:
            return ""
        rate = st.done / elapsed
        if st.unit == "bytes":
            return f"{human_bytes(rate)}/s"
        return f"{rate:,.0f} {st.unit}/s" if rate >= 10 else f"{rate:,.1f} {st.unit}/s"

    def text(self, st: _Stage, now: float, final: bool = False, bar: bool = True) -> str:
        """One frame of ``st`` at time ``now``; ``final`` for the closing one."""
        parts = [st.name]
        known = st.total is not None and st.total > 0
        if known:
            fraction = min(max(st.done / st.total, 0.0), 1.0)
            if bar:
                filled = int(fraction * 20)
                parts.append("[" + style("#" * filled, "bar", self.stream if self.tty else None) + "-" * (20 - filled) + "]")
            parts.append(f"{fraction * 100:3.0f}%")
            if st.unit == "bytes":
                parts.append(f"{human_bytes(st.done)}/{human_bytes(st.total)}")
            else:
                parts.append(f"{st.done:,}/{st.total:,} {st.unit}")
        else:
            parts.append(self._amount(st.done, st.unit))
        rate = self._rate(st, now) if st.unit in _ETA_UNITS else ""
        if rate:
            parts.append(rate)
        elapsed = now - st.started
        if final:
            parts.append(f"in {elapsed:.1f}s")
        elif known and st.unit in _ETA_UNITS and st.done and elapsed > 0:
            remaining = (st.total - st.done) / (st.done / elapsed)
            parts.append(f"ETA {_clock(remaining)}")
        if st.detail and not final:
            parts.append(st.detail)
        return "  ".join(parts)

    # -- drawing ------------------------------------------------------------------------

    def _columns(self) -> int:
        if self.width:
            return self.width
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        return columns if columns > 20 else 80  # a new pseudo-terminal says 0

    def _draw(self, now: float, final: bool = False) -> None:
        st = self.stage
        assert st is not None
        line = self.text(st, now, final)
        if self.tty:
            plain_len = len(click_unstyle(line))
            room = self._columns() - 1
            if plain_len > room:  # never wrap: a wrapped line cannot be redrawn in place
                line = click_unstyle(line)[:room]
                plain_len = room
            pad = " " * max(self.shown - plain_len, 0)
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self.shown = 0 if final else plain_len
        else:
            self.stream.write(self.text(st, now, final, bar=False) + "\n")
        self.stream.flush()
        st.drawn = True
        self.last_write = now

    def __call__(self, p) -> None:
        now = self.clock()
        if self.stage is None or p.stage != self.stage.name:
            self.close()
            self.stage = _Stage(p.stage, now, p.unit)
            self.last_write = now
        st = self.stage
        st.done, st.total, st.unit = p.done, p.total, p.unit
        if p.detail:
            st.detail = p.detail
        if self.tty:
            if not st.drawn or now - self.last_write >= self.redraw or (st.total and st.done >= st.total):
                self._draw(now)
        elif now - self.last_write >= self.interval:
            self._draw(now)

    def close(self) -> None:
        """Finish the current stage: its closing frame (terminal), or closing line (when lines were written)."""
        st = self.stage
        self.stage = None
        if st is None or not st.drawn:
            return
        self.stage = st
        self._draw(self.clock(), final=True)
        self.stage = None

    def __enter__(self) -> "ProgressLine":
        return self

    def __exit__(self, *exc) -> None:
        if exc and exc[0] is not None:
            # Failed: no closing frame (it would say "in 3.2s" as if done); at a
            # terminal end the line so the error starts on its own line.
            if self.tty and self.stage is not None and self.stage.drawn:
                self.stream.write("\n")
                self.stream.flush()
            self.stage = None
            return
        self.close()


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)
