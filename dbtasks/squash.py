"""Squash old revisions: replace base..REV with one baseline revision that keeps REV's id.

The baseline's upgrade runs the normalized ``pg_dump --schema-only`` of a
scratch database migrated to REV (so extensions, enums, views, functions,
triggers, sequences, comments and server defaults are all kept, not only what
autogenerate sees); its downgrade runs the ``DROP`` statements ``pg_dump
--clean --if-exists`` writes for the same objects, without CASCADE, so it
removes exactly what the baseline created and fails loudly rather than take
anything else with it.

Because the baseline keeps REV's id, databases stamped at REV or later need
nothing, and later revisions keep pointing at REV. Before anything is written
the new history is built in a temporary copy of the script directory and
proven on scratch databases (:func:`verify`): from empty to REV it equals the
replay to REV, its downgrade leaves an empty database, and to head it equals
the replay to head (catalog snapshots, :mod:`dbtasks.checks.snapshot`); it has
one base and the same heads. The removed revision files are deleted (git
keeps them: a dirty tree is refused), and the baseline lists them in
``dbtasks_squashed`` with the commit that still has them, so a database
stamped at one of them gets one clear line from status/upgrade
(:func:`dbtasks.migrations.squashed_into`).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from dbtasks import database, names
from dbtasks.checks import snapshot
from dbtasks.clients import client_environment, find_client
from dbtasks.config import Settings, shown_path
from dbtasks.database import describe, server_version
from dbtasks.errors import DbtasksError, MigrationError, NothingToDo, UnknownRevision, UsageError, redact
from dbtasks.formatting import format_file
from dbtasks.migrations import SQUASHED, SQUASHED_FROM, alembic_config, revision_ids, revisions_at, run_env, script_directory, translate_errors, upgrade_scratch
from dbtasks.safety import scratch_home

# The module-level names a baseline declares, SQUASHED and SQUASHED_FROM, live in
# dbtasks.migrations, which reads them back (squashed_into).


class SquashError(MigrationError):
    """The squash was refused or its verification failed; nothing was written."""


@dataclasses.dataclass
class SquashResult:
    revision: str  # the baseline's id (REV's)
    path: str  # the baseline file
    removed: list[str]  # ids of the revisions it replaces (REV's ancestors), oldest first
    deleted: list[str]  # files deleted
    heads: list[str]
    commit: str | None  # the commit that still has the removed revisions


# -- reading ------------------------------------------------------------------


def _resolve(settings: Settings, script: ScriptDirectory, upto: str | None) -> Script:
    if upto is None or not upto.strip():
        raise UsageError("UPTO is empty: which revision should the baseline end at?", f"e.g. {names.command('db-squash', UPTO='<revision>')} (see `{names.command('db-migrate-history')}`)")
    upto = upto.strip()
    if upto in ("head", "heads", "base") or upto.startswith(("+", "-")) or "@" in upto:
        raise UsageError(f"UPTO={upto} is not a revision id", f"name one from `{names.command('db-migrate-history')}`")
    with translate_errors(settings):
        script.get_heads()  # the history loads first: a file that is no revision (scratch.py) is named as such, not blamed on UPTO
    try:
        with translate_errors(settings):
            found = script.get_revision(upto)
    except UnknownRevision:
        found = None
    except MigrationError as exc:  # ambiguous prefix and the like
        raise UsageError(f"UPTO={upto}: {exc.message}", f"name a revision from `{names.command('db-migrate-history')}`") from None
    if found is None or isinstance(found, tuple):
        raise UnknownRevision(f"UPTO={upto} is not a revision of this history", f"see `{names.command('db-migrate-history')}` for the known revisions")
    return found


def plan(settings: Settings, script: ScriptDirectory, upto: str | None) -> tuple[Script, list[Script]]:
    """(REV, the revisions it replaces oldest first, REV last); refuses in one line when it cannot."""
    rev = _resolve(settings, script, upto)
    with translate_errors(settings):
        heads = sorted(script.get_heads())
        below = list(reversed(list(script.iterate_revisions(rev.revision, "base"))))
        for head in heads:
            if rev.revision not in {s.revision for s in script.iterate_revisions(head, "base")}:
                raise SquashError(
                    f"UPTO={rev.revision} is not an ancestor of head {head}: a baseline at it would cut that branch off",
                    f"merge the heads first ({names.run('db-migrate-merge-heads')}), or pick a revision below every head",
                )
        removed = {s.revision for s in below}
        if len(below) < 2:
            raise NothingToDo(f"{rev.revision} is a base revision already; nothing to squash", "pick a later revision as UPTO")
        for other in script.walk_revisions():
            if other.revision in removed:
                continue
            refers = set(revision_ids(other.down_revision)) | set(revision_ids(other.dependencies))
            bad = sorted((refers & removed) - {rev.revision})
            if bad:
                raise SquashError(
                    f"revision {other.revision} ({shown_path(other.path)}) points at {bad[0]}, below UPTO={rev.revision}: it would lose its parent",
                    "squash up to a revision every later revision descends from (e.g. the merge point)",
                )
    return rev, below


# -- git ---------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def require_clean_tree(dirs: list[Path], upto: str) -> str:
    """The HEAD commit, when git tracks ``dirs`` and nothing in them is uncommitted; else one line."""
    again = names.command("db-squash", UPTO=upto)
    if not dirs[0].is_dir():
        raise SquashError(f"{shown_path(dirs[0])} is not a directory", "check script_location in alembic.ini")
    top = _git(dirs[0], "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        raise SquashError(
            f"{shown_path(dirs[0])} is not in a git repository: db-squash deletes revision files and git must keep them",
            f"`git init` and commit the migrations, then {again}",
        )
    proc = _git(dirs[0], "--no-optional-locks", "status", "--porcelain", "--untracked-files=all", "--", *map(str, dirs))
    if proc is None or proc.returncode != 0:
        raise SquashError(f"`git status` failed in {shown_path(dirs[0])}: {(proc.stderr.strip() if proc else 'git not found')}", "fix the repository, then try again")
    dirty = [line[3:] for line in proc.stdout.splitlines() if line.strip() and "__pycache__" not in line and not line.endswith(".pyc")]
    if dirty:
        raise SquashError(
            f"the git tree is dirty: {len(dirty)} uncommitted change(s) under {shown_path(dirs[0])} (e.g. {dirty[0]})",
            f"commit or stash them first (db-squash deletes revision files and git must keep them), then {again}",
        )
    head = _git(dirs[0], "rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        raise SquashError(f"the git repository of {shown_path(dirs[0])} has no commit yet", f"commit the migrations first, then {again}")
    return head.stdout.strip()


# -- the dump ----------------------------------------------------------------------

_PREAMBLE_LINE = re.compile(
    r"^(?:"
    r"\\(?:un)?restrict\b.*"  # random per-dump keys (recent pg_dump releases)
    r"|--.*|"
    r"|SET [a-z_]+ = .*;"
    r"|SELECT pg_catalog\.set_config\('search_path', '', false\);"
    r")$"
)
_ENTRY = re.compile(r"(?m)^--\n-- Name: (.*)\n--\n")


def _normalize(text: str) -> tuple[list[str], list[str]]:
    """(the entries of pg_dump's output, each under its ``-- Name:`` header; the statements before the first entry).

    What depends on the pg_dump version or the session goes: the banner, the
    ``SET`` preamble, the ``\\restrict`` keys, the ``SET default_...`` lines
    between entries, owners. An entry's own text (a function body) is kept
    byte for byte.
    """
    parts = _ENTRY.split(text.replace("\r\n", "\n"))
    before = [line for line in parts[0].splitlines() if not _PREAMBLE_LINE.match(line)]
    entries = []
    for i in range(1, len(parts), 2):
        name = re.sub(r"; Owner: .*$", "", parts[i])
        lines = parts[i + 1].split("\n")
        while lines and (not lines[-1].strip() or _PREAMBLE_LINE.match(lines[-1])):
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            entries.append(f"--\n-- Name: {name}\n--\n" + "\n".join(lines) + "\n")
    return entries, before


def _pg_dump(settings: Settings, url, *extra: str) -> str:
    major = server_version(url) // 10000
    pg_dump = find_client("pg_dump", settings.pg_bin, min_major=major, prefer=major, why=f"the server is PostgreSQL {major}").path
    argv = [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces", "--no-security-labels",
            "--no-publications", "--no-subscriptions", "--exclude-table=*.alembic_version", *extra]
    try:
        proc = subprocess.run(argv, env=client_environment(url), capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SquashError(f"pg_dump could not run: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise SquashError(f"pg_dump failed on {describe(url)}: {redact(lines[-1] if lines else 'no output')}")
    return proc.stdout


def dump(settings: Settings, url, without: tuple[list[str], list[str]] = ([], [])) -> tuple[list[str], list[str]]:
    """(the entries with their CREATE statements, the DROP statements) of the schema of ``url``, without alembic_version.

    ``without``: a dump of the same kind whose identical entries and DROP
    lines are left out (what ``scratch_setup`` makes on every scratch
    database, which the history expects to exist already).
    """
    entries, _ = _normalize(_pg_dump(settings, url))
    _, drops = _normalize(_pg_dump(settings, url, "--clean", "--if-exists"))  # the DROP statements come before the first entry
    skip_entries, skip_drops = set(without[0]), set(without[1])
    return [e for e in entries if e not in skip_entries], [d for d in drops if d not in skip_drops]


# -- the baseline file ---------------------------------------------------------------

TEMPLATE = r'''"""{message}

Revision ID: {revision}
Revises:
Create Date: {date}

Written by `dbtasks squash` (db-squash UPTO={revision}): it replaces {count}
revisions, from {first} to {revision}. upgrade() creates the schema at
{revision} (pg_dump --schema-only of a scratch database migrated to it, so
extensions, enums, views, functions, triggers, sequences, comments and server
defaults are kept); downgrade() drops exactly those objects (no CASCADE).
"""
import re

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = None
branch_labels = {branch_labels!r}
depends_on = None

# The revisions this baseline replaced; a database stamped at one of them must
# reach {revision} with the old history once (the commit below still has it).
{squashed} = {removed}
{squashed_from} = {commit!r}

SCHEMA = {schema}

DROPS = {drops}


def _statements(text):
    """One statement per pg_dump entry; colons escaped so sa.text() binds nothing."""
    parts = re.split(r"(?m)^--\n-- Name: .*\n--\n", text)
    return [sa.text(part.strip().replace(":", "\\:")) for part in parts if part.strip()]


def upgrade():
    # Functions may refer to tables created further down, as pg_dump orders them.
    op.execute("SET LOCAL check_function_bodies = false")
    for statement in _statements(SCHEMA):
        op.execute(statement)


def downgrade():
    for line in DROPS.splitlines():
        if line.strip():
            op.execute(sa.text(line.replace(":", "\\:")))
'''


def _py_string(text: str) -> str:
    """``text`` as a triple-quoted Python literal (backslashes and quotes escaped)."""
    return '"""\\\n' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def _py_tuple(ids: list[str]) -> str:
    lines = ["("] + [f"    {i!r}," for i in ids] + [")"]
    return "\n".join(lines)


def baseline_text(rev: Script, removed: list[Script], create: str, drops: str, commit: str | None) -> str:
    message = (rev.doc or "").strip().splitlines()[0] if (rev.doc or "").strip() else ""
    return TEMPLATE.format(
        message=f"baseline: the schema at {rev.revision}" + (f" ({message})" if message else "").replace('"""', "'''"),
        revision=rev.revision,
        date=datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
        count=len(removed),
        first=removed[0].revision,
        branch_labels=tuple(sorted(rev.branch_labels)) or None,
        squashed=SQUASHED,
        squashed_from=SQUASHED_FROM,
        removed=_py_tuple([s.revision for s in removed if s.revision != rev.revision]),
        commit=commit,
        schema=_py_string(create),
        drops=_py_string(drops),
    )


# -- verification ----------------------------------------------------------------------


def _difference(what: str, expected: snapshot.Snapshot, actual: snapshot.Snapshot) -> str | None:
    extra, missing, changed = snapshot.difference(expected, actual)
    found = [f"{x} is extra" for x in extra] + [f"{m} is missing" for m in missing] + changed
    if not found:
        return None
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"{what}: {found[0]}{more}"


def _take(url) -> snapshot.Snapshot:
    with database.connect(url) as conn:
        snap = snapshot.take(conn)
        conn.rollback()
    return snap


def _current(url) -> list[str]:
    with database.connect(url) as conn:
        return revisions_at(conn)


def _copy_history(settings: Settings, script: ScriptDirectory, tmp: Path) -> tuple[dict[Path, Path], Config]:
    """A copy of the script directory and the version locations under ``tmp``, and the history it holds."""
    config = alembic_config(settings, quiet=True)
    mapping: dict[Path, Path] = {}
    root = Path(script.dir).resolve()
    mapping[root] = tmp / "script"
    shutil.copytree(root, mapping[root], ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    locations = [Path(p).resolve() for p in (config.get_version_locations_list() or [])]
    for i, loc in enumerate(locations):
        if loc.is_relative_to(root):
            mapping[loc] = mapping[root] / loc.relative_to(root)
        else:
            mapping[loc] = tmp / f"versions_{i}"
            shutil.copytree(loc, mapping[loc], ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config.set_main_option("script_location", str(mapping[root]).replace("%", "%%"))
    if locations:
        import os

        config.set_main_option("version_locations", os.pathsep.join(str(mapping[loc]) for loc in locations).replace("%", "%%"))
    return mapping, config


def _moved(mapping: dict[Path, Path], path: Path) -> Path:
    path = path.resolve()
    best = max((src for src in mapping if path.is_relative_to(src)), key=lambda p: len(p.parts))
    return mapping[best] / path.relative_to(best)


def verify(settings: Settings, script: ScriptDirectory, rev: Script, write: Callable[[str, str], str], removed: list[Script], progress: Callable[[str], None]) -> str:
    """Build the new history in a temporary copy and prove it on scratch databases; returns the baseline's source.

    ``write(create, drops)`` makes the baseline's source from the dump at REV. Raises :class:`SquashError` naming the
    first difference; nothing of the project is touched.
    """
    home = scratch_home(settings, "db-squash's scratch databases")
    why = "db-squash builds scratch databases"
    with database.scratch(home, prefix="dbtasks_squash", why=why) as replay, database.scratch(home, prefix="dbtasks_squash", why=why) as fresh:
        progress(f"replaying the history to {rev.revision} on a scratch database")
        upgrade_scratch(settings, replay, rev.revision, script)
        at_rev = _take(replay)
        entries, drops = dump(settings, replay, dump(settings, fresh))  # fresh: still empty (but for scratch_setup)
        text = write("\n".join(entries), "".join(line + "\n" for line in drops))
        old_heads = sorted(script.get_heads())

        with tempfile.TemporaryDirectory(prefix="dbtasks-squash-") as tmp:
            mapping, config = _copy_history(settings, script, Path(tmp))
            for s in removed:
                _moved(mapping, Path(s.path)).unlink()
            _moved(mapping, Path(rev.path)).write_text(text, encoding="utf-8")
            with translate_errors(settings):
                new = ScriptDirectory.from_config(config)
                bases, heads = sorted(new.get_bases()), sorted(new.get_heads())
            if bases != [rev.revision]:
                raise SquashError(f"the squashed history would have the base(s) {', '.join(bases)}, not {rev.revision} alone; nothing was written")
            if heads != sorted(script.get_heads()):
                raise SquashError(f"the squashed history would have the head(s) {', '.join(heads)}, not {', '.join(sorted(script.get_heads()))}; nothing was written")
            empty = _take(fresh)
            progress(f"building {rev.revision} from the baseline on a second scratch database")
            upgrade_scratch(settings, fresh, rev.revision, new)
            problem = _difference(f"the baseline does not rebuild the schema at {rev.revision}", at_rev, _take(fresh))
            if problem is None:
                run_env(settings, fresh, lambda r, context: new._downgrade_revs("base", r), new, destination_rev="base")
                problem = _difference("the baseline's downgrade does not leave an empty database", empty, _take(fresh))
            if problem is None:
                upgrade_scratch(settings, fresh, "heads", new)  # the later revisions run on top of the baseline
                if _current(fresh) != old_heads:
                    problem = f"the squashed history ends at {', '.join(_current(fresh))}, not {', '.join(old_heads)}"
            if problem is not None:
                raise SquashError(f"{problem}; nothing was written", "report it with the revision named (the dump may need a scratch_setup or an object pg_dump cannot recreate)")
    return text


# -- the verb ------------------------------------------------------------------------------


def squash(settings: Settings, upto: str | None, progress: Callable[[str], None] | None = None) -> SquashResult:
    """Replace every revision from base up to UPTO with one baseline revision keeping UPTO's id.

    Refuses (one line, nothing written) when UPTO is unknown or not an
    ancestor of every head, a later revision points below UPTO, or the git
    tree of the migrations is dirty. The new history is verified on scratch
    databases before any file changes (see :func:`verify`).
    """
    progress = progress or (lambda text: None)
    from dbtasks import ledger  # the checksum ledger (migrations.sum), when the project keeps one

    ledger.readable(settings)  # a broken ledger fails now, not after the revision files changed
    script = script_directory(settings)
    rev, below = plan(settings, script, upto)
    removed = [s for s in below if s.revision != rev.revision]
    dirs = [Path(script.dir)] + [Path(p) for p in (alembic_config(settings, quiet=True).get_version_locations_list() or []) if not Path(p).resolve().is_relative_to(Path(script.dir).resolve())]
    commit = require_clean_tree(dirs, rev.revision)
    try:
        text = verify(settings, script, rev, lambda create, drops: baseline_text(rev, below, create, drops, commit), removed, progress)
    except SquashError:
        raise
    except DbtasksError as exc:
        raise SquashError(f"verifying the squashed history failed: {exc.message}; nothing was written", exc.remedy) from None
    deleted = []
    for s in removed:
        Path(s.path).unlink()
        deleted.append(s.path)
    Path(rev.path).write_text(text, encoding="utf-8")
    format_file(rev.path)  # like every revision dbtasks writes (a formatter that fails leaves the file as written)
    ledger.squashed(settings, rev.revision, rev.path, [s.revision for s in removed])
    return SquashResult(rev.revision, rev.path, [s.revision for s in removed], deleted, sorted(script.get_heads()), commit)
