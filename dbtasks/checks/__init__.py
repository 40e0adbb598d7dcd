"""Migration guardrails: drift, heads, lint, roundtrip, rehearse (and docs).

Every check returns a :class:`CheckResult`; a failed check carries
:class:`Finding` objects that name the revision, the file, the rule, what
differed and what to do (exit 1 in the CLI). Checks work on scratch databases
they create and drop; the developer's database is never touched.
"""

from __future__ import annotations

import dataclasses


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
    """The outcome of one check."""

    check: str
    findings: list[Finding] = dataclasses.field(default_factory=list)
    skipped: str | None = None  # why the check did not run
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. warnings about skipped revisions
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors
