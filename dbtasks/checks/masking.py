"""masking: every personal-looking column has a masking rule, and every rule fits the schema.

Reads the schema at head (a scratch database migrated by the project's own
env.py) and:

- validates the masking rules against it (``[tool.dbtasks.masking]`` and
  ``masking_file``): an unknown table, column or strategy, or a rule the
  column cannot take, is one line (exit 2), as ``dump-and-restore`` would
  stop on it;
- fails the same way on a foreign key whose two columns have different
  rules (no rule is ``keep``): the copy's references would no longer match;
- tries each rule's SQL on that database (planned with ``LIMIT 0``, in a
  savepoint rolled back): a typo in ``sql:`` or a ``fixed:`` value its
  column's type refuses fails here, not after production was dumped;
- warns about each column that looks personal (a name containing email,
  phone, name, address, token, password, iban, birth, ... or a part ``ip``;
  a type such as inet) and has no rule; ``"table.column" = "keep"`` says it
  was looked at and stays as it is.

``dbtasks check`` runs it when masking rules exist and skips it otherwise.
Findings are warnings: they do not fail the run; a rule that would fail or
break the copy does (exit 2), and with it ``dbtasks check``.
"""

from __future__ import annotations

from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.workspace import Workspace
from dbtasks.data import masking
from dbtasks.database import connect

NAME = "masking"


def run(workspace: Workspace) -> CheckResult:
    """Validate the rules at head (a :class:`MaskingError` when one would fail); a warning per personal-looking column without a rule."""
    settings = workspace.settings
    result = CheckResult(NAME)
    rules = masking.load_rules(settings)
    url = workspace.database_at_head()
    with connect(url) as conn:
        resolved = masking.validate(settings, conn, rules)
        missing = masking.unmasked_personal(conn, resolved)
    for col, why in missing:
        key = masking.shown(col.qualified)
        result.findings.append(Finding(
            NAME, "unmasked-personal",
            f"{key} looks personal ({why}) and has no masking rule",
            severity="warning",
            remedy=f"add \"{key}\" = \"<strategy>\" to [tool.dbtasks.masking] (\"keep\" if it is not personal)",
        ))
    if rules:
        result.notes.append(f"{len(rules)} masking rule(s) fit the schema at head")
    else:
        result.notes.append("no masking rules yet: dump-and-restore copies rows unmasked")
    return result


def applies(workspace: Workspace) -> str | None:
    """Why ``dbtasks check`` leaves it out: a project without masking rules."""
    settings = workspace.settings
    if settings.masking or settings.masking_file:
        return None
    return "no masking rules ([tool.dbtasks.masking] or DBTASKS_MASKING_FILE)"


CHECK = declare(
    name=NAME, recipe="db-check-masking", verb="check-masking", order=55, run=run, doc=__doc__,
    help="Warn about personal-looking columns without a masking rule; fail on rules that do not fit the schema",
    needs={"history", "single_head", "scratch"}, applies=applies,
)
