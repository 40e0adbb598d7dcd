"""check: every guardrail in one run, one summary.

Order and sharing: the project is opened once (one import of each revision
file); heads runs first, and when the history has several heads the checks
that migrate are skipped (they would fail for that reason alone). The
roundtrip ends with its scratch database at head, and drift compares the
models on that same database, so the history is migrated once for both.
``docs`` (the schema diagram is up to date) joins when dbtasks.diagram
provides it.
"""

from __future__ import annotations

import time
from typing import Callable

from sqlalchemy.engine import URL

from dbtasks.checks import CheckResult
from dbtasks.checks.workspace import Workspace
from dbtasks.config import Settings
from dbtasks.errors import DbtasksError
from dbtasks.migrations import alembic_config

Progress = Callable[[str], None]
ORDER = ("heads", "lint", "roundtrip", "drift", "rehearse", "docs")


def _docs_check():
    try:
        from dbtasks.diagram import check_db_docs
    except ImportError:
        return None
    return check_db_docs


def _docs_missing(settings: Settings) -> str | None:
    """Why the docs check does not apply: a project that keeps no generated diagram."""
    try:
        from dbtasks.diagram import docs_options, output_dir

        directory = output_dir(settings, docs_options(settings))
    except Exception:  # noqa: BLE001 - let check_db_docs itself report configuration problems
        return None
    if not (directory / "diagram.mmd").exists():
        return f"no {directory.name}/diagram.mmd in this project (make regenerate-db-diagram starts one)"
    return None


def run_checks(
    settings: Settings,
    since: str | None = None,
    all_revisions: bool = False,
    progress: Progress | None = None,
    include_docs: bool = True,
) -> list[CheckResult]:
    """Run heads, lint, roundtrip, drift, rehearse (and docs); one CheckResult each."""
    from dbtasks.checks.drift import check_drift
    from dbtasks.checks.heads import check_heads
    from dbtasks.checks.lint import lint
    from dbtasks.checks.rehearse import check_rehearse
    from dbtasks.checks.roundtrip import check_roundtrip

    say = progress or (lambda text: None)
    results: dict[str, CheckResult] = {}

    def timed(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
        say(name)
        started = time.perf_counter()
        result = fn()
        result.seconds = time.perf_counter() - started
        results[name] = result
        return result

    alembic_config(settings)  # a missing alembic.ini is a usage error, not a finding
    try:
        workspace = Workspace(settings)
        workspace.revisions()
    except DbtasksError as exc:
        workspace = None
        broken = f"the history cannot be loaded: {exc}"
    if workspace is None:
        timed("lint", lambda: lint(settings, since, all_revisions))
        for name in ("heads", "roundtrip", "drift", "rehearse"):
            results[name] = CheckResult(name, skipped=broken)
    else:
        heads = timed("heads", lambda: check_heads(settings, workspace))
        timed("lint", lambda: lint(settings, since, all_revisions, workspace.options))
        if not heads.ok:
            for name in ("roundtrip", "drift", "rehearse"):
                results[name] = CheckResult(name, skipped="multiple heads (see the heads check)")
        else:
            drift_time = [0.0]

            def drift_at_head(url: URL) -> None:
                started = time.perf_counter()
                say("drift")
                results["drift"] = check_drift(settings, workspace, at_head=url)
                drift_time[0] = results["drift"].seconds = time.perf_counter() - started

            roundtrip = timed("roundtrip", lambda: check_roundtrip(settings, workspace, then=drift_at_head))
            roundtrip.seconds -= drift_time[0]
            if "drift" not in results:
                timed("drift", lambda: check_drift(settings, workspace))
            timed("rehearse", lambda: check_rehearse(settings, since, all_revisions, workspace))
    docs = _docs_check() if include_docs else None
    if docs is not None:
        missing = _docs_missing(settings)
        if missing:
            results["docs"] = CheckResult("docs", skipped=missing)
        else:
            timed("docs", lambda: docs(settings))
    return [results[name] for name in ORDER if name in results]
