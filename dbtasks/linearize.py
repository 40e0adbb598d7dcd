"""Head detection, merge and linearize: turning two branches of revisions into one history.

Two pull requests that each add a revision on the same parent leave the
history with two heads, and ``upgrade head`` then fails. There are two fixes:

- merge (:func:`dbtasks.migrations.merge_heads`): a merge revision whose
  ``down_revision`` names both heads;
- linearize (:func:`linearize`): the newer branch is moved on top of the
  other head, by rewriting its first revision's ``down_revision`` and the
  ``Revises:`` line of its docstring. The history becomes one straight line,
  which is easier to read and to downgrade.

Linearizing rewrites history, so it refuses when a revision it would move is
already applied in the database (downgrade it first), and when a branch holds
merge revisions (merge instead).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import datetime
from pathlib import Path

from alembic.script import Script, ScriptDirectory

from dbtasks import names
from dbtasks.config import Settings
from dbtasks.errors import DbtasksError, MigrationError, NothingToDo, UsageError
from dbtasks.migrations import current_revisions, revision_ids, script_directory, translate_errors


@dataclasses.dataclass
class Move:
    """One branch moved: its first revision now follows ``new_parent``."""

    revision: str
    path: str
    old_parent: str
    new_parent: str
    moved: list[str]  # every revision of the moved branch, oldest first


@dataclasses.dataclass
class LinearizeResult:
    moves: list[Move]
    head: str
    notes: list[str] = dataclasses.field(default_factory=list)


def _created(script: Script) -> tuple:
    """Sort key: the docstring's Create Date, else the file's modification time."""
    text = script.module.__doc__ or ""
    match = re.search(r"^\s*Create Date:\s*(.+?)\s*$", text, re.M)
    when = None
    if match:
        try:
            when = datetime.fromisoformat(match.group(1).strip()).timestamp()
        except ValueError:
            when = None
    if when is None:
        when = Path(script.path).stat().st_mtime
    return (when, script.revision)


def _ancestors(script: ScriptDirectory, revision: str) -> set[str]:
    return {s.revision for s in script.iterate_revisions(revision, "base")}


def branch_of(script: ScriptDirectory, head: str, other: str) -> list[Script]:
    """Revisions of ``head``'s branch that are not ancestors of ``other``, oldest first."""
    theirs = _ancestors(script, other)
    return [s for s in reversed(list(script.iterate_revisions(head, "base"))) if s.revision not in theirs]


def rewrite_parent(path: Path, new_parent: str) -> None:
    """Point a revision file's ``down_revision`` and docstring ``Revises:`` at ``new_parent``."""
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    node = next(
        (
            n for n in tree.body
            if (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "down_revision" for t in n.targets))
            or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "down_revision" and n.value is not None)
        ),
        None,
    )
    if node is None:
        raise MigrationError(f"{path} has no down_revision assignment to rewrite")
    value = node.value
    # Replace exactly the value's source span, keeping any annotation and comments.
    start = sum(len(l) for l in lines[: value.lineno - 1]) + len(lines[value.lineno - 1].encode()[: value.col_offset].decode())
    end = sum(len(l) for l in lines[: value.end_lineno - 1]) + len(lines[value.end_lineno - 1].encode()[: value.end_col_offset].decode())
    source = source[:start] + repr(new_parent).replace("'", '"') + source[end:]
    doc = ast.get_docstring(ast.parse(source), clean=False)
    if doc is not None and re.search(r"^\s*Revises:.*$", doc, re.M):
        new_doc = re.sub(r"^(\s*Revises:)[ \t]*.*$", lambda m: f"{m.group(1)} {new_parent}", doc, count=1, flags=re.M)
        source = source.replace(doc, new_doc, 1)
    path.write_text(source)


def _applied(settings: Settings, script: ScriptDirectory) -> tuple[set[str] | None, str | None]:
    """Revisions applied in the settings' database (None when it cannot be reached)."""
    try:
        current = current_revisions(settings)
    except DbtasksError as exc:
        return None, f"could not read the database to check for applied revisions ({exc.message})"
    applied: set[str] = set()
    for rev in current:
        try:
            applied |= _ancestors(script, rev)
        except Exception:  # noqa: BLE001 - a revision the files no longer know
            applied.add(rev)
    return applied, None


def linearize(settings: Settings, check_database: bool = True) -> LinearizeResult:
    """Rebase the newer branch onto the other head until one head remains.

    For each pair of heads, the branch whose first revision was created later is
    moved: its first revision's ``down_revision`` (and ``Revises:``) now name the
    other head. Files are formatted afterwards. Nothing is written when any
    revision to move is applied in the database (``check_database``).
    """
    from dbtasks.formatting import format_file

    script = script_directory(settings)
    with translate_errors(settings):
        heads = sorted(script.get_heads())
    if len(heads) < 2:
        raise NothingToDo(f"there is only one head ({', '.join(heads) or 'none'}); nothing to linearize")
    notes: list[str] = []
    applied: set[str] | None = None
    if check_database:
        applied, note = _applied(settings, script)
        if note:
            notes.append(note)

    # Plan every move first; write only when all of them are allowed.
    plan: list[tuple[Script, str, list[Script]]] = []
    with translate_errors(settings):
        # Each head's own revisions: those that are not ancestors of another head.
        branches = {}
        for h in heads:
            others: set[str] = set()
            for o in heads:
                if o != h:
                    others |= _ancestors(script, o)
            branches[h] = [s for s in reversed(list(script.iterate_revisions(h, "base"))) if s.revision not in others]
        # The oldest branch stays; each newer branch goes on top of the previous one.
        order = sorted(heads, key=lambda h: _created(branches[h][0]) if branches[h] else (0.0, h))
        tip = order[0]
        for head in order[1:]:
            branch = branches[head]
            if not branch:
                raise MigrationError(f"head {head} has no revisions of its own to move", f"use `{names.command('db-migrate-merge-heads')}`")
            merges = [s.revision for s in branch if s.is_merge_point]
            first = branch[0]
            if merges or len(revision_ids(first.down_revision)) != 1:
                raise UsageError(
                    f"the branch of {head} contains merge revisions ({', '.join(merges or [first.revision])}); it cannot be linearized",
                    f"{names.run('db-migrate-merge-heads')} instead",
                )
            plan.append((first, tip, branch))
            tip = head
    if applied:
        for first, _parent, branch in plan:
            moved_applied = [s.revision for s in branch if s.revision in applied]
            if moved_applied:
                parent = revision_ids(first.down_revision)[0]
                raise MigrationError(
                    f"revision(s) {', '.join(moved_applied)} would move but are applied in the database",
                    f"downgrade them first: `{names.command('db-migrate-down', TO=parent)}`, then linearize and upgrade",
                )
    moves = []
    for first, parent, branch in plan:
        old = revision_ids(first.down_revision)[0]
        rewrite_parent(Path(first.path), parent)
        format_file(first.path)
        moves.append(Move(first.revision, first.path, old, parent, [s.revision for s in branch]))
    final = script_directory(settings)
    with translate_errors(settings):
        new_heads = final.get_heads()
    if len(new_heads) != 1:  # pragma: no cover - the plan guarantees one head
        raise MigrationError(f"linearize left {len(new_heads)} heads ({', '.join(new_heads)})", f"merge them with `{names.command('db-migrate-merge-heads')}`")
    return LinearizeResult(moves, new_heads[0], notes)
