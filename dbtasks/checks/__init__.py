"""Migration guardrails: one module per check, found by the runner's registry.

Every check returns a :class:`CheckResult`; a failed check carries
:class:`Finding` objects that name the revision, the file, the rule, what
differed and what to do (exit 1 in the CLI). Checks work on scratch databases
they create and drop; the developer's database is never touched.

Adding a check is one module in this package that declares itself with
:func:`declare`::

    CHECK = declare(
        name="indexes", recipe="db-check-indexes", verb="check-indexes", order=45,
        help="Fail when a foreign key has no index",
        needs={"history", "single_head", "scratch"}, run=run,
    )

plus its recipe lines in the Makefile and the justfile, a README row, and its
tests. The runner (:mod:`dbtasks.checks.runner`) finds it, ``dbtasks check``
runs it in ``order``, the CLI offers its verb, and the name table
(:mod:`dbtasks.names`) gets its recipe, so remedies can name it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from dbtasks import names

if TYPE_CHECKING:  # pragma: no cover
    from dbtasks.checks.workspace import Workspace

NEEDS = {
    "history": "loads the revision files (skipped when they cannot be loaded)",
    "single_head": "walks the history (cannot run while it has several heads)",
    "scratch": "creates scratch databases on the server",
    "git": "reads the git base (--since)",
}


@dataclasses.dataclass
class Finding:
    """One problem found by a check."""

    check: str  # drift, heads, lint, roundtrip, rehearse, docs
    rule: str
    message: str
    severity: str = "error"  # "error" fails the check, "warning" does not
    revision: str | None = None
    file: str | None = None
    line: int | None = None
    remedy: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check.

    ``skipped`` says why the check did not run. A check that does not apply
    (no generated docs in this project) is skipped and ok; a check that could
    not run (``blocked``: several heads, a history that does not load) is
    skipped and *not* ok, so a CI step that runs it alone never passes while
    testing nothing.
    """

    check: str
    findings: list[Finding] = dataclasses.field(default_factory=list)
    skipped: str | None = None
    blocked: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.blocked

    @property
    def verdict(self) -> str:
        if self.blocked:
            return "not-run"
        if self.skipped:
            return "skipped"
        return "ok" if self.ok else "FAILED"


@dataclasses.dataclass(frozen=True)
class Check:
    """A check as the runner, the CLI and the name table see it."""

    name: str
    recipe: str
    verb: str
    help: str  # one line: make help, just --list, the first line of --help
    description: str  # the rest of --help (the module docstring)
    order: int
    run: Callable[["Workspace"], CheckResult]
    needs: frozenset[str] = frozenset()
    options: tuple[str, ...] = ()  # settings its verb offers as flags (besides --format)
    applies: Callable[["Workspace"], str | None] | None = None  # why `check` leaves it out, if it does


def declare(
    *,
    name: str,
    recipe: str,
    verb: str,
    help: str,
    order: int,
    run: Callable[["Workspace"], CheckResult],
    doc: str | None = None,
    needs: set[str] | frozenset[str] = frozenset(),
    options: tuple[str, ...] = (),
    params: tuple[names.Param, ...] = (),
    applies: Callable[["Workspace"], str | None] | None = None,
) -> Check:
    """Declare a check (``CHECK = declare(...)`` in its module) and register its recipe."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"check {name!r} needs unknown things: {', '.join(sorted(unknown))}")
    function = f"{run.__module__.removeprefix('dbtasks.')}.{run.__name__}"
    names.register(names.Recipe(recipe, verb, function, help, (*params, names.FORMAT), check=name))
    return Check(name, recipe, verb, help, (doc or "").strip(), order, run, frozenset(needs), options, applies)
