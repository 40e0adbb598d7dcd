"""The revision ledger: a checksum of every revision file, checked into the repository.

A revision that ran on a shared database must not change afterwards: the
database keeps what the old text did, and nothing in Alembic notices the new
text. The ledger (``migrations.sum`` next to alembic.ini, or the file the
``ledger_file`` setting names) holds one line per revision::

    f689c66d672f 3b0c...e1 alembic/versions/2026_11_21_f689c66d672f_initial_schema.py

the revision id, the SHA-256 of its normalized source, and its file relative
to the ledger. ``db-migrate-create``, ``db-migrate-empty`` and
``db-migrate-merge-heads`` add the line of the revision they write (when the
ledger exists), ``db-squash`` replaces the lines of the revisions it folds
into a baseline (:func:`squashed`), and the ledger check
(:mod:`dbtasks.checks.ledger`) fails when a revision that is on the default
branch no longer matches its line.

What is hashed. The source is parsed and the hash is taken of its syntax tree
without docstrings and without positions: comments, blank lines, quoting,
line breaks and everything black or isort change leave the hash alone, as do
the docstring's message and ``Revises:`` lines. What the revision does (every
operation, every literal SQL string, ``revision``/``down_revision``) is in the
hash. Formatting an old revision is therefore not an edit, and rewording its
comments is not either; changing a column type is. A file that does not parse
is hashed as text (trailing whitespace and line endings normalized). The tree
is written out by :func:`_canonical`, not by ``ast.dump``, whose output
changes between Python versions.

Revisions that are only on the current branch (not in the tree of the git
base, ``since``: origin/main, else main or master) may change freely: the
check only warns that their line is stale, and ``db-ledger-update`` records
them again. An edited revision that is already merged needs either a new
revision, or ``db-ledger-accept`` with a reason, which stays in the file as a
comment above the revision's line.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

from dbtasks import migrations, names
from dbtasks.config import Settings, shown_path
from dbtasks.errors import ConfigError, DbtasksError, UsageError, read_text

DEFAULT_FILE = "migrations.sum"
HEADER = (
    "# dbtasks revision ledger: revision id, SHA-256 of the normalized source, file (relative to this file).\n"
    "# Written by dbtasks (db-migrate-create, db-ledger-update, db-ledger-accept); see docs/history.md.\n"
)
FALLBACK_BASES = ("main", "master")

# -- hashing ---------------------------------------------------------------------


def _canonical(node: object, out: list[str]) -> None:
    """A stable text of an AST: node names and fields, no positions, empty fields left out.

    Leaving out ``None`` and ``[]`` keeps the text the same across Python
    versions that add optional fields (``type_params``, ``kind``).
    """
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for field, value in ast.iter_fields(node):
            if value is None or value == []:
                continue
            out.append(field + "=")
            _canonical(value, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _canonical(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(repr(node))


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def normalized(source: str) -> str:
    """What is hashed: the canonical syntax tree without docstrings, or the text when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "text:" + "\n".join(line.rstrip() for line in source.splitlines()).strip() + "\n"
    _strip_docstrings(tree)
    out: list[str] = []
    _canonical(tree, out)
    return "ast:" + "".join(out)


def digest(path: str | Path) -> str:
    """The SHA-256 (hex) of a revision file's normalized source."""
    return hashlib.sha256(normalized(read_text(path)).encode("utf-8")).hexdigest()


# -- the file --------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    """One revision's line, with the comments kept above it (accepted edits, squashes)."""

    revision: str
    digest: str
    file: str  # relative to the ledger's directory, with /
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Ledger:
    path: Path
    lines: dict[str, Line] = dataclasses.field(default_factory=dict)

    def relative(self, file: str | Path) -> str:
        file = Path(file).resolve()
        try:
            return file.relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return Path(os.path.relpath(file, self.path.parent.resolve())).as_posix()

    def set(self, revision: str, file: str | Path, note: str | None = None) -> Line:
        old = self.lines.get(revision)
        line = Line(revision, digest(file), self.relative(file), list(old.notes) if old else [])
        if note:
            line.notes.append(note)
        self.lines[revision] = line
        return line

    def text(self) -> str:
        out = [HEADER]
        for line in self.lines.values():
            out += [f"# {note}\n" for note in line.notes]
            out.append(f"{line.revision} {line.digest} {line.file}\n")
        return "".join(out)

    def write(self) -> None:
        self.path.write_text(self.text(), encoding="utf-8")


def ledger_path(settings: Settings) -> Path:
    """``ledger_file`` (relative to the project), else migrations.sum next to alembic.ini."""
    if settings.ledger_file:
        return settings.path(settings.ledger_file)
    return settings.alembic_ini_path.parent / DEFAULT_FILE


def read(path: Path) -> Ledger:
    """Parse a ledger; a malformed line is one error naming the file and the line."""
    ledger = Ledger(path)
    notes: list[str] = []
    for number, raw in enumerate(read_text(path).splitlines(), 1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("#"):
            note = text.lstrip("#").strip()
            if note and text not in HEADER.splitlines():  # the header is written afresh each time
                notes.append(note)
            continue
        parts = text.split(None, 2)
        if len(parts) != 3 or len(parts[1]) != 64 or any(c not in "0123456789abcdef" for c in parts[1]):
            raise ConfigError(
                f"{path}:{number} is not a ledger line (revision id, SHA-256, file): {text[:60]!r}",
                f"after a merge conflict, delete the <<<<<<< ======= >>>>>>> lines and keep both sides' lines (one per revision), then {names.run('db-ledger-update')}; else restore the file from git",
            )
        ledger.lines[parts[0]] = Line(parts[0], parts[1], parts[2], notes)
        notes = []
    return ledger


def _missing(path: Path) -> DbtasksError:
    return UsageError(f"there is no revision ledger at {path}", f"{names.run('db-ledger-init')} to write it for the existing history")


# -- git: which revision files are on the default branch ------------------------------


@dataclasses.dataclass
class Merged:
    """The files in the git base's tree (``files is None``: unknown, with ``note`` saying why)."""

    files: set[Path] | None
    base: str | None = None
    note: str | None = None

    def includes(self, path: str | Path) -> bool | None:
        return None if self.files is None else Path(path).resolve() in self.files


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def merged_files(settings: Settings) -> Merged:
    """The files of the git base (``since``: origin/main, else main, else master).

    A revision file in that tree is on the default branch, hence merged and
    possibly applied somewhere. Outside a git repository, or without any of
    those refs, nothing can be said (``files is None``) and the note says so;
    a base the user named that does not exist is an error.
    """
    project = settings.alembic_ini_path.parent
    if shutil.which("git") is None or not project.is_dir():
        return Merged(None, note="git is not installed: cannot tell merged revisions from new ones")
    top = _git(["rev-parse", "--show-toplevel"], project)
    if top.returncode != 0:
        return Merged(None, note=f"{project} is not in a git repository: cannot tell merged revisions from new ones")
    root = Path(top.stdout.strip())
    since = settings.since
    candidates = [since] + ([b for b in FALLBACK_BASES if b != since] if settings.sources.get("since", "default") == "default" else [])
    base = next((ref for ref in candidates if ref and _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root).returncode == 0), None)
    if base is None:
        if settings.sources.get("since", "default") != "default":
            raise UsageError(f"git base {since!r} does not exist", "fetch it (git fetch origin) or pass another --since REF")
        return Merged(None, note=f"no git base ({', '.join(candidates)}): cannot tell merged revisions from new ones")
    tree = _git(["ls-tree", "-r", "--name-only", "-z", base], root)
    if tree.returncode != 0:
        raise UsageError(f"git ls-tree {base} failed: {tree.stderr.strip()[:200]}")
    return Merged({(root / n).resolve() for n in tree.stdout.split("\0") if n}, base=base)


# -- states --------------------------------------------------------------------------


@dataclasses.dataclass
class State:
    """One revision against the ledger.

    ``status``: ``ok``, ``edited`` (differs from its line), ``unrecorded`` (no
    line), ``removed`` (a line whose revision is gone). ``merged``: in the git
    base's tree (True), only on this branch (False), unknown (None).
    """

    revision: str
    file: str
    status: str
    merged: bool | None = None

    @property
    def blocking(self) -> bool:
        """An edited revision that is (or may be, when git cannot tell) on the default branch."""
        return self.status == "edited" and self.merged is not False


@dataclasses.dataclass
class Report:
    path: Path
    states: list[State]
    merged: Merged
    changed: list[str] = dataclasses.field(default_factory=list)  # what update/init/accept wrote
    dropped: list[State] = dataclasses.field(default_factory=list)  # lines update removed

    @property
    def blocking(self) -> list[State]:
        return [s for s in self.states if s.blocking]


def _scripts(settings: Settings) -> list:
    script = migrations.script_directory(settings)
    with migrations.translate_errors(settings):
        return list(reversed(list(script.walk_revisions())))


def compare(ledger: Ledger, scripts: Iterable, merged: Merged, shown=shown_path) -> list[State]:
    """Each revision's state against ``ledger``, oldest first, then removed lines."""
    states = []
    seen = set()
    for script in scripts:
        seen.add(script.revision)
        line = ledger.lines.get(script.revision)
        if line is None:
            status = "unrecorded"
        else:
            status = "ok" if line.digest == digest(script.path) else "edited"
        states.append(State(script.revision, shown(script.path), status, merged.includes(script.path)))
    for rev, line in ledger.lines.items():
        if rev not in seen:
            states.append(State(rev, line.file, "removed"))
    return states


def status(settings: Settings) -> Report:
    """Each revision against the ledger (what ``dbtasks ledger`` prints)."""
    path = ledger_path(settings)
    if not path.exists():
        raise _missing(path)
    ledger = read(path)
    merged = merged_files(settings)
    return Report(path, compare(ledger, _scripts(settings), merged), merged)


def init(settings: Settings) -> Report:
    """Write the ledger for the existing history (refused when it exists: use update)."""
    path = ledger_path(settings)
    if path.exists():
        raise UsageError(f"the revision ledger {path} already exists", f"{names.run('db-ledger-update')} to record new revisions")
    ledger = Ledger(path)
    scripts = _scripts(settings)
    for script in scripts:
        ledger.set(script.revision, script.path)
    ledger.write()
    merged = Merged(None)  # every line was just written from the files: nothing to judge
    return Report(path, compare(ledger, scripts, merged), merged, changed=[s.revision for s in scripts])


def update(settings: Settings) -> Report:
    """Record unrecorded revisions, re-record edited ones that are only on this branch, drop removed ones.

    An edited revision that is merged (or when git cannot tell) is left as it
    is: it needs a new revision or :func:`accept` with a reason.
    """
    path = ledger_path(settings)
    if not path.exists():
        raise _missing(path)
    ledger = read(path)
    merged = merged_files(settings)
    scripts = _scripts(settings)
    by_id = {s.revision: s for s in scripts}
    changed, dropped = [], []
    for state in compare(ledger, scripts, merged):
        if state.status == "unrecorded" or (state.status == "edited" and state.merged is False):
            ledger.set(state.revision, by_id[state.revision].path)
            changed.append(state.revision)
        elif state.status == "removed":
            del ledger.lines[state.revision]
            dropped.append(state)
        elif state.status == "ok":
            line = ledger.lines[state.revision]
            relative = ledger.relative(by_id[state.revision].path)
            if line.file != relative:  # a renamed file: the content is the same
                line.file = relative
                changed.append(state.revision)
    if changed or dropped:
        ledger.write()
    return Report(path, compare(ledger, scripts, merged), merged, changed=changed, dropped=dropped)


def accept(settings: Settings, revision: str | None, reason: str | None) -> Report:
    """Re-record revision ``revision`` as it is now; ``reason`` stays in the file above its line."""
    if not revision or not revision.strip():
        raise UsageError("ACCEPT is empty: which revision's edit do you accept?", f"{names.run('db-ledger-accept', ACCEPT='<rev>', REASON='why it is safe')}")
    revision = revision.strip()
    reason = " ".join((reason or "").split())
    if not reason:
        raise UsageError(
            f"accepting the edit of {revision} needs a reason (it stays in the ledger)",
            names.run("db-ledger-accept", ACCEPT=revision, REASON="why it is safe"),
        )
    path = ledger_path(settings)
    if not path.exists():
        raise _missing(path)
    ledger = read(path)
    scripts = _scripts(settings)
    matches = [s for s in scripts if s.revision == revision] or [s for s in scripts if s.revision.startswith(revision)]
    if len(matches) != 1:
        what = "matches no revision" if not matches else f"matches {len(matches)} revisions"
        raise UsageError(f"ACCEPT={revision} {what} of this history", f"{names.run('db-ledger')} to list the edited ones")
    script = matches[0]
    recorded = ledger.lines.get(script.revision)
    if recorded is not None and recorded.digest == digest(script.path):
        raise UsageError(f"{script.revision} is not edited: its file matches its ledger line, so there is nothing to accept", f"{names.run('db-ledger')} to list the edited ones")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    ledger.set(script.revision, script.path, note=f"accepted {script.revision} {today}: {reason}")
    ledger.write()
    merged = merged_files(settings)
    return Report(path, compare(ledger, scripts, merged), merged, changed=[script.revision])


def readable(settings: Settings) -> None:
    """Raise the ledger's one-line error now, when it exists and cannot be read, so a verb
    that will record into it fails before it writes anything (e.g. a revision file)."""
    ledger_file = ledger_path(settings)
    if ledger_file.exists():
        read(ledger_file)


def record(settings: Settings, revision: str, path: str | Path) -> bool:
    """Add or refresh the line of a revision just written (no ledger: nothing, False)."""
    ledger_file = ledger_path(settings)
    if not ledger_file.exists():
        return False
    ledger = read(ledger_file)
    ledger.set(revision, path)
    ledger.write()
    return True


def squashed(settings: Settings, baseline: str, path: str | Path, removed: Iterable[str]) -> bool:
    """For ``db-squash``: drop the lines of ``removed`` and record ``baseline`` (its new file) afresh.

    The baseline keeps its revision id and gets a new text, so its line is
    replaced and a comment says what it replaces. No ledger: nothing, False.
    """
    ledger_file = ledger_path(settings)
    if not ledger_file.exists():
        return False
    ledger = read(ledger_file)
    gone = [rev for rev in removed if rev != baseline]
    for rev in gone:
        ledger.lines.pop(rev, None)
    ledger.set(baseline, path, note=f"squashed {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}: baseline {baseline} replaces itself and the {len(gone)} revision(s) before it")
    # The baseline is the oldest revision now: its line goes first.
    ledger.lines = {baseline: ledger.lines[baseline], **{k: v for k, v in ledger.lines.items() if k != baseline}}
    ledger.write()
    return True
