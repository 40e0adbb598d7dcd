"""drift: the models and the migrations must describe the same schema.

A scratch database is upgraded to head, then compared with the models through
Alembic's autogenerate, run by the project's own env.py (so its
``target_metadata``, ``include_object``, ``compare_type`` and plugins such as
alembic-postgresql-enum apply exactly as when a revision is generated). Each
operation autogenerate would write is one ``model-drift`` finding, rendered as
the Python line that would appear in the revision.
"""

from __future__ import annotations

import inspect

from alembic import autogenerate
from alembic.operations import ops
from sqlalchemy.engine import URL

from dbtasks import names
from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.workspace import Workspace
from dbtasks.errors import MigrationError

NAME = "drift"


def remedy() -> str:
    return f"write the missing migration: {names.command('db-migrate-create', MIGRATE_MSG='describe the change')}"


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
    targets = workspace.target_metadata = []

    def collect(rev, migration_context):
        metadata = migration_context.opts.get("target_metadata")
        targets.extend(metadata if isinstance(metadata, (list, tuple)) else [metadata] if metadata is not None else [])
        context.run_autogenerate(rev, migration_context)
        return []

    workspace.run(url, collect, template_args=context.template_args, revision_context=context)
    if not context.generated_revisions:
        raise MigrationError("env.py ran no migrations context", "env.py must call context.run_migrations()")
    found: list[ops.MigrateOperation] = []
    for upgrade_ops in context.generated_revisions[-1].upgrade_ops_list:
        found.extend(upgrade_ops.ops)
    return found


def model_of(table: str | None, schema: str | None = None, metadata: list | None = None) -> tuple[str, str, int | None] | None:
    """(class name, source file, line) of the mapped class of env.py's ``target_metadata`` whose table is ``table``."""
    if not table:
        return None
    try:
        from sqlalchemy.orm import mapperlib

        registries = list(mapperlib._mapper_registries)
    except (ImportError, AttributeError):  # pragma: no cover - a SQLAlchemy without the registry list
        return None
    for registry in registries:
        for mapper in list(registry.mappers):
            local = mapper.local_table
            if metadata and not any(getattr(local, "metadata", None) is m for m in metadata):
                continue
            if getattr(local, "name", None) == table and getattr(local, "schema", None) in (schema, None):
                cls = mapper.class_
                try:
                    path = inspect.getsourcefile(cls)
                    line = inspect.getsourcelines(cls)[1]
                except (OSError, TypeError):
                    path, line = None, None
                return f"{cls.__module__}.{cls.__qualname__}", path or "", line
    return None


def run(workspace: Workspace) -> CheckResult:
    """Compare the models with a scratch database at head (the one ``roundtrip`` left there, when it did).

    A finding points at the model whose table differs (its file and the line
    of its class), not at a revision: the missing piece is a revision nobody
    has written yet.
    """
    result = CheckResult(NAME)
    operations = compare(workspace, workspace.database_at_head())
    for op in operations:
        model = model_of(getattr(op, "table_name", None), getattr(op, "schema", None), workspace.target_metadata)
        where = f" (model {model[0]})" if model else ""
        result.findings.append(Finding(
            NAME, "model-drift", f"the models differ from the migrations{where}: {_render(op)}",
            file=workspace.relpath(model[1]) if model and model[1] else None, line=model[2] if model else None, remedy=remedy(),
        ))
    return result


CHECK = declare(
    name=NAME, recipe="db-check-migrations", verb="check-migrations", order=40, run=run, doc=__doc__,
    help="Fail when the models differ from the migrations (scratch database, autogenerate)",
    needs={"history", "single_head", "scratch"},
)
