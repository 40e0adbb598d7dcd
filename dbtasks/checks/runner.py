"""check: every guardrail in one run, one summary; and the registry that finds them.

The registry is every module of :mod:`dbtasks.checks` that declares a
``CHECK`` (see :func:`dbtasks.checks.declare`), in the order they declare.
The runner is a loop over it: the project is opened once (one import of each
revision file), and a check whose needs cannot be met (a history that does not
load, several heads) is reported as not run, which fails the run.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import time
from typing import Callable

import dbtasks.checks as package
from dbtasks.checks import Check, CheckResult, Finding
from dbtasks.checks.workspace import Workspace
from dbtasks.config import Settings
from dbtasks.migrations import EnvPyError

Announce = Callable[[str], None]  # called with a check's name before it runs


@functools.lru_cache(maxsize=None)
def registry() -> tuple[Check, ...]:
    """Every declared check, in order."""
    found = []
    for module in pkgutil.iter_modules(package.__path__):
        check = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "CHECK", None)
        if isinstance(check, Check):
            found.append(check)
    return tuple(sorted(found, key=lambda c: c.order))


def by_name(name: str) -> Check:
    return next(c for c in registry() if c.name == name)


def _blocked(check: Check, workspace: Workspace) -> str | None:
    """Why ``check`` cannot run in this project now, or None."""
    if "history" in check.needs:
        broken = workspace.load_error()
        if broken:
            return f"the history cannot be loaded: {broken}"
    if "single_head" in check.needs and len(workspace.heads()) > 1:
        return "the history has several heads (see the heads check)"
    if "scratch" in check.needs and workspace.env_failed:
        return f"env.py failed (see the {workspace.env_failed} check)"
    return None


def run_checks(settings: Settings, only: tuple[str, ...] = (), announce: Announce | None = None) -> list[CheckResult]:
    """Run every registered check (or those named in ``only``); one CheckResult each, in order."""
    say = announce or (lambda name: None)
    results = []
    with Workspace(settings) as workspace:
        for check in registry():
            if only and check.name not in only:
                continue
            blocked = _blocked(check, workspace)
            if blocked:
                results.append(CheckResult(check.name, skipped=blocked, blocked=True))
                continue
            reason = check.applies(workspace) if check.applies and not only else None
            if reason:
                results.append(CheckResult(check.name, skipped=reason))
                continue
            say(check.name)
            started = time.perf_counter()
            try:
                result = check.run(workspace)
            except EnvPyError as exc:
                # One finding, on env.py, once; the other checks that run env.py are not run.
                workspace.env_failed = check.name
                result = CheckResult(check.name, [Finding(check.name, "env-py-failed", exc.message, remedy=exc.remedy)], blocked=True, skipped="env.py failed")
            result.seconds = time.perf_counter() - started
            results.append(result)
        if workspace.redirected and results:
            results[0].notes.append(
                f"env.py asked for {', '.join(workspace.redirected)}; dbtasks connected it to the scratch database instead "
                "(make env.py use config.attributes['connection'] when it is set to silence this)"
            )
    return results


def run_check(settings: Settings, name: str) -> CheckResult:
    """Run the one check called ``name`` (what each check's own verb does)."""
    return run_checks(settings, (name,))[0]
