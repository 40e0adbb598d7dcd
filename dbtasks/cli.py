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
        "alembic_ini": alembic_ini,
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
    from dbtasks.server import client_binary, ensure_running

    ensure_running(c.settings)
    sys.exit(run_shell(c.settings.url, client_binary("psql", c.settings.pg_bin)))


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
    from dbtasks.migrations import Revision  # noqa: F401

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
    except click.ClickException as exc:
        exc.show()
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
