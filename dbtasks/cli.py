"""The ``dbtasks`` command line. Each command parses, calls one library function, prints.

Exit codes: 0 ok, 1 findings (pending migrations, nothing to do), 2 usage or
environment error. Errors are one line on stderr, passwords redacted.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from dbtasks import __version__
from dbtasks.config import Settings, load_settings
from dbtasks.errors import EXIT_FINDINGS, EXIT_USAGE, DbtasksError, redact


# -- plumbing ---------------------------------------------------------------


def _install_log_redaction() -> None:
    """Every log line, from any library, goes through :func:`redact`."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # noqa: BLE001 - a bad log call must not break the command
            pass
        return record

    logging.setLogRecordFactory(factory)


def echo(text: str = "", err: bool = False) -> None:
    click.echo(redact(text), err=err)


def _ask():
    """A prompt for protected environments, only when a person is at a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: click.prompt(prompt, default="", show_default=False)


class Ctx:
    def __init__(self, overrides: dict[str, Any]):
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)

confirm_option = click.option(
    "--confirm",
    metavar="DBNAME",
    envvar="DBTASKS_CONFIRM",
    callback=lambda ctx, param, value: value or None,
    help="Confirm a destructive verb on a protected environment by naming its database.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbtasks")
@click.option("-c", "--config", "alembic_ini", metavar="PATH", help="alembic.ini of the project (any Alembic project).")
@click.option("--database-url", metavar="URL", help="Database URL; overrides DATABASE_URL.")
@click.option("--env", metavar="NAME", help="Use NAME_DATABASE_URL (e.g. --env prod reads PROD_DATABASE_URL).")
@click.option("--prod", is_flag=True, help="Same as --env prod.")
@click.pass_context
def cli(ctx: click.Context, alembic_ini: str | None, database_url: str | None, env: str | None, prod: bool) -> None:
    """Database chores for PostgreSQL + SQLAlchemy + Alembic projects.

    Settings come from flags, then environment variables, then .env, then
    [tool.dbtasks] in pyproject.toml, then defaults (see `dbtasks settings`).
    """
    if prod and env and env != "prod":
        raise click.UsageError("--prod and --env name different environments; pass one")
    ctx.obj = Ctx({
        # -c is relative to where the command runs, like every other path argument.
        "alembic_ini": os.path.abspath(alembic_ini) if alembic_ini else None,
        "database_url": database_url,
        "env": "prod" if prod else env,
    })


# -- configuration ------------------------------------------------------------


@cli.command()
@pass_ctx
def url(c: Ctx) -> None:
    """Print the resolved database URL, password hidden."""
    echo(c.settings.url.render_as_string(hide_password=True))


@cli.command("settings")
@pass_ctx
def settings_cmd(c: Ctx) -> None:
    """Print every setting, its value and where the value came from."""
    from dbtasks.config import SETTINGS

    s = c.settings
    for setting in SETTINGS:
        value = getattr(s, setting.name)
        if setting.name == "pg_password":
            value = "***"
        if isinstance(value, tuple):
            value = ",".join(value)
        echo(f"{setting.name:<16} {str(value):<28} ({s.sources.get(setting.name, 'default')}, {setting.variable})")
    echo(f"{'server':<16} {s.server_kind}")


# -- server -------------------------------------------------------------------


@cli.command("start-db")
@pass_ctx
def start_db(c: Ctx) -> None:
    """Start the database server (idempotent) and create the database if missing."""
    from dbtasks import server

    echo(server.start_db(c.settings).describe())


@cli.command("stop-db")
@pass_ctx
def stop_db(c: Ctx) -> None:
    """Stop the database server (idempotent)."""
    from dbtasks import server

    echo(server.stop_db(c.settings).describe())


@cli.command("init-db")
@pass_ctx
def init_db(c: Ctx) -> None:
    """Start the database server and upgrade the database to head."""
    from dbtasks import lifecycle

    started, migrated = lifecycle.init_db(c.settings)
    echo(started.describe())
    _print_migrate(migrated, "upgraded")


@cli.command()
@pass_ctx
def init(c: Ctx) -> None:
    """Start the server, migrate to head, load demo data and print the status."""
    from dbtasks import lifecycle

    result = lifecycle.init(c.settings)
    echo(result.server.describe())
    _print_migrate(result.migrate, "upgraded")
    if result.seeded:
        echo("seeded: " + ", ".join(f"{t} {n}" for t, n in result.seeded.items()))
    else:
        echo("seeded: demo data already present")
    _print_status(result.status)


@cli.command("volume-recreate")
@confirm_option
@pass_ctx
def volume_recreate(c: Ctx, confirm: str | None) -> None:
    """Destroy the database server's data, start afresh and migrate to head."""
    from dbtasks import lifecycle

    started, migrated = lifecycle.volume_recreate(c.settings, confirm, _ask())
    echo(started.describe())
    _print_migrate(migrated, "upgraded")


@cli.command()
@pass_ctx
def shell(c: Ctx) -> None:
    """Open psql on the database; reads commands from stdin when it is not a terminal."""
    from dbtasks.database import shell as run_shell
    from dbtasks.data.tools import find_client
    from dbtasks.server import ensure_running

    ensure_running(c.settings)
    sys.exit(run_shell(c.settings.url, find_client("psql", c.settings.pg_bin).path))


@cli.command()
@confirm_option
@pass_ctx
def seed(c: Ctx, confirm: str | None) -> None:
    """Load the application's demo data (idempotent)."""
    from dbtasks.data.seed import seed as run_seed

    rows = run_seed(c.settings, confirm, _ask())
    echo("seeded: " + ", ".join(f"{t} {n}" for t, n in rows.items()) if rows else "demo data already present; nothing inserted")


# -- migrations ---------------------------------------------------------------


def _print_migrate(result, verb: str) -> None:
    if not result.applied:
        echo(f"nothing to do: the database is at {', '.join(result.after) or 'base'}")
        return
    for rev in result.applied:
        echo(f"{verb} {rev.revision}  {rev.message}")
    echo(f"now at {', '.join(result.after) or 'base'}")


def _print_status(st) -> None:
    echo(f"database: {st.database}")
    echo(f"current:  {', '.join(st.current) or 'base (no migrations applied)'}")
    echo(f"head(s):  {', '.join(st.heads) or 'none'}")
    if st.pending:
        echo(f"pending:  {len(st.pending)} revision(s), oldest first:")
        for rev in st.pending:
            echo(f"  {rev.revision}  {rev.message}")
    else:
        echo("pending:  none, up to date")


@cli.command()
@click.option("--exit-code", is_flag=True, help="Exit 1 when any revision is pending (for CI and deploys).")
@pass_ctx
def status(c: Ctx, exit_code: bool) -> None:
    """Print the current revision, the head(s) and the pending revisions oldest first."""
    from dbtasks import migrations

    st = migrations.status(c.settings)
    _print_status(st)
    if exit_code and not st.up_to_date:
        sys.exit(EXIT_FINDINGS)


@cli.command()
@click.argument("target", default="head")
@confirm_option
@pass_ctx
def upgrade(c: Ctx, target: str, confirm: str | None) -> None:
    """Upgrade the database to TARGET (default head), one process at a time."""
    from dbtasks import migrations

    _print_migrate(migrations.upgrade(c.settings, target, confirm, _ask()), "upgraded")


@cli.command()
@click.option("--steps", type=int, default=None, envvar="STEPS", help="How many revisions to undo (default 1; make: STEPS=N).")
@click.option("--to", "target", metavar="REVISION", help="Downgrade to this revision instead.")
@confirm_option
@pass_ctx
def downgrade(c: Ctx, steps: int | None, target: str | None, confirm: str | None) -> None:
    """Undo the last STEPS revisions (default 1), or down to --to REVISION."""
    from dbtasks import migrations

    if steps is not None and target:
        raise click.UsageError("pass --steps or --to, not both")
    result = migrations.downgrade(c.settings, steps if steps is not None else (None if target else 1), target, confirm, _ask())
    _print_migrate(result, "downgraded")


@cli.command("down-all")
@confirm_option
@pass_ctx
def down_all(c: Ctx, confirm: str | None) -> None:
    """Undo every revision, down to base (refused on protected environments)."""
    from dbtasks import migrations

    _print_migrate(migrations.downgrade_all(c.settings, confirm, _ask()), "downgraded")


@cli.command()
@click.option("-m", "--message", envvar="MIGRATE_MSG", help="What the revision does (make: MIGRATE_MSG=...).")
@click.option("--autogenerate/--empty", default=True, help="Compare the models with the database (default), or write an empty revision.")
@pass_ctx
def revision(c: Ctx, message: str | None, autogenerate: bool) -> None:
    """Create a revision file, autogenerated from the models and formatted."""
    from dbtasks import migrations

    rev = migrations.revision(c.settings, message, autogenerate)
    echo(f"created {rev.revision}: {os.path.relpath(rev.path)}")


@cli.command()
@pass_ctx
def current(c: Ctx) -> None:
    """Print the revision(s) the database is at."""
    from dbtasks import migrations

    revs = migrations.current_revisions(c.settings)
    heads = {h.revision for h in migrations.heads(c.settings)}
    if not revs:
        echo("base (no migrations applied)")
    for rev in revs:
        echo(f"{rev}{' (head)' if rev in heads else ''}")


@cli.command()
@pass_ctx
def history(c: Ctx) -> None:
    """List every revision, oldest first; applied ones are marked with *."""
    from dbtasks import migrations

    for rev in migrations.history(c.settings):
        echo(f"{'*' if rev.applied else ' '} {rev.line()}")


@cli.command()
@pass_ctx
def heads(c: Ctx) -> None:
    """List the head revisions with their files; more than one must be merged."""
    from dbtasks import migrations

    for rev in migrations.heads(c.settings):
        echo(f"{rev.revision}  {rev.message}  ({os.path.relpath(rev.path)})")


@cli.command("merge-heads")
@click.option("-m", "--message", default="merge heads", help="Message of the merge revision.")
@pass_ctx
def merge_heads(c: Ctx, message: str) -> None:
    """Write a merge revision that joins all heads into one."""
    from dbtasks import migrations

    rev = migrations.merge_heads(c.settings, message)
    echo(f"created merge revision {rev.revision} over {', '.join(rev.down_revision)}: {os.path.relpath(rev.path)}")


@cli.command("format-revision")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
def format_revision(paths: tuple[str, ...]) -> None:
    """Format revision files with autoflake, isort and black (the post-write hook)."""
    from dbtasks.formatting import format_file

    failed = False
    for path in paths:
        result = format_file(path)
        if not result.ok:
            failed = True
            echo(f"error: {result.failed_tool} could not format {path}: {result.error}; the file was kept as written", err=True)
        else:
            echo(f"formatted {path}" if result.changed else f"{path} already formatted", err=True)
    if failed:
        sys.exit(EXIT_USAGE)


# -- data: dump, restore, backup, backfill scripts, cleanup (issue 5) ----------


class _Bars:
    """Draws a stream of :class:`dbtasks.data.tools.Progress` as one click progress bar per stage, on stderr."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar = None
        self.shown = 0
        self.started = 0.0
        self.unit = ""

    def __call__(self, p) -> None:
        import time

        if p.stage != self.stage:
            self.close()
            self.stage, self.shown, self.started, self.unit = p.stage, 0, time.monotonic(), p.unit
            # No bar when stderr is not a terminal: logs and CI keep one line per error.
            if p.total is None or not sys.stderr.isatty():
                return
            self.bar = click.progressbar(length=max(p.total, 1), label=p.stage, file=sys.stderr, show_eta=True, show_pos=True, width=30)
            self.bar.__enter__()
        if self.bar is None:
            return
        if p.total and p.total != self.bar.length:
            self.bar.length = max(p.total, 1)
        elapsed = time.monotonic() - self.started
        rate = f" {p.done / elapsed:,.0f} {self.unit}/s" if elapsed > 0.5 and p.done else ""
        self.bar.label = f"{p.stage}{rate}"
        if p.done > self.shown:
            self.bar.update(p.done - self.shown)
            self.shown = p.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> "_Bars":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _rel(path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


jobs_option = click.option("-j", "--jobs", type=click.IntRange(1, 64), envvar="JOBS", help="Parallel pg_dump/pg_restore jobs (make: JOBS=N).")


@cli.command("dump-db")
@click.option("-o", "--output", metavar="PATH", envvar="FILE", help="Where to write the dump (make: FILE=...). Default: dumps/<db>-<env>-<time>.dump.")
@click.option("--format", "fmt", type=click.Choice(["custom", "directory"]), help="custom (one file) or directory (parallel). Default: DBTASKS_DUMP_FORMAT.")
@jobs_option
@click.option("--exclude-data", metavar="PATTERN", multiple=True, help="Leave out the rows of tables matching PATTERN (repeatable; default DBTASKS_DUMP_EXCLUDE_DATA).")
@pass_ctx
def dump_db_cmd(c: Ctx, output: str | None, fmt: str | None, jobs: int | None, exclude_data: tuple[str, ...]) -> None:
    """Dump the database (ENV=prod for an environment) with pg_dump, compressed, with a progress bar."""
    from dbtasks.data.dump import dump_db

    with _Bars() as bars:
        r = dump_db(c.settings, output, fmt, jobs, exclude_data or None, progress=bars)
    echo(f"dumped {c.settings.database_name} to {_rel(r.path)} ({r.format} format, {_size(r.size)}, {r.tables} tables, revision {r.revision or 'none'}, {r.seconds:.1f}s)")
    echo(f"server PostgreSQL {r.server_version}, pg_dump {r.pg_dump}" + (f"; rows left out: {', '.join(r.excluded)}" if r.excluded else ""))


@cli.command("restore-db")
@click.option("-f", "--file", "file", metavar="PATH", envvar="FILE", help="The dump to restore (make: FILE=...).")
@jobs_option
@click.option("--owner", metavar="ROLE", help="Role that owns everything restored. Default: DBTASKS_RESTORE_OWNER, else the connecting user.")
@confirm_option
@pass_ctx
def restore_db_cmd(c: Ctx, file: str | None, jobs: int | None, owner: str | None, confirm: str | None) -> None:
    """Restore a dump into a scratch database, then swap it in for the database only if it fully succeeded."""
    from dbtasks.data.restore import restore_db

    with _Bars() as bars:
        r = restore_db(c.settings, file, jobs, owner, confirm, _ask(), progress=bars)
    _print_restore(r)


def _print_restore(r) -> None:
    for name in r.leftovers:
        echo(f"removed {name}, left over by an interrupted restore")
    how = "replaced" if r.replaced else "created"
    extra = f", schema from migrations at {r.revision}, upgraded to head" if r.mode == "schema" else ""
    echo(f"{how} database {r.database} from {_rel(r.file)} ({r.tables} tables{extra}, {r.seconds:.1f}s)")


@cli.command("dump-and-restore")
@click.option("--from", "source", metavar="ENV", envvar="FROM", help="Environment to copy, e.g. prod (reads PROD_DATABASE_URL; make: FROM=prod).")
@click.option("--mode", type=click.Choice(["schema", "full"]), default="schema", envvar="MODE", show_default=True,
              help="schema: our migrations at the dump's revision, the data only, then upgrade to head. full: a plain full restore.")
@jobs_option
@click.option("--owner", metavar="ROLE", help="Role that owns everything restored.")
@click.option("--keep-dump/--remove-dump", default=True, help="Keep the dump file in dumps/ (default) or remove it.")
@pass_ctx
def dump_and_restore_cmd(c: Ctx, source: str | None, mode: str, jobs: int | None, owner: str | None, keep_dump: bool) -> None:
    """Copy an environment's data into the local database safely (refused when the target is protected)."""
    from dbtasks.data.restore import dump_and_restore

    with _Bars() as bars:
        r = dump_and_restore(c.settings, source or "", mode, jobs, owner, keep_dump, progress=bars)
    if r.dump is not None:
        echo(f"dumped {source} to {_rel(r.dump.path)} ({_size(r.dump.size)})" + ("" if keep_dump else ", removed after the restore"))
    _print_restore(r)


@cli.command("backup-db")
@click.option("--dir", "directory", metavar="DIR", help="Backup directory. Default: DBTASKS_BACKUP_DIR (backups/).")
@click.option("--keep", type=click.IntRange(1, None), envvar="KEEP", help="How many backups to keep (make: KEEP=N). Default: DBTASKS_BACKUP_KEEP.")
@pass_ctx
def backup_db_cmd(c: Ctx, directory: str | None, keep: int | None) -> None:
    """Write a timestamped compressed backup, verify it, and keep only the newest N."""
    from dbtasks.data.backup import backup_db

    with _Bars() as bars:
        r = backup_db(c.settings, directory, keep, progress=bars)
    echo(f"backup {_rel(r.dump.path)} ({_size(r.dump.size)}, verified: {r.entries} entries)")
    for path in r.deleted:
        echo(f"deleted old backup {_rel(path)}")
    echo(f"{len(r.kept)} backup(s) kept")


@cli.command("run-script")
@click.argument("script", required=False, envvar="SCRIPT")
@click.option("--dry-run", is_flag=True, envvar="DRY_RUN", help="Ask the script to only count (make: DRY_RUN=1); its writes are rolled back.")
@confirm_option
@pass_ctx
def run_script_cmd(c: Ctx, script: str | None, dry_run: bool, confirm: str | None) -> None:
    """Run a backfill script's main(session) or main(connection) against the database (make: SCRIPT=path)."""
    from dbtasks.data.scripts import run_script

    with _Bars() as bars:
        r = run_script(c.settings, script, confirm, _ask(), progress=bars, dry_run=dry_run)
    if r.result is not None:
        echo(str(r.result))
    echo(f"{'dry run of ' if dry_run else 'ran '}{_rel(r.path)} on {c.settings.database_name} in {r.seconds:.1f}s")


@cli.command("cleanup")
@click.option("--older-than", metavar="AGE", envvar="OLDER_THAN", help='Retention age for every policy, a PostgreSQL interval (make: OLDER_THAN="1 year").')
@click.option("--apply", is_flag=True, envvar="APPLY", help="Delete the rows (make: APPLY=1). Without it, a dry run that counts.")
@click.option("--batch-size", type=click.IntRange(1, None), help="Rows per delete transaction (default 5000).")
@confirm_option
@pass_ctx
def cleanup_cmd(c: Ctx, older_than: str | None, apply: bool, batch_size: int | None, confirm: str | None) -> None:
    """Delete rows past the retention policies, children before parents, in batches (dry run unless APPLY=1)."""
    from dbtasks.data.cleanup import cleanup

    with _Bars() as bars:
        r = cleanup(c.settings, older_than, apply, batch_size=batch_size, confirm=confirm, ask=_ask(), progress=bars)
    for table, cutoff in r.cutoffs.items():
        echo(f"cutoff {table}: {cutoff:%Y-%m-%d %H:%M:%S %Z}")
    for step in r.steps:
        echo(f"{'deleted' if r.applied else 'would delete'} {step.rows:>9} {step.table}  ({step.reason})")
    if r.applied:
        echo(f"deleted {r.total} row(s) in {r.seconds:.1f}s")
    else:
        echo(f"dry run: {r.total} row(s) would be deleted; run with APPLY=1 (--apply) to delete them")


# -- schema docs: diagram.mmd, schema.sql, diagram.svg (issue 4) ---------------


def _docs_options(func):
    """The table-selection and output options shared by regenerate-db-diagram and check-db-docs."""
    options = [
        click.option("--from-database", is_flag=True, envvar="FROM_DATABASE",
                     help="Draw the configured database as it is (e.g. --env prod) instead of a scratch database migrated to head (make/just: FROM_DATABASE=1)."),
        click.option("--output-dir", metavar="DIR", envvar="DBTASKS_DOCS_DIR", help="Where the files live. Default: docs/database ([tool.dbtasks.diagram] output_dir)."),
        click.option("--schema", "schemas", metavar="NAME", multiple=True, help="Draw only this schema (repeatable). Default: every user schema."),
        click.option("--include", metavar="PATTERN", multiple=True, help="Draw only tables matching this glob, e.g. 'billing.*' (repeatable)."),
        click.option("--exclude", metavar="PATTERN", multiple=True, help="Leave out tables matching this glob, e.g. '*_archive' (repeatable)."),
        click.option("--alembic-version/--no-alembic-version", "alembic_version", default=None, help="Draw and dump the alembic_version table (left out by default)."),
        click.option("--owners/--no-owners", default=None, help="Keep OWNER TO statements in schema.sql (left out by default)."),
        click.option("--privileges/--no-privileges", default=None, help="Keep GRANT/REVOKE statements in schema.sql (left out by default)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _docs_settings(c: Ctx, output_dir, schemas, include, exclude, alembic_version, owners, privileges, svg=None):
    from dbtasks import diagram

    return diagram.docs_options(
        c.settings, output_dir=output_dir, schemas=schemas, include=include, exclude=exclude,
        alembic_version=alembic_version, owners=owners, privileges=privileges, svg=svg,
    )


@cli.command("regenerate-db-diagram")
@_docs_options
@click.option("--svg/--no-svg", default=None, help="Render diagram.svg with Graphviz dot. Default: when dot is installed.")
@pass_ctx
def regenerate_db_diagram_cmd(c: Ctx, from_database: bool, svg: bool | None, **selection: Any) -> None:
    """Write docs/database/diagram.mmd (Mermaid ER diagram), schema.sql and diagram.svg from the migrations at head.

    The schema comes from a scratch database migrated to head on the
    configured server (or, with --from-database, from the database itself),
    read from pg_catalog; schema.sql is a normalized pg_dump --schema-only.
    The output is sorted and free of timestamps: running it twice gives the
    same bytes. diagram.svg needs Graphviz (apt-get install graphviz).
    """
    from dbtasks import diagram

    options = _docs_settings(c, svg=svg, **selection)
    result = diagram.regenerate_db_diagram(c.settings, options, from_database)
    source = c.settings.database_name if from_database else "the migrations at head"
    echo(f"drew {result.tables} tables and {result.relationships} relationships from {source}")
    for f in result.files:
        echo(f"{f.status:<9} {os.path.relpath(f.path)}")
    for note in result.notes:
        echo(f"note: {note}", err=True)


@cli.command("check-db-docs")
@_docs_options
@pass_ctx
def check_db_docs_cmd(c: Ctx, from_database: bool, **selection: Any) -> None:
    """Fail (exit 1, with a diff) when docs/database/diagram.mmd, schema.sql or diagram.svg are stale.

    Regenerates them in memory exactly as regenerate-db-diagram would (same
    options) and compares with the checked-in files.
    """
    from dbtasks import diagram

    result = diagram.check_db_docs(c.settings, _docs_settings(c, **selection), from_database)
    for note in result.notes:
        echo(f"note: {note}", err=True)
    if result.ok:
        echo("docs are up to date: diagram.mmd and schema.sql match the schema" + (" of the database" if from_database else " at head"))
        return
    for finding in result.errors:
        echo(finding.message)
        if finding.remedy:
            echo(f"  fix: {finding.remedy}")
    sys.exit(EXIT_FINDINGS)


# -- migration guardrails: drift, heads, lint, roundtrip, rehearse, check (issue 3) --

# --since has no envvar of its own: DBTASKS_LINT_SINCE (make: SINCE=REF) is read as a check option.
since_option = click.option(
    "--since", metavar="REF", callback=lambda ctx, param, value: value or None,
    help="Git base: only revisions added or changed since REF (default lint_since, origin/main; make: SINCE=REF).",
)
all_option = click.option("--all", "all_revisions", is_flag=True, envvar="DBTASKS_ALL", help="All revisions, whatever the git base (make: ALL=1).")
format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", envvar="DBTASKS_FORMAT", show_default=True,
    help="json: a list of findings with rule, severity, revision, file, line, message (make: FORMAT=json).",
)


def _finding_lines(finding) -> list[str]:
    where = finding.file or ""
    if where and finding.line:
        where = f"{where}:{finding.line}"
    head = f"{finding.severity}: {finding.check}/{finding.rule}"
    if finding.revision:
        head += f" [{finding.revision}]"
    if where:
        head += f" {where}"
    lines = [f"{head}: {finding.message}"]
    if finding.remedy:
        lines.append(f"  fix: {finding.remedy}")
    return lines


def _report(results: list, fmt: str = "text", summary: bool = False) -> None:
    """Print check results; exit 1 when any check has an error finding."""
    import json

    if fmt == "json":
        echo(json.dumps([f.as_dict() for r in results for f in r.findings], indent=2))
    else:
        for result in results:
            for finding in result.findings:
                for line in _finding_lines(finding):
                    echo(line)
            for note in result.notes:
                echo(f"note: {result.check}: {note}", err=True)
        if summary:
            echo("")
            echo(f"{'check':<10} {'result':<8} {'errors':>6} {'warnings':>8} {'seconds':>8}")
            for r in results:
                verdict = "skipped" if r.skipped else ("ok" if r.ok else "FAILED")
                warnings = len(r.findings) - len(r.errors)
                echo(f"{r.check:<10} {verdict:<8} {len(r.errors):>6} {warnings:>8} {r.seconds:>8.2f}" + (f"  ({r.skipped})" if r.skipped else ""))
        else:
            for r in results:
                if r.skipped:
                    echo(f"{r.check}: skipped ({r.skipped})")
                elif r.ok:
                    echo(f"{r.check}: ok" + (f" ({len(r.findings)} warning(s))" if r.findings else ""))
    if not all(r.ok for r in results):
        sys.exit(EXIT_FINDINGS)


@cli.command("check-migrations")
@format_option
@pass_ctx
def check_migrations(c: Ctx, fmt: str) -> None:
    """Fail when the models differ from the migrations (drift): upgrade a scratch database to head and autogenerate-compare.

    Prints each operation a new revision would contain and the remedy
    (`make db-migrate-create MIGRATE_MSG=...`). The developer's database is
    not touched.
    """
    from dbtasks.checks.drift import check_drift

    _report([check_drift(c.settings)], fmt)


@cli.command("check-heads")
@pass_ctx
def check_heads_cmd(c: Ctx) -> None:
    """Fail when the history has more than one head; list each with its file and message, and both fixes."""
    from dbtasks.checks.heads import check_heads

    _report([check_heads(c.settings)])


@cli.command("linearize")
@click.option("--no-database", is_flag=True, help="Do not check the database for applied revisions of the moved branch.")
@pass_ctx
def linearize_cmd(c: Ctx, no_database: bool) -> None:
    """Turn several heads into one straight history: rebase the newer branch onto the other head.

    Rewrites the first revision of the newer branch (its down_revision and
    the Revises: line of its docstring) and formats it. Refuses when a
    revision it would move is applied in the database (downgrade first), or
    when a branch holds merge revisions (use merge-heads).
    """
    from dbtasks.heads import linearize

    result = linearize(c.settings, check_database=not no_database)
    for note in result.notes:
        echo(f"note: {note}", err=True)
    for move in result.moves:
        echo(f"moved {', '.join(move.moved)} onto {move.new_parent} (was on {move.old_parent}): {os.path.relpath(move.path)}")
    echo(f"one head now: {result.head}")


@cli.command("lint")
@since_option
@all_option
@format_option
@pass_ctx
def lint_cmd(c: Ctx, since: str | None, all_revisions: bool, fmt: str) -> None:
    """Lint revision files without a database: self-contained imports, structure, and SQL safety with squawk.

    By default only revisions added or changed since the git base (--since,
    default origin/main, falling back to main) are linted; --all lints every
    revision. Suppress a rule in a revision file with
    `# dbtasks: allow <rule>: <why>`.
    """
    from dbtasks.checks.lint import lint

    _report([lint(c.settings, since, all_revisions)], fmt)


@cli.command("check-roundtrip")
@format_option
@pass_ctx
def check_roundtrip_cmd(c: Ctx, fmt: str) -> None:
    """Prove every downgrade undoes its upgrade: upgrade, snapshot, downgrade, compare, upgrade again, per revision.

    Runs on a scratch database from base to head; a finding names the
    revision and what its downgrade left behind or lost.
    """
    from dbtasks.checks.roundtrip import check_roundtrip

    _report([check_roundtrip(c.settings)], fmt)


@cli.command("rehearse")
@since_option
@all_option
@format_option
@pass_ctx
def rehearse_cmd(c: Ctx, since: str | None, all_revisions: bool, fmt: str) -> None:
    """Apply the new revisions to a scratch database filled with generated rows, to catch "works on empty, fails with data".

    The database is upgraded to the parent of the revisions added since the
    git base (as for lint), every table gets rehearse_rows generated rows,
    then the new revisions run one at a time.
    """
    from dbtasks.checks.rehearse import check_rehearse

    _report([check_rehearse(c.settings, since, all_revisions)], fmt)


@cli.command("check")
@since_option
@all_option
@format_option
@pass_ctx
def check_cmd(c: Ctx, since: str | None, all_revisions: bool, fmt: str) -> None:
    """Run every migration guardrail (heads, lint, roundtrip, drift, rehearse, docs) and print one summary table.

    Works on any Alembic project: dbtasks -c path/to/alembic.ini
    --database-url URL check. Scratch databases are created on that server
    and dropped; the database itself is not touched.
    """
    from dbtasks.checks.runner import run_checks

    # Progress only for a person at a terminal: in CI and in pipes an error stays one line.
    progress = (lambda name: echo(f"running {name} ...", err=True)) if fmt == "text" and sys.stderr.isatty() else None
    _report(run_checks(c.settings, since, all_revisions, progress), fmt, summary=True)


# -- entry point --------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every DbtasksError becomes one line and its exit code."""
    _install_log_redaction()
    try:
        rv = cli.main(args=argv, prog_name="dbtasks", standalone_mode=False)
    except DbtasksError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        echo("aborted; nothing was done", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        echo(f"error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("DBTASKS_DEBUG"):
            raise
        echo(f"error: unexpected {type(exc).__name__}: {exc} (set DBTASKS_DEBUG=1 for the traceback)", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(rv if isinstance(rv, int) else 0)
