"""heads: the history must have exactly one head.

Two revisions on the same parent (two pull requests merged one after the
other) make two heads, and ``upgrade head`` fails. The finding lists each head
with its file and message and offers both fixes: ``make db-migrate-merge-heads``
(a merge revision) and ``make db-migrate-linearize`` (move the newer branch on
top of the other; see :mod:`dbtasks.heads`).
"""

from __future__ import annotations

from dbtasks.checks import CheckResult, Finding
from dbtasks.checks.workspace import Workspace
from dbtasks.config import Settings

CHECK = "heads"
REMEDY = "run `make db-migrate-merge-heads` (a merge revision) or `make db-migrate-linearize` (one straight history)"


def check_heads(settings: Settings, workspace: Workspace | None = None) -> CheckResult:
    """Exactly one head, or one finding per head naming its file and message."""
    workspace = workspace or Workspace(settings)
    heads = workspace.heads()
    result = CheckResult(CHECK)
    if not heads:
        result.notes.append("the history has no revisions")
        return result
    if len(heads) == 1:
        result.notes.append(f"one head: {heads[0]}")
        return result
    for head in heads:
        script = workspace.get(head)
        message = (script.doc or "").strip().splitlines()[0] if (script.doc or "").strip() else ""
        result.findings.append(Finding(
            CHECK, "multiple-heads",
            f"head {head} ({message}) is one of {len(heads)} heads: {', '.join(heads)}",
            revision=head, file=workspace.relpath(script.path), remedy=REMEDY,
        ))
    return result
