"""drift: the models and the migrations must describe the same schema.

A scratch database is upgraded to head, then compared with the models through
Alembic's autogenerate, run by the project's own env.py (so its
``target_metadata``, ``include_object``, ``compare_type`` and plugins such as
alembic-postgresql-enum apply exactly as when a revision is generated). Each
operation autogenerate would write is one ``model-drift`` finding, rendered as
the Python line that would appear in the revision.
"""

from __future__ import annotations

from alembic import autogenerate
from alembic.operations import ops
from sqlalchemy.engine import URL

from dbtasks.checks import CheckResult, Finding
from dbtasks.checks.workspace import Workspace
from dbtasks.config import Settings
from dbtasks.errors import MigrationError

CHECK = "drift"
REMEDY = 'write the missing migration: make db-migrate-create MIGRATE_MSG="describe the change"'


def _render(op: ops.MigrateOperation) -> str:
    code = autogenerate.render_python_code(ops.UpgradeOps(ops=[op]))
    lines = [line.strip() for line in code.splitlines() if line.strip() and not line.strip().startswith("# ###")]
    return " ".join(lines)


def compare(workspace: Workspace, url: URL) -> list[ops.MigrateOperation]:
    """The operations autogenerate finds between the database at ``url`` and the models."""
    command_args = dict(
        message=None, autogenerate=True, sql=False, head="head", splice=False,
        branch_label=None, version_path=None, rev_id=None, depends_on=None,
    )
    context = autogenerate.RevisionContext(workspace.config, workspace.script, command_args)

    def collect(rev, migration_context):
        context.run_autogenerate(rev, migration_context)
        return []

    workspace.run(url, collect, template_args=context.template_args, revision_context=context)
    if not context.generated_revisions:
        raise MigrationError("env.py ran no migrations context", "env.py must call context.run_migrations()")
    found: list[ops.MigrateOperation] = []
    for upgrade_ops in context.generated_revisions[-1].upgrade_ops_list:
        found.extend(upgrade_ops.ops)
    return found


def check_drift(settings: Settings, workspace: Workspace | None = None, at_head: URL | None = None) -> CheckResult:
    """Upgrade a scratch database to head and list what the models add or change.

    ``at_head`` is a scratch database already at head (``check`` reuses the
    roundtrip's), so the history is not migrated twice.
    """
    workspace = workspace or Workspace(settings)
    result = CheckResult(CHECK)
    heads = workspace.heads()
    if len(heads) > 1:
        result.skipped = "multiple heads (see the heads check)"
        return result
    if at_head is not None:
        operations = compare(workspace, at_head)
    else:
        with workspace.scratch() as url:
            workspace.upgrade(url, "heads")
            operations = compare(workspace, url)
    head = heads[0] if heads else None
    for op in operations:
        result.findings.append(Finding(
            CHECK, "model-drift", f"the models differ from the migrations: {_render(op)}",
            revision=head, file=workspace.relpath(workspace.get(head).path) if head else None, remedy=REMEDY,
        ))
    return result
