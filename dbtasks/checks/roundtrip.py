"""roundtrip: every downgrade must undo its upgrade exactly.

From base to head, for each revision on a scratch database: snapshot the
schema, upgrade, downgrade one step, prove the schema equals the snapshot
taken before the upgrade (tables, columns, types, defaults, indexes,
constraints, enum types, sequences, ...), then upgrade again; when the
downgrade did not restore the schema, prove the second upgrade still gives
the same schema as the first. The steps run inside one env.py run per
stretch of history, so revision files are imported once, and each snapshot
is one prepared catalog query.

Rules: ``downgrade-leaves-objects`` (the downgrade left something behind),
``downgrade-loses-objects`` (it dropped or changed something that existed
before), ``upgrade-not-repeatable``, ``upgrade-failed``, ``downgrade-failed``,
``reupgrade-failed``. A downgrade that raises NotImplementedError, a revision
listed in ``roundtrip_irreversible``, and revisions older than
``roundtrip_min_revision`` are only upgraded, with a warning for the first two.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Iterator

from alembic.runtime.migration import RevisionStep
from alembic.script import Script
from sqlalchemy.engine import URL

from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks import snapshot as snap
from dbtasks.checks.workspace import Workspace
from dbtasks.envpy import EnvPyLeak
from dbtasks.errors import ConfigError, DbtasksError, redact
from dbtasks.migrations import EnvPyError

NAME = "roundtrip"
MAX_ITEMS = 8


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_ITEMS])
    return shown + (f"; and {len(items) - MAX_ITEMS} more" if len(items) > MAX_ITEMS else "")


def raises_not_implemented(script: Script) -> bool:
    """True when the revision's downgrade() body only raises NotImplementedError."""
    try:
        tree = ast.parse(Path(script.path).read_text())
    except (OSError, SyntaxError):
        return False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None:
                exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
                return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


@dataclasses.dataclass
class _Item:
    script: Script
    test: bool


class _Run:
    """The state of one roundtrip over a scratch database."""

    def __init__(self, workspace: Workspace, items: list[_Item], result: CheckResult):
        self.workspace = workspace
        self.items = items
        self.result = result
        self.pos = 0
        self.phase = "upgrade"
        self.last: snap.Snapshot | None = None

    def finding(self, rule: str, script: Script, message: str, remedy: str | None = None, severity: str = "error") -> None:
        self.result.findings.append(Finding(
            NAME, rule, message, severity, script.revision, self.workspace.relpath(script.path), None, remedy,
        ))

    def steps(self, heads, context) -> Iterator[RevisionStep]:
        conn = context.connection
        version_table = getattr(context, "version_table", "alembic_version")
        revmap = self.workspace.script.revision_map
        if self.last is None:
            self.last = snap.take(conn, version_table)
        while self.pos < len(self.items):
            item = self.items[self.pos]
            script, before = item.script, self.last
            self.phase = "upgrade"
            yield RevisionStep(revmap, script, True)
            after = snap.take(conn, version_table)
            if item.test:
                self.phase = "downgrade"
                yield RevisionStep(revmap, script, False)
                restored = snap.take(conn, version_table)
                self.compare_downgrade(script, before, restored)
                self.phase = "reupgrade"
                yield RevisionStep(revmap, script, True)
                # From the very schema it first ran on, the upgrade makes the same schema
                # again: only a downgrade that did not restore it needs a third snapshot.
                if restored != before:
                    again = snap.take(conn, version_table)
                    extra, missing, changed = snap.difference(after, again)
                    if extra or missing or changed:
                        self.finding(
                            "upgrade-not-repeatable", script,
                            f"upgrading {script.revision} again after its downgrade gives another schema: {_listing(extra + missing + changed)}",
                            "make downgrade() remove exactly what upgrade() creates",
                        )
                    after = again
                item.test = False  # tested once; a resumed run only upgrades it
            self.last = after
            self.pos += 1

    def compare_downgrade(self, script: Script, before: snap.Snapshot, restored: snap.Snapshot) -> None:
        extra, missing, changed = snap.difference(before, restored)
        if extra:
            self.finding(
                "downgrade-leaves-objects", script,
                f"the downgrade of {script.revision} leaves behind: {_listing(extra)}",
                "drop them in downgrade()",
            )
        if missing or changed:
            self.finding(
                "downgrade-loses-objects", script,
                f"after the downgrade of {script.revision} the schema lost or changed: {_listing(missing + changed)}",
                "restore them in downgrade()",
            )


def _plan(workspace: Workspace, result: CheckResult) -> list[_Item]:
    options = workspace.settings
    revisions = workspace.revisions()
    untested: set[str] = set()
    if options.roundtrip_min_revision:
        minimum = workspace.get(options.roundtrip_min_revision)
        untested = workspace.ancestors(minimum.revision) - {minimum.revision}
    irreversible = set(options.roundtrip_irreversible)
    unknown = irreversible - {s.revision for s in revisions}
    if unknown:
        raise ConfigError(f"roundtrip_irreversible names unknown revision(s): {', '.join(sorted(unknown))}", "fix the list in [tool.dbtasks]")
    items = []
    for script in revisions:
        test = script.revision not in untested
        if test and script.revision in irreversible:
            result.findings.append(Finding(NAME, "irreversible", f"{script.revision} is listed as irreversible; its downgrade is not tested",
                                           "warning", script.revision, workspace.relpath(script.path)))
            test = False
        elif test and raises_not_implemented(script):
            result.findings.append(Finding(NAME, "irreversible", f"the downgrade of {script.revision} raises NotImplementedError; not tested",
                                           "warning", script.revision, workspace.relpath(script.path)))
            test = False
        items.append(_Item(script, test))
    if untested:
        result.notes.append(f"{len(untested)} revision(s) older than {options.roundtrip_min_revision} only upgraded")
    return items


def roundtrip(workspace: Workspace, url: URL, result: CheckResult) -> bool:
    """Run the roundtrip on the (empty) database ``url``; True when it reached head."""
    items = _plan(workspace, result)
    run = _Run(workspace, items, result)
    while run.pos < len(items):
        try:
            workspace.run(url, run.steps)
        except (EnvPyError, EnvPyLeak):
            raise  # env.py itself failed, or tried to leave the scratch database: not this revision's fault
        except Exception as exc:  # noqa: BLE001 - a failing step is the finding
            script = items[run.pos].script
            text = exc.message if isinstance(exc, DbtasksError) else f"{type(exc).__name__}: {exc}"
            text = redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
            if isinstance(exc, NotImplementedError) and run.phase == "downgrade":
                result.findings.append(Finding(NAME, "irreversible", f"the downgrade of {script.revision} raises NotImplementedError; not tested",
                                               "warning", script.revision, workspace.relpath(script.path)))
            elif run.phase == "upgrade":
                run.finding(
                    "upgrade-failed", script, f"the upgrade of {script.revision} fails on an empty database: {text}",
                    "fix upgrade(); if the history expects objects it does not create (made by hand or by another service), "
                    "create them first with an SQL file in scratch_setup (DBTASKS_SCRATCH_SETUP)",
                )
                result.notes.append(f"stopped at {script.revision}: the later revisions were not walked")
                return False
            elif run.phase == "reupgrade":
                run.finding("reupgrade-failed", script, f"upgrading {script.revision} again after its downgrade fails: {text}",
                            "make downgrade() undo upgrade() completely")
                result.notes.append(f"stopped at {script.revision}: the later revisions were not walked")
                return False
            else:
                run.finding("downgrade-failed", script, f"the downgrade of {script.revision} fails: {text}", "fix downgrade()")
            # Resume from wherever the failed transaction left the database.
            items[run.pos].test = False
            applied = set()
            for head in workspace.current(url):
                applied |= workspace.ancestors(head)
            run.pos = next((i for i, it in enumerate(items) if it.script.revision not in applied), len(items))
            run.last = None
    return True


def run(workspace: Workspace) -> CheckResult:
    """Prove each downgrade restores the schema its upgrade started from.

    The scratch database is left at head for the checks after this one
    (``drift`` compares the models there instead of migrating again).
    """
    result = CheckResult(NAME)
    if not workspace.revisions():
        result.notes.append("the history has no revisions")
        return result
    url = workspace.scratch()
    if roundtrip(workspace, url, result):
        workspace.at_head = url
        result.notes.append(f"{len(workspace.revisions())} revision(s) walked")
    return result


CHECK = declare(
    name=NAME, recipe="db-check-roundtrip", verb="check-roundtrip", order=30, run=run, doc=__doc__,
    help="Prove every downgrade undoes its upgrade, revision by revision",
    needs={"history", "single_head", "scratch"},
)
