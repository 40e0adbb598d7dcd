"""heads: the history must have exactly one head.

Two revisions on the same parent (two pull requests merged one after the
other) make two heads, and ``upgrade head`` fails. The finding lists each head
with its file and message and offers both fixes: a merge revision
(``db-migrate-merge-heads``) or moving the newer branch on top of the other
(``db-migrate-linearize``, see :mod:`dbtasks.linearize`).
"""

from __future__ import annotations

from dbtasks import names
from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.workspace import Workspace


def remedy() -> str:
    return f"{names.run('db-migrate-merge-heads')} (a merge revision) or `{names.command('db-migrate-linearize')}` (one straight history)"


def first_line(doc: str | None) -> str:
    """The first line of a revision's docstring (its message), or ''."""
    text = (doc or "").strip()
    return text.splitlines()[0] if text else ""


def run(workspace: Workspace) -> CheckResult:
    """Exactly one head, or one finding per head naming its file and message."""
    heads = workspace.heads()
    result = CheckResult("heads")
    if not heads:
        result.notes.append("the history has no revisions")
        return result
    if len(heads) == 1:
        result.notes.append(f"one head: {heads[0]}")
        return result
    for head in heads:
        script = workspace.get(head)
        message = first_line(script.doc)
        result.findings.append(Finding(
            "heads", "multiple-heads",
            f"head {head}{f' ({message})' if message else ''} is one of {len(heads)} heads: {', '.join(heads)}",
            revision=head, file=workspace.relpath(script.path), remedy=remedy(),
        ))
    return result


CHECK = declare(
    name="heads", recipe="db-check-heads", verb="check-heads", order=10, run=run, doc=__doc__,
    help="Fail when the history has more than one head",
    needs={"history"},
)
