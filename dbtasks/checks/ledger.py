"""ledger: no revision on the default branch was edited after it was recorded.

The revision ledger (``migrations.sum`` next to alembic.ini; the
``DBTASKS_LEDGER`` setting names another file) holds a checksum of every
revision file's normalized source (see :mod:`dbtasks.ledger`: comments,
docstrings and formatting are not part of it). A revision that is already on
the default branch (its file is in the tree of the git base, ``SINCE``:
origin/main, else main or master) may have run on a shared database, so an
edit there changes nothing in that database and silently forks the schema.

Rules: ``edited`` (error) when a merged revision differs from its line;
``unrecorded`` (error) when a merged revision has no line. Revisions only on
the current branch may change freely: a stale or missing line of theirs is a
warning, which ``db-ledger-update`` clears (run it before merging). A line
whose revision is gone is a note. When git cannot tell which revisions are
merged (no repository, no base), every edited revision counts as merged.

How to proceed with an edited merged revision: undo the edit and put the
change in a new revision (``db-migrate-create`` / ``db-migrate-empty``), or,
when the edit is safe (it changes nothing a database already has), accept it
with ``db-ledger-accept ACCEPT=<rev> REASON="..."``; the reason stays in the
ledger.

No ledger: ``dbtasks check`` leaves this check out with a note saying how to
start one (``db-ledger-init``); run alone, it is not run, which fails. Reads
files and git only: no database, no env.py.
"""

from __future__ import annotations

from dbtasks import ledger, names
from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.workspace import Workspace

NAME = "ledger"


def _missing_note(workspace: Workspace) -> str:
    path = ledger.ledger_path(workspace.settings)
    return f"no revision ledger ({workspace.relpath(path)}): `{names.command('db-ledger-init')}` starts one"


def run(workspace: Workspace) -> CheckResult:
    """Compare every revision with its ledger line; fail on edited or unrecorded merged revisions."""
    settings = workspace.settings
    path = ledger.ledger_path(settings)
    if not path.exists():
        return CheckResult(NAME, skipped=_missing_note(workspace), blocked=True)
    book = ledger.read(path)
    merged = ledger.merged_files(settings)
    result = CheckResult(NAME)
    if merged.note:
        result.notes.append(f"{merged.note}; every edited revision counts as merged")
    states = ledger.compare(book, workspace.revisions(), merged, shown=workspace.relpath)
    where = f"on {merged.base}" if merged.base else "possibly applied"
    update = names.command("db-ledger-update")
    for state in states:
        if state.status == "edited" and state.blocking:
            result.findings.append(Finding(
                NAME, "edited",
                f"revision {state.revision} was edited after it was recorded in {workspace.relpath(path)}, and it is {where}: "
                "databases that ran it keep the old version",
                revision=state.revision, file=state.file,
                remedy=(
                    f"undo the edit and write the change as a new revision ({names.command('db-migrate-empty', MIGRATE_MSG='...')}), "
                    f"or if the edit is safe `{names.command('db-ledger-accept', ACCEPT=state.revision, REASON='why it is safe')}`"
                ),
            ))
        elif state.status == "unrecorded" and state.merged is not False:
            result.findings.append(Finding(
                NAME, "unrecorded", f"revision {state.revision} is {where} but has no line in {workspace.relpath(path)}",
                revision=state.revision, file=state.file, remedy=f"run `{update}` and commit the ledger",
            ))
        elif state.status in ("edited", "unrecorded"):
            what = "changed since it was recorded" if state.status == "edited" else "not recorded"
            result.findings.append(Finding(
                NAME, f"branch-{state.status}", f"revision {state.revision} is only on this branch and {what} in the ledger",
                severity="warning", revision=state.revision, file=state.file, remedy=f"run `{update}` before merging",
            ))
        elif state.status == "removed":
            result.notes.append(f"the ledger has a line for {state.revision}, which the history no longer has (`{update}` drops it)")
    if not result.findings:
        result.notes.append(f"{sum(s.status == 'ok' for s in states)} revision(s) match {workspace.relpath(path)}")
    return result


def applies(workspace: Workspace) -> str | None:
    """Why ``dbtasks check`` leaves the ledger out: a project that keeps none."""
    if not ledger.ledger_path(workspace.settings).exists():
        return _missing_note(workspace)
    return None


CHECK = declare(
    name=NAME, recipe="db-check-ledger", verb="check-ledger", order=15, run=run, doc=__doc__,
    help="Fail when a revision already on the default branch was edited after it was recorded in the ledger",
    needs={"history", "git"}, options=("since",), applies=applies,
)
