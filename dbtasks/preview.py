"""migrate-sql: the SQL ``db-migrate`` would run, revision by revision, with squawk's findings.

:func:`migrate_sql` renders the revisions between a start and a target in
Alembic's offline mode (``alembic upgrade --sql``, through the project's own
env.py) and returns them one by one:

- the start is the target database's current revision (read with one
  read-only query; nothing is written), or ``FROM=<rev>`` (``base`` for an
  empty database), in which case no database is needed at all;
- the target is ``TO=<rev>``, else every head.

Each revision's SQL is linted with squawk (the same runner, PostgreSQL version
and exclusions as ``db-lint-migrations``) and each finding is set as a
``-- squawk: <rule>: <message>`` comment above the statement it concerns, so
a reviewer or a DBA reads exactly what a deploy will do and what may lock or
fail. A revision whose SQL cannot be rendered offline (it reads data:
``op.get_bind().execute(...).fetchall()``) is named in the output with the
reason and the line, never silently left out; the rest still render.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from alembic.script import Script
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from dbtasks import names
from dbtasks.config import Settings, shown_path
from dbtasks.database import describe
from dbtasks.errors import ConfigError, DbtasksError, UsageError, redact
from dbtasks.migrations import EnvPyError, _project_frame, check_applied_known, current_revisions, revision_ids, squashed_into, translate_errors


@dataclasses.dataclass
class Finding:
    """One squawk finding, placed above the statement starting at ``line`` (0-based, in ``RevisionSQL.sql``)."""

    rule: str
    message: str
    line: int
    allowed: str | None = None  # the reason of a `# dbtasks: allow <rule>: <why>` in the revision file


@dataclasses.dataclass
class RevisionSQL:
    """One revision of the preview: its identity, its SQL (None: it cannot render offline) and findings."""

    revision: str
    message: str
    path: str
    sql: str | None = None
    unrendered: str | None = None  # why the SQL could not be rendered
    findings: list[Finding] = dataclasses.field(default_factory=list)
    is_merge: bool = False
    opened: bool = False  # its SQL runs inside a transaction that began before it (a single-transaction env.py)

    def header(self) -> str:
        return f"-- Revision {self.revision}: {self.message or '(no message)'} ({shown_path(self.path)})"

    def annotated(self) -> str:
        """The SQL with ``-- squawk:`` comments above the statements they concern."""
        if self.sql is None:
            return ""
        by_line: dict[int, list[Finding]] = {}
        for finding in self.findings:
            by_line.setdefault(finding.line, []).append(finding)
        out = []
        for number, line in enumerate(self.sql.splitlines()):
            for finding in by_line.get(number, ()):
                text = f"-- squawk: {finding.rule}: {' '.join(finding.message.split())}"
                out.append(text + (f" (allowed in the revision: {finding.allowed})" if finding.allowed else ""))
            out.append(line)
        return "\n".join(out).strip("\n") + "\n"


@dataclasses.dataclass
class Preview:
    """What :func:`migrate_sql` found: where it starts, where it goes, each revision's SQL, notes."""

    start: list[str]  # the revision(s) the database is at, or FROM ([] = base)
    target: str
    database: str | None  # the database the start was read from (None with FROM=)
    revisions: list[RevisionSQL]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def unrendered(self) -> list[RevisionSQL]:
        return [r for r in self.revisions if r.sql is None and not r.is_merge]

    def script(self) -> str:
        """The whole preview as one SQL text: a header line, then each revision under its header comment."""
        origin = f"database {self.database}" if self.database else "FROM"
        at = ", ".join(self.start) or "base"
        lines = [f"-- db-migrate-sql: {len(self.revisions)} revision(s) from {at} ({origin}) to {self.target}, oldest first"]
        if not self.revisions:
            lines.append(f"-- nothing to do: no revision lies between {at} and {self.target}")
        for rev in self.revisions:
            lines += ["", rev.header()]
            if rev.unrendered:
                lines.append(f"-- NOT RENDERED: {rev.unrendered}")
            elif rev.is_merge and rev.sql is None:
                lines.append("-- merge revision: no SQL of its own")
            else:
                lines.append(rev.annotated().rstrip("\n"))
        return "\n".join(lines) + "\n"


def migrate_sql(settings: Settings, start: str | None = None, target: str | None = None) -> Preview:
    """The SQL ``db-migrate`` would run: pending revisions of the database, or ``start``..``target``.

    ``start`` (FROM=) is a revision or ``base``; without it the database's
    current revision is read (read-only). ``target`` (TO=) defaults to every
    head. Nothing is executed: the SQL is rendered offline.
    """
    from dbtasks.checks.workspace import Workspace

    with Workspace(settings) as ws:
        ordered = ws.revisions()  # a revision file that does not load is one clear line
        script = ws.script
        database = None
        start = start.strip() if start and start.strip() else None
        if start is not None:
            lower = [] if start == "base" else [_known(ws, start, "FROM")]
        else:
            lower = current_revisions(settings)
            check_applied_known(settings, lower, script)
            database = describe(settings.url)
        notes: list[str] = []
        heads = ws.heads()
        if target is None or target.strip() in ("", "head", "heads"):
            target = "heads"
            if len(heads) > 1:
                notes.append(
                    f"the history has {len(heads)} heads ({', '.join(heads)}): `{names.command('db-migrate')}` refuses until "
                    f"they are merged (`{names.command('db-migrate-merge-heads')}`); the SQL of every head is shown"
                )
            wanted = set().union(*(ws.ancestors(h) for h in heads)) if heads else set()
        else:
            target = "base" if target.strip() == "base" else _known(ws, target.strip(), "TO")
            wanted = ws.ancestors(target) if target != "base" else set()
        applied = set().union(*(ws.ancestors(r) for r in lower)) if lower else set()
        if (target == "base" and lower) or (target != "heads" and target in applied and target not in lower):
            raise UsageError(
                f"{_named('TO')}{target} is below {_named('FROM').strip(' =') if start is not None else 'the database'} ({', '.join(lower)}): "
                "db-migrate-sql previews upgrades only",
                f"pass a {_named('TO').strip()} above it, or see `{names.command('db-migrate-history')}`",
            )
        pending = [s for s in ordered if s.revision in wanted and s.revision not in applied]
        revisions = [_describe(s) for s in pending]
        _render(ws, lower, target, revisions, {s.revision: s for s in pending})
        notes += _squawk(settings, revisions)
    return Preview(lower, target, database, revisions, notes)


def _known(ws, revision: str, variable: str) -> str:
    """The full id of ``revision`` (a unique prefix is fine), or one line saying it does not exist."""
    try:
        with translate_errors(ws.settings):
            found = ws.script.get_revision(revision)
    except DbtasksError:
        found = None
    except (CommandError, RevisionError):
        found = None
    if found is None or isinstance(found, tuple):
        try:
            with translate_errors(ws.settings):
                baseline = squashed_into(ws.script, revision)
        except DbtasksError:
            baseline = None
        if baseline is not None:
            raise UsageError(
                f"{_named(variable)}{revision}: db-squash folded it into the baseline {baseline.revision} ({shown_path(baseline.path)})",
                f"start from the baseline ({_named(variable)}{baseline.revision}) or a revision after it; the old SQL is in git's history",
            )
        raise UsageError(
            f"{_named(variable)}{revision}: no such revision in {shown_path(ws.script.dir)}",
            f"pick one from `{names.command('db-migrate-history')}` (FROM=base for an empty database)",
        )
    return found.revision


def _named(variable: str) -> str:
    """``FROM=`` under make and just, ``--from `` for the bare CLI: how the user passed it."""
    return names.given(f"{variable}=", f"--{variable.lower()} ")


def _describe(script: Script) -> RevisionSQL:
    return RevisionSQL(script.revision, (script.doc or "").strip(), script.path, is_merge=len(revision_ids(script.down_revision)) > 1)


def _split(text: str) -> dict[str, tuple[str, bool]]:
    """Offline SQL of several revisions -> each revision's part (what precedes the first marker goes with the first),
    and whether that part starts inside a transaction opened before it (an env.py that renders one transaction for all)."""
    from dbtasks.checks.lint import offline_chunks

    return {
        rev: (re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n", opened)
        for rev, (lines, opened) in offline_chunks(text, keep_preamble=True).items()
    }


def _balanced(sql: str, opened: bool) -> tuple[str, int]:
    """The revision's SQL as the transaction it runs in, for squawk: a BEGIN before it when it starts inside
    one, a COMMIT after it when it ends inside one; and how many lines were put before it."""
    from dbtasks.checks.lint import still_open

    closing = "COMMIT;\n" if still_open(sql.splitlines(), opened) else ""
    return ("BEGIN;\n" if opened else "") + sql + closing, 1 if opened else 0


def _render(ws, lower: list[str], target: str, revisions: list[RevisionSQL], scripts: dict[str, Script]) -> None:
    """Fill each revision's SQL: one offline run for all when possible, else revision by revision."""
    if not revisions:
        return
    if len(lower) <= 1:
        try:
            chunks = _split(ws.render_sql(lower[0] if lower else None, target))
        except EnvPyError:
            raise  # env.py itself fails offline: nothing can be rendered
        except Exception:  # noqa: BLE001 - a revision that cannot render offline; find which below
            chunks = {}
        for rev in revisions:
            rev.sql, rev.opened = chunks.get(rev.revision, (None, False))
    for rev in revisions:
        if rev.sql is not None or rev.is_merge:
            continue
        down = revision_ids(scripts[rev.revision].down_revision)
        try:
            rev.sql, rev.opened = _split(ws.render_sql(down[0] if down else None, rev.revision)).get(rev.revision, (None, False))
        except EnvPyError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the reason it is named
            rev.unrendered = _why(exc, rev)
        else:
            if rev.sql is None:
                rev.unrendered = "Alembic rendered no SQL for it"


def _why(exc: BaseException, rev: RevisionSQL) -> str:
    inner = exc
    if isinstance(exc, DbtasksError) and (exc.__cause__ or exc.__context__):
        inner = exc.__cause__ or exc.__context__  # where the translated error came from
    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    frame = _project_frame(inner)
    where = f" at {shown_path(frame[0])}:{frame[1]}" if frame else ""
    if not isinstance(exc, DbtasksError):
        text = f"{type(exc).__name__}: {text}"
    return (
        f"cannot be rendered offline ({text}{where}): it reads data, which only a live run can; "
        "read that revision by hand, or guard the data access with `if not context.is_offline_mode()`"
    )


def _squawk(settings: Settings, revisions: list[RevisionSQL]) -> list[str]:
    """Attach squawk's findings to each rendered revision; a note when squawk is not installed."""
    from dbtasks.checks.lint import RevisionFile, squawk_reports

    balanced = {r.revision: _balanced(r.sql, r.opened) for r in revisions if r.sql}
    texts = {rev: text for rev, (text, _) in balanced.items()}
    if not texts:
        return []
    try:
        reports = squawk_reports(settings, texts)
    except ConfigError as exc:
        return [f"squawk's findings not shown: {exc}"]
    for rev in revisions:
        found = reports.get(rev.revision) or []
        if not found:
            continue
        starts = _statement_starts(rev.sql or "")
        try:
            allowed = RevisionFile.read(Path(rev.path)).suppressions
        except OSError:
            allowed = {}
        shift = balanced[rev.revision][1]
        for report in found:
            line = int(report.get("line", 0)) - shift  # squawk read the SQL with the BEGIN it lacked
            if line < 0 or line >= len((rev.sql or "").splitlines()):
                continue  # about the BEGIN/COMMIT added for squawk, not about the revision
            start = max((s for s in starts if s <= line), default=line)
            rule = report.get("rule_name") or "squawk"
            rev.findings.append(Finding(rule, (report.get("message") or "").strip(), start, allowed.get(rule)))
    return []


def _statement_starts(sql: str) -> list[int]:
    """0-based lines where a statement starts (after a line ending in ``;``, skipping blanks and comments)."""
    starts, ended = [], True
    for number, line in enumerate(sql.splitlines()):
        stripped = line.strip()
        if not stripped or (ended and stripped.startswith("--")):
            continue
        if ended:
            starts.append(number)
        ended = stripped.endswith(";")
    return starts
