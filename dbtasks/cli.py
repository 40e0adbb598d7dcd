"""The ``dbtasks`` command line. Each command parses, calls one library function, prints.

Options that are settings (``--steps``, ``--older-than``, ``--format`` ...) are
built from their one declaration in :mod:`dbtasks.config` by
:func:`setting_option`: a flag only ever lands in the settings as an override,
so flag > environment variable > .env > pyproject.toml > default holds for
all of them. The check verbs are generated from the check registry.

Exit codes: 0 ok, 1 findings (pending migrations, nothing to do), 2 usage or
environment error. Errors are one line on stderr, passwords redacted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable

import click

from dbtasks import __version__, names
from dbtasks.config import SETTING_BY_NAME, SETTINGS, Settings, load_settings, parse_bool, shown_path, shown_value
from dbtasks.errors import EXIT_FINDINGS, EXIT_USAGE, DbtasksError, redact
from dbtasks.formatting import human_bytes

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
    """Print one line, password redacted; a leading ``error:``/``warning:``/``note:`` is coloured
    when that stream gets colour (a terminal, no NO_COLOR; see :func:`dbtasks.formatting.colour_enabled`)."""
    from dbtasks.formatting import colour_enabled, style_prefix

    stream = sys.stderr if err else sys.stdout
    click.echo(style_prefix(redact(text), stream), err=err, color=colour_enabled(stream))


def _say(text: str) -> None:
    """One progress line on stderr (lock-timeout retries, sessions a restore ends)."""
    echo(text, err=True)


def _ask():
    """A prompt for protected environments, only when a person is at a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: click.prompt(prompt, default="", show_default=False)


def _ask_yes():
    """A yes/no question, only when a person is at a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: click.confirm(prompt, default=False)


class Ctx:
    """The flags given so far (as setting overrides) and the settings they resolve to."""

    def __init__(self, overrides: dict[str, Any]):
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.overrides)
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)


def setting_option(name: str, *decls: str, **kwargs: Any) -> Callable:
    """A click option for setting ``name``: help from its declaration, value into the settings.

    The option reads no environment variable of its own: the setting's
    variable is read by :func:`~dbtasks.config.load_settings`, once, with the
    same precedence as every other setting.
    """
    s = SETTING_BY_NAME[name]
    parse = s.parse
    if parse is parse_bool and "/" not in " ".join(decls):
        kwargs.setdefault("is_flag", True)
    elif isinstance(s.default, tuple):
        kwargs.setdefault("multiple", True)
    elif getattr(parse, "choices", None):
        kwargs.setdefault("type", click.Choice(parse.choices))
    elif isinstance(s.default, int) and not isinstance(s.default, bool) or name in ("steps", "jobs", "keep"):
        kwargs.setdefault("type", int)
    carrier = s.make or s.variable
    help_text = kwargs.pop("help", s.help)
    kwargs["help"] = f"{help_text} [{carrier}]"
    kwargs.setdefault("default", None)

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value == () or value == "":
            return
        ctx.ensure_object(Ctx).overrides[name] = list(value) if isinstance(value, tuple) else value

    return click.option(*(decls or (s.flag,)), expose_value=False, callback=store, **kwargs)


confirm_option = setting_option("confirm", "--confirm", metavar="DBNAME")


class _Group(click.Group):
    """The commands above, plus one verb per registered check, loaded only when asked for.

    Importing the checks (Alembic's autogenerate, the linter, the diagram
    code) is left to the commands that need them, so `dbtasks status` starts
    faster.
    """

    def _checks(self) -> dict[str, click.Command]:
        if not hasattr(self, "_check_commands"):
            from dbtasks.checks.runner import registry

            self._check_commands = {check.verb: _check_command(check) for check in registry()}
        return self._check_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._checks()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._checks().get(name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    """Print every setting, its value and where the value came from, aligned."""
    s = c.settings
    rows = [(d.name, shown_value(s, d), s.sources.get(d.name, "default"), d.variable) for d in SETTINGS]
    rows.append(("server", s.server_kind, "derived", "DB_SERVER, DATABASE_URL"))
    if s.server_kind == "local":
        from dbtasks.server import LocalServer

        local = LocalServer(s)
        try:
            data_dir, note = str(local.data_dir), local.relocation_note
        except DbtasksError as exc:  # e.g. no OS user to run the server: show the setting, and why
            data_dir, note = str(s.data_dir), exc.message
        rows.append(("data_dir", data_dir, "derived", "DBTASKS_PG_DATA" + (f" ({note})" if note else "")))
    widths = [min(max(len(r[i]) for r in rows), 32) for i in range(3)]
    echo(f"{'setting':<{widths[0]}}  {'value':<{widths[1]}}  {'from':<{widths[2]}}  variable")
    for name, value, source, variable in rows:
        echo(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source:<{widths[2]}}  {variable}".rstrip())


@cli.command()
@click.option("-y", "--yes", is_flag=True, help="Apply the changes without asking.")
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
@pass_ctx
def adopt(c: Ctx, yes: bool, dry_run: bool) -> None:
    """Set dbtasks up in this Alembic project: recipes, revision hook, [tool.dbtasks], .gitignore.

    Writes dbtasks.mk and dbtasks.just (included from the Makefile and the
    justfile, created when missing), adds the post-write hook and a
    date-named file_template to alembic.ini, db_name to [tool.dbtasks] in
    pyproject.toml and data/, dumps/, backups/ to .gitignore. Shows the
    changes and asks first (--yes: apply, --dry-run: only show). Never
    overwrites a file of yours; running it again changes nothing.
    """
    from dbtasks import adopt as adopt_mod
    from dbtasks.errors import UsageError

    if yes and dry_run:
        raise UsageError("--yes and --dry-run contradict each other", "pass one of them")
    plan = adopt_mod.plan(os.getcwd(), c.overrides.get("alembic_ini"))
    if not plan.changes:
        echo(f"nothing to change: {plan.project_dir.name} has adopted dbtasks already")
    else:
        echo(f"dbtasks adopt {'would change' if dry_run else 'will change'} {len(plan.changes)} file(s) in {plan.project_dir.name}/:")
        width = max(len(shown_path(ch.path, plan.project_dir)) for ch in plan.changes)
        for ch in plan.changes:
            echo(f"  {ch.action:<6} {shown_path(ch.path, plan.project_dir):<{width}}  {ch.summary}")
    if plan.models:
        echo(f"models: {plan.models} (env.py's target_metadata), compared with the migrations by db-migrate-create and check")
    for note in plan.notes:
        echo(f"note: {note}")
    if not plan.changes:
        return
    if dry_run:
        echo("dry run: nothing written")
        return
    if not yes:
        ask = _ask_yes()
        if ask is None:
            raise UsageError("dbtasks adopt asks before it changes files and no one is at a terminal; nothing was changed", "pass --yes to apply, or --dry-run to only show the changes")
        if not ask("Apply these changes?"):
            raise click.Abort()
    adopt_mod.apply(plan)
    echo(f"wrote {len(plan.changes)} file(s). Next:")
    for command in plan.next_commands:
        echo(f"  {command}")


# -- server -------------------------------------------------------------------


@cli.command("start-db")
@pass_ctx
def start_db(c: Ctx) -> None:
    """Start the database server (idempotent) and create the database if missing."""
    from dbtasks import server

    from dbtasks.safety import protection

    echo(server.start_db(c.settings, create_missing=not protection(c.settings).protected).describe())


@cli.command("stop-db")
@pass_ctx
def stop_db(c: Ctx) -> None:
    """Stop the database server (idempotent)."""
    from dbtasks import server

    echo(server.stop_db(c.settings).describe())


@cli.command("create-db")
@pass_ctx
def create_db(c: Ctx) -> None:
    """Create the configured database if it does not exist (idempotent).

    Works on any server the role may create databases on (DATABASE_URL,
    --env, docker or the local server): the CREATE DATABASE goes over the
    `postgres` maintenance database with the same credentials (else
    `template1`). A role without CREATEDB gets one line saying so.
    """
    from dbtasks import server

    echo(server.create_db(c.settings).describe())


@cli.command("wait-db")
@setting_option("wait_timeout", "--timeout", type=click.IntRange(min=1), metavar="SECONDS")
@pass_ctx
def wait_db(c: Ctx) -> None:
    """Wait until the database accepts connections, up to a timeout (for entrypoints and CI).

    A server that is not up yet is waited for; a missing database (run
    create-db) or a refused password stops at once. Prints one line:
    `waiting for host:port/db ... ready after 1.2 s`.
    """
    from dbtasks import server

    s = c.settings
    click.echo(f"waiting for {server.address(s.url)} ... ", nl=False)
    try:
        took = server.wait_db(s)
    except DbtasksError:
        click.echo("")
        raise
    echo(f"ready after {took:.1f} s")


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
    if result.seeded is None:
        echo("note: no seed configured (DBTASKS_SEED / seed in [tool.dbtasks]); skipping demo data")
    elif result.seeded:
        echo("seeded: " + ", ".join(f"{t} {n}" for t, n in result.seeded.items()))
    else:
        echo("seeded: demo data already present")
    _print_status(result.status)


@cli.command("volume-recreate")
@confirm_option
@pass_ctx
def volume_recreate(c: Ctx) -> None:
    """Destroy the database server's data, start afresh and migrate to head."""
    from dbtasks import lifecycle

    started, migrated = lifecycle.volume_recreate(c.settings, c.settings.confirm, _ask())
    echo(started.describe())
    _print_migrate(migrated, "upgraded")


@cli.command()
@setting_option("write", "--write")
@confirm_option
@pass_ctx
def shell(c: Ctx) -> None:
    """Open psql on the database; reads commands from stdin when it is not a terminal.

    A protected database opens read-only (default_transaction_read_only),
    as the banner says; --write (make/just WRITE=1) opens it writable after
    the database name is typed or given with --confirm.
    """
    from dbtasks import clients, safety

    s = c.settings
    read_only, banner = safety.shell_mode(s, s.write, s.confirm, _ask())
    if banner:
        echo(banner, err=True)
    sys.exit(clients.shell(s, read_only=read_only))


@cli.command()
@pass_ctx
def protect(c: Ctx) -> None:
    """Mark the database protected inside the database itself (its comment names the environment).

    Every destructive verb then asks for the database name whichever route
    reaches it (ENV, DATABASE_URL, --database-url, .env). Needs the
    database's owner or a superuser.
    """
    from dbtasks import safety

    p = safety.protect(c.settings)
    echo(f"protected: {p.database}" + (f" ({p.mark})" if p.mark else "") + "; destructive verbs now ask for its name")


@cli.command()
@confirm_option
@pass_ctx
def unprotect(c: Ctx) -> None:
    """Remove the protection mark from the database (the database name must be typed or given with --confirm)."""
    from dbtasks import safety

    safety.unprotect(c.settings, c.settings.confirm, _ask())
    echo(f"unprotected: {c.settings.database_name} carries no protection mark any more")


@cli.command()
@confirm_option
@pass_ctx
def seed(c: Ctx) -> None:
    """Load the application's demo data (idempotent)."""
    from dbtasks.data.seed import seed as run_seed

    rows = run_seed(c.settings, c.settings.confirm, _ask())
    echo("seeded: " + ", ".join(f"{t} {n}" for t, n in rows.items()) if rows else "demo data already present; nothing inserted")


# -- migrations ---------------------------------------------------------------


def _print_migrate(result, verb: str) -> None:
    from dbtasks.schema_load import LoadResult

    if isinstance(result, LoadResult):  # init, init-db: a new database built from schema.sql
        _print_schema_load(result)
        return
    if not result.applied and not result.after:  # upgraded to head, and head is base: an empty history
        echo(f"nothing to do: the project has no revisions yet; `{names.command('db-migrate-create', MIGRATE_MSG='initial')}` writes the first")
        return
    if not result.applied:
        echo(f"nothing to do: the database is at {', '.join(result.after)}")
        return
    for rev in result.applied:
        echo(f"{verb} {rev.revision}  {rev.message}")
    echo(f"now at {', '.join(result.after) or 'base'}")


def _print_status(st) -> None:
    from dbtasks.formatting import style

    echo(f"database: {st.database}")
    echo(f"current:  {', '.join(st.current) or 'base (no migrations applied)'}")
    echo(f"head(s):  {', '.join(st.heads) or 'none'}")
    if st.pending:
        echo(f"pending:  {style(f'{len(st.pending)} revision(s)', 'pending')}, oldest first:")
        for rev in st.pending:
            echo(f"  {rev.revision}  {rev.message}")
    else:
        echo(f"pending:  none, {style('up to date', 'ok')}")


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
def upgrade(c: Ctx, target: str) -> None:
    """Upgrade the database to TARGET (default head), one process at a time."""
    from dbtasks import migrations

    _print_migrate(migrations.upgrade(c.settings, target, c.settings.confirm, _ask(), on_retry=_say), "upgraded")


def _print_schema_load(result) -> None:
    echo(f"loaded {result.path} into {result.database} ({result.skipped} revision(s) not replayed, {result.seconds:.1f} s)")
    echo(f"now at {', '.join(result.revisions) or 'base'}")


@cli.command("schema-load")
@confirm_option
@pass_ctx
def schema_load(c: Ctx) -> None:
    """Create the empty database's schema from docs/database/schema.sql and stamp it at the revision recorded there.

    Refuses when schema.sql is missing, stale against the migrations (its
    header's revision or hash of the revision files differs) or edited by
    hand, or when the database is not empty.
    """
    from dbtasks import schema_load as schema_load_mod

    _print_schema_load(schema_load_mod.schema_load(c.settings, c.settings.confirm, _ask()))


@cli.command()
@setting_option("steps", "--steps")
@setting_option("to_revision", "--to", metavar="REVISION")
@confirm_option
@pass_ctx
def downgrade(c: Ctx) -> None:
    """Undo the last STEPS revisions (default 1), or down to --to REVISION."""
    from dbtasks import migrations

    steps, target = c.settings.steps, c.settings.to_revision
    if steps is not None and target:
        raise click.UsageError("pass --steps or --to, not both")
    result = migrations.downgrade(c.settings, steps if steps is not None else (None if target else 1), target, c.settings.confirm, _ask(), on_retry=_say)
    _print_migrate(result, "downgraded")


@cli.command("down-all")
@confirm_option
@pass_ctx
def down_all(c: Ctx) -> None:
    """Undo every revision, down to base (refused on protected environments)."""
    from dbtasks import migrations

    _print_migrate(migrations.downgrade_all(c.settings, c.settings.confirm, _ask(), on_retry=_say), "downgraded")


@cli.command()
@setting_option("message", "-m", "--message")
@click.option("--autogenerate/--empty", default=True, help="Compare the models with the database (default), or write an empty revision.")
@pass_ctx
def revision(c: Ctx, autogenerate: bool) -> None:
    """Create a revision file, autogenerated from the models and formatted."""
    from dbtasks import ledger, migrations

    ledger.readable(c.settings)  # a broken ledger fails before the revision file is written
    rev = migrations.revision(c.settings, c.settings.message, autogenerate)
    ledger.record(c.settings, rev.revision, rev.path)  # when the project keeps a ledger
    echo(f"created {rev.revision}: {shown_path(rev.path)}")


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

    found = migrations.history(c.settings)
    for rev in found.revisions:
        echo(f"{'*' if rev.applied else ' '} {rev.line()}")
    for rev in found.unknown:
        from dbtasks.migrations import squashed_message

        squashed = squashed_message(migrations.script_directory(c.settings), rev, c.settings)  # db-squash folded it into a baseline
        echo(f"note: {squashed}" if squashed else f"note: the database is at revision {rev}, which these files do not have (applied on another git branch?)", err=True)


@cli.command()
@pass_ctx
def heads(c: Ctx) -> None:
    """List the head revisions with their files; more than one must be merged."""
    from dbtasks import migrations

    for rev in migrations.heads(c.settings):
        echo(f"{rev.revision}  {rev.message}  ({shown_path(rev.path)})")


@cli.command("merge-heads")
@click.option("-m", "--message", default="merge heads", help="Message of the merge revision.")
@pass_ctx
def merge_heads(c: Ctx, message: str) -> None:
    """Write a merge revision that joins all heads into one."""
    from dbtasks import ledger, migrations

    ledger.readable(c.settings)  # a broken ledger fails before the merge revision is written
    rev = migrations.merge_heads(c.settings, message)
    ledger.record(c.settings, rev.revision, rev.path)  # when the project keeps a ledger
    echo(f"created merge revision {rev.revision} over {', '.join(rev.down_revision)}: {shown_path(rev.path)}")


@cli.command("ledger")
@click.option("--init", "init_", is_flag=True, help="Write the ledger for the existing history (refused when it exists).")
@click.option("--update", is_flag=True, help="Record new revisions and edits of revisions only on this branch; drop removed ones.")
@setting_option("accept", "--accept", metavar="REV")
@setting_option("reason", "--reason", metavar="TEXT")
@click.option("--accept-edit", "accept_edit", is_flag=True, help="Accept an edit with ACCEPT and REASON from the environment (what db-ledger-accept runs).")
@pass_ctx
def ledger_cmd(c: Ctx, init_: bool, update: bool, accept_edit: bool) -> None:
    """Show the revision ledger: revisions edited, unrecorded or removed since they were recorded.

    The ledger (migrations.sum next to alembic.ini, or DBTASKS_LEDGER) holds
    a checksum of each revision file's normalized source; see
    `dbtasks check-ledger --help`. --init writes it, --update records new
    revisions and edits of revisions that are only on this branch, and
    --accept REV --reason TEXT re-records an edited merged revision, keeping
    the reason in the file. Exit 1 while a merged revision is edited.
    """
    from dbtasks import ledger

    settings = c.settings
    # Accepting is asked for by a flag, never by an ACCEPT or REASON left in the environment.
    accepting = accept_edit or "flag" in (settings.sources.get("accept"), settings.sources.get("reason"))
    if sum([init_, update, accepting]) > 1:
        raise click.UsageError("pass one of --init, --update, --accept REV --reason TEXT")
    if init_:
        report = ledger.init(settings)
    elif update:
        report = ledger.update(settings)
    elif accepting:
        report = ledger.accept(settings, settings.accept, settings.reason)
        echo(f"note: databases that already ran {report.changed[0]} keep what its old version did; "
             "a local one that should match the new file needs it run again (or a fresh copy)", err=True)
    else:
        report = ledger.status(settings)
    if report.merged.note:
        echo(f"note: {report.merged.note}", err=True)
    changed = set(report.changed)
    for state in report.states:
        if state.status == "ok" and state.revision not in changed:
            continue
        if state.revision in changed:
            what = "recorded"
        elif state.status == "edited":
            what = "EDITED" if state.blocking else "edited (only on this branch)"
        else:
            what = state.status
        echo(f"{what:<28} {state.revision}  {state.file}")
    for state in report.dropped:
        echo(f"{'dropped (no such revision)':<28} {state.revision}  {state.file}")
    ok = sum(s.status == "ok" for s in report.states)
    echo(f"{shown_path(report.path)}: {ok} of {sum(s.status != 'removed' for s in report.states)} revision(s) match")
    if report.blocking:
        from dbtasks import names

        first = report.blocking[0].revision
        echo(
            f"error: {len(report.blocking)} merged revision(s) edited since recorded; write the change as a new revision, "
            f"or {names.run('db-ledger-accept', ACCEPT=first, REASON='why it is safe')}",
            err=True,
        )
        sys.exit(EXIT_FINDINGS)


@cli.command("migrate-sql")
@setting_option("source", "--from", metavar="REVISION", help="Start after this revision (base: an empty database) instead of the database's current one.")
@setting_option("to_revision", "--to", metavar="REVISION", help="Stop at this revision instead of the head(s).")
@pass_ctx
def migrate_sql_cmd(c: Ctx) -> None:
    """Print the SQL that upgrade would run, revision by revision, with squawk's findings as comments.

    Pending revisions of the database by default (its current revision is
    read, nothing is written), or --from/--to (FROM=/TO=; no database needed
    with --from). The SQL is rendered offline; a revision that cannot be
    rendered (it reads data) is named and the exit code is 1.
    """
    from dbtasks.preview import migrate_sql

    preview = migrate_sql(c.settings, c.settings.source, c.settings.to_revision)
    click.echo(redact(preview.script()), nl=False)
    for note in preview.notes:
        echo(f"note: {note}", err=True)
    for rev in preview.unrendered:
        echo(f"warning: revision {rev.revision} ({shown_path(rev.path)}) {rev.unrendered}", err=True)
    if preview.unrendered:
        sys.exit(EXIT_FINDINGS)


@cli.command("squash")
@setting_option("upto", "--upto", metavar="REVISION")
@pass_ctx
def squash_cmd(c: Ctx) -> None:
    """Replace the revisions up to --upto REVISION with one baseline revision keeping its id.

    The baseline creates the schema at REVISION (pg_dump --schema-only of a
    scratch database migrated to it) and its downgrade drops it; later
    revisions keep pointing at REVISION. Before any file changes, the new
    history is proven on scratch databases to build the same schema as the
    replay, at REVISION and at head. Refused on a dirty git tree, or when
    REVISION is not an ancestor of every head. The replaced files are deleted
    (git keeps them).
    """
    from dbtasks.squash import squash

    result = squash(c.settings, c.settings.upto, progress=_say)
    echo(f"squashed {len(result.removed) + 1} revisions ({result.revision} and the {len(result.removed)} before it) into the baseline {result.revision}: {shown_path(result.path)}")
    echo(f"deleted {len(result.deleted)} revision file(s); head(s) unchanged: {', '.join(result.heads)}")
    if result.commit:
        echo(f"databases at a deleted revision reach {result.revision} once with the history of commit {result.commit[:12]}")
    if result.heads == [result.revision]:
        echo(f"note: UPTO={result.revision} is the head: the whole history is one baseline now", err=True)
    docs = c.settings.path(c.settings.docs_dir)
    if (docs / "schema.sql").exists() or (docs / "diagram.mmd").exists():
        echo(f"note: {shown_path(docs)} was made from the old revision files (check-db-docs will call it stale): run `{names.command('regenerate-db-diagram')}` and commit it with the squash", err=True)


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
    from dbtasks.linearize import linearize

    result = linearize(c.settings, check_database=not no_database)
    for note in result.notes:
        echo(f"note: {note}", err=True)
    for move in result.moves:
        echo(f"moved {', '.join(move.moved)} onto {move.new_parent} (was on {move.old_parent}): {shown_path(move.path)}")
    echo(f"one head now: {result.head}")


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


# -- data: dump, restore, backup, backfill scripts, cleanup --------------------


def _with_bars(verb: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call a library verb with a ``progress`` callback drawn on stderr (:class:`dbtasks.formatting.ProgressLine`):
    an updating line with rate and ETA at a terminal, a line every 10 s at most in logs."""
    from dbtasks.formatting import ProgressLine

    with ProgressLine(sys.stderr) as bars:
        return verb(*args, progress=bars, **kwargs)


jobs_option = setting_option("jobs", "-j", "--jobs", type=click.IntRange(1, 64))


@cli.command("dump-db")
@setting_option("file", "-o", "--output", metavar="PATH", help="Where to write the dump. Default: dumps/<db>-<env>-<time>.dump.")
@setting_option("dump_format", "--format")
@jobs_option
@setting_option("dump_exclude_data", "--exclude-data", metavar="PATTERN")
@pass_ctx
def dump_db_cmd(c: Ctx) -> None:
    """Dump the database (ENV=prod for an environment) with pg_dump, compressed, with a progress bar."""
    from dbtasks.data.dump import dump_db

    s = c.settings
    r = _with_bars(dump_db, s, s.file, s.dump_format, s.jobs)
    data = f", {human_bytes(r.data_bytes)} of table data" if r.data_bytes is not None else ""
    echo(f"dumped {s.database_name} to {shown_path(r.path)} ({r.format} format, {human_bytes(r.size)}, {r.tables} tables{data}, revision {r.revision or 'none'}, {r.seconds:.1f}s)")
    echo(f"server PostgreSQL {r.server_version}, pg_dump {r.pg_dump}" + (f"; rows left out: {', '.join(r.excluded)}" if r.excluded else ""))


@cli.command("restore-db")
@setting_option("file", "-f", "--file", metavar="PATH")
@jobs_option
@setting_option("restore_owner", "--owner", metavar="ROLE")
@setting_option("force", "--force")
@confirm_option
@pass_ctx
def restore_db_cmd(c: Ctx) -> None:
    """Restore a dump into a scratch database, then swap it in for the database only if it fully succeeded."""
    from dbtasks.data.restore import restore_db

    s = c.settings
    r = _with_bars(restore_db, s, s.file, s.jobs, s.restore_owner, s.confirm, _ask(), force=s.force, ask_sessions=_ask_yes(), say=_say)
    _print_restore(r)


def _print_restore(r) -> None:
    for name in r.leftovers:
        echo(f"removed {name}, left over by an interrupted restore")
    how = "replaced" if r.replaced else "created"
    extra = f", schema from migrations at {r.revision}, upgraded to head" if r.mode == "schema" else ""
    data = f", {human_bytes(r.data_bytes)} of table data" if r.data_bytes is not None else ""
    source = shown_path(r.file) if r.file.exists() else "the dump"  # dump-and-restore may have deleted it (said above)
    echo(f"{how} database {r.database} from {source} ({r.tables} tables{data}{extra}, {r.seconds:.1f}s)")


@cli.command("dump-and-restore")
@setting_option("source", "--from", metavar="ENV")
@setting_option("mode", "--mode")
@jobs_option
@setting_option("restore_owner", "--owner", metavar="ROLE")
@click.option("--keep-dump/--remove-dump", default=True, help="Keep the dump file in dumps/ (default) or remove it. With masking rules it is always removed.")
@setting_option("mask", "--mask/--no-mask", default=None)
@confirm_option
@pass_ctx
def dump_and_restore_cmd(c: Ctx, keep_dump: bool) -> None:
    """Copy an environment's data into the local database safely (refused when the target is protected).

    With masking rules ([tool.dbtasks.masking] or DBTASKS_MASKING_FILE), the
    rows are masked inside the scratch database before it is swapped in, and
    the raw dump is deleted as soon as the scratch restore is done. MASK=0
    (--no-mask) skips the masking after the local database's name is typed
    or given with --confirm.
    """
    from dbtasks.data.restore import dump_and_restore

    s = c.settings
    r = _with_bars(dump_and_restore, s, s.source or "", s.mode, s.jobs, s.restore_owner, keep_dump, confirm=s.confirm, ask=_ask(), say=_say)
    if r.dump is not None:
        if r.masked is not None:
            removed = ", deleted as soon as the scratch restore was done (it held unmasked rows)"
        else:
            removed = "" if keep_dump else ", removed after the restore"
        echo(f"dumped {s.source} to {shown_path(r.dump.path)} ({human_bytes(r.dump.size)})" + removed)
    if r.masked is not None:
        for note in r.masked.notes:
            echo(f"note: {note}", err=True)
        echo(f"masked {r.masked.columns} column(s) in {len(r.masked.tables)} table(s) before the swap; no unmasked row reached {s.database_name}")
    elif r.unmasked:
        echo(f"warning: {names.given('MASK=0', '--no-mask')}: the rows of {s.source} were copied unmasked", err=True)
    _print_restore(r)


@cli.command("backup-db")
@setting_option("backup_dir", "--dir", metavar="DIR")
@setting_option("keep", "--keep", type=click.IntRange(1, None))
@pass_ctx
def backup_db_cmd(c: Ctx) -> None:
    """Write a timestamped compressed backup, verify it, and keep only the newest N."""
    from dbtasks.data.backup import backup_db

    s = c.settings
    r = _with_bars(backup_db, s, None, s.keep)
    echo(f"backup {shown_path(r.dump.path)} ({human_bytes(r.dump.size)}, verified: {r.entries} entries)")
    for path in r.deleted:
        echo(f"deleted old backup {shown_path(path)}")
    echo(f"{len(r.kept)} backup(s) kept")


def _store_script(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(Ctx).overrides["script"] = value


@cli.command("run-script")
@click.argument("script", required=False, expose_value=False, callback=_store_script)
@setting_option("dry_run", "--dry-run")
@confirm_option
@pass_ctx
def run_script_cmd(c: Ctx) -> None:
    """Run a backfill script's main(session) or main(connection) against the database (make: SCRIPT=path)."""
    from dbtasks.data.scripts import run_script

    s = c.settings
    r = _with_bars(run_script, s, s.script, s.confirm, _ask(), dry_run=s.dry_run)
    if r.result is not None:
        echo(str(r.result))
    echo(f"{'dry run of ' if s.dry_run else 'ran '}{shown_path(r.path)} on {s.database_name} in {r.seconds:.1f}s")


@cli.command("cleanup")
@setting_option("older_than", "--older-than", metavar="AGE")
@setting_option("apply", "--apply")
@setting_option("all_rows", "--all-rows")
@setting_option("cleanup_batch_size", "--batch-size", type=click.IntRange(1, None))
@confirm_option
@pass_ctx
def cleanup_cmd(c: Ctx) -> None:
    """Delete rows past the retention policies, children before parents, in batches (dry run unless APPLY=1)."""
    from dbtasks.data.cleanup import cleanup

    s = c.settings
    r = _with_bars(cleanup, s, s.older_than, s.apply, confirm=s.confirm, ask=_ask(), all_rows=s.all_rows)
    for step in r.steps:
        cutoff = r.cutoffs.get(step.table)
        when = f"; cutoff {cutoff:%Y-%m-%d %H:%M:%S %Z}".rstrip() if cutoff else ""
        echo(f"{'deleted' if r.applied else 'would delete'} {step.rows:>9} {step.table}  keeps {step.kept}  ({step.reason}{when})")
    if r.applied:
        echo(f"deleted {r.total} row(s) in {r.seconds:.1f}s")
    else:
        echo(f"dry run: {r.total} row(s) would be deleted; run with APPLY=1 (--apply) to delete them")


# -- schema docs: diagram.mmd, schema.sql, diagram.svg -------------------------

DOCS_OPTIONS = (
    setting_option("from_database", "--from-database"),
    setting_option("docs_dir", "--output-dir", metavar="DIR"),
    setting_option("diagram_schemas", "--schema", metavar="NAME"),
    setting_option("diagram_include", "--include", metavar="PATTERN"),
    setting_option("diagram_exclude", "--exclude", metavar="PATTERN"),
    setting_option("diagram_alembic_version", "--alembic-version/--no-alembic-version"),
    setting_option("diagram_owners", "--owners/--no-owners"),
    setting_option("diagram_privileges", "--privileges/--no-privileges"),
)


def _with(options, func):
    for option in reversed(options):
        func = option(func)
    return func


@cli.command("regenerate-db-diagram")
@lambda f: _with(DOCS_OPTIONS, f)
@setting_option("diagram_svg", "--svg/--no-svg")
@pass_ctx
def regenerate_db_diagram_cmd(c: Ctx) -> None:
    """Write docs/database/diagram.mmd (Mermaid ER diagram), schema.sql and diagram.svg from the migrations at head.

    The schema comes from a scratch database migrated to head on the
    configured server (or, with --from-database, from the database itself),
    read from pg_catalog; schema.sql is a normalized pg_dump --schema-only.
    The output is sorted and free of timestamps: running it twice gives the
    same bytes. diagram.svg needs Graphviz (apt-get install graphviz).

    The project's README.md gets the diagram too when it marks a place for
    it with these two lines: what is between them becomes diagram.mmd in a
    ```mermaid block, and nothing else in the README changes (no markers, no
    change). check-db-docs reports a marked block that is stale.

    \b
        <!-- dbtasks:diagram:begin -->
        <!-- dbtasks:diagram:end -->
    """
    from dbtasks import diagram

    s = c.settings
    result = diagram.regenerate_db_diagram(s, from_database=s.from_database)
    source = s.database_name if s.from_database else "the migrations at head"
    echo(f"drew {result.tables} tables and {result.relationships} relationships from {source}")
    for f in result.files:
        echo(f"{f.status:<9} {shown_path(f.path)}")
    for note in result.notes:
        echo(f"note: {note}", err=True)


# -- migration guardrails: one verb per registered check, and `check` ----------------


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
    """Print check results; exit 1 when any check failed or could not run.

    Verdicts are coloured at a terminal (ok green, FAILED red, not-run yellow).
    """
    from dbtasks.formatting import VERDICT_ROLES, style

    for result in results:  # notes on stderr, findings last on stdout, so nothing buries them
        for note in result.notes:
            echo(f"note: {result.check}: {note}", err=True)
    if fmt == "json":
        echo(json.dumps([f.as_dict() for r in results for f in r.findings], indent=2))
        for r in results:
            if r.blocked:
                echo(f"error: {r.check} could not run: {r.skipped}", err=True)
    else:
        for result in results:
            for finding in result.findings:
                for line in _finding_lines(finding):
                    echo(line)
        if summary:
            echo("")
            echo(f"{'check':<10} {'result':<8} {'errors':>6} {'warnings':>8} {'seconds':>8}")
            for r in results:
                warnings = len(r.findings) - len(r.errors)
                verdict = style(f"{r.verdict:<8}", VERDICT_ROLES.get(r.verdict, ""))  # padded first: codes take no room
                echo(f"{r.check:<10} {verdict} {len(r.errors):>6} {warnings:>8} {r.seconds:>8.2f}" + (f"  ({r.skipped})" if r.skipped else ""))
            failed = [r.check for r in results if not r.ok]
            errors = sum(len(r.errors) for r in results)
            warnings = sum(len(r.findings) for r in results) - errors
            verdict = style("FAILED: " + ", ".join(failed), "failed") if failed else style("ok", "ok")
            echo(f"{verdict}: {errors} error(s), {warnings} warning(s) in {sum(r.seconds for r in results):.1f}s")
        else:
            for r in results:
                if r.blocked:
                    echo(f"{r.check}: {style('not run', 'not-run')} ({r.skipped})")
                elif r.skipped:
                    echo(f"{r.check}: {style('skipped', 'skipped')} ({r.skipped})")
                elif r.ok:
                    echo(f"{r.check}: {style('ok', 'ok')}" + (f" ({len(r.findings)} warning(s))" if r.findings else ""))
    if not all(r.ok for r in results):
        sys.exit(EXIT_FINDINGS)


FORMAT_OPTION = setting_option("output_format", "--format")
CHECK_OPTIONS = {
    "since": setting_option("since", "--since", metavar="REF"),
    "all_revisions": setting_option("all_revisions", "--all"),
}


def _check_command(check) -> click.Command:
    from dbtasks.checks.runner import run_check

    @pass_ctx
    def command(c: Ctx) -> None:
        _report([run_check(c.settings, check.name)], c.settings.output_format)

    command.__doc__ = f"{check.help}.\n\n{check.description}" if check.description else check.help
    options = [FORMAT_OPTION, *(DOCS_OPTIONS if check.name == "docs" else ()), *(CHECK_OPTIONS[o] for o in check.options)]
    return click.command(check.verb)(_with(options, command))


@cli.command("check")
@CHECK_OPTIONS["since"]
@CHECK_OPTIONS["all_revisions"]
@FORMAT_OPTION
@pass_ctx
def check_cmd(c: Ctx) -> None:
    """Run every migration guardrail (heads, ledger, lint, roundtrip, drift, rehearse, masking, docs) and print one summary table.

    Works on any Alembic project: dbtasks -c path/to/alembic.ini
    --database-url URL check. Scratch databases are created on that server
    and dropped; the database itself is not touched.
    """
    from dbtasks.checks.runner import run_checks

    fmt = c.settings.output_format
    # Progress only for a person at a terminal: in CI and in pipes an error stays one line.
    announce = (lambda name: echo(f"running {name} ...", err=True)) if fmt == "text" and sys.stderr.isatty() else None
    _report(run_checks(c.settings, announce=announce), fmt, summary=True)


@cli.command("rehearse-prod")
@setting_option("source", "--from", metavar="ENV", help="Environment to copy (default prod).")
@setting_option("reuse", "--reuse", help="Rehearse on the copy the last run kept instead of copying FROM again.")
@setting_option("rows", "--rows", type=click.IntRange(1, None), help="Rehearse on this many generated rows per table instead of a copy of FROM.")
@setting_option("output_format", "--format", help="text (a table per revision) or json (the whole report).")
@pass_ctx
def rehearse_prod_cmd(c: Ctx) -> None:
    """Apply the pending revisions one at a time to a copy of production and report, per revision, its locks, rewrites and slowest statements.

    FROM=prod (the default) is copied into <db>_rehearse_prod on the local
    server (kept for REUSE=1; a clone of it is migrated); ROWS=n rehearses on
    generated rows instead. Exit 1 when a revision holds ACCESS EXCLUSIVE on
    a table longer than DBTASKS_REHEARSE_LOCK_THRESHOLD or rewrites a table
    of DBTASKS_REHEARSE_REWRITE_ROWS rows or more.
    """
    from dbtasks.rehearse_prod import lines, rehearse_prod

    s = c.settings
    report = _with_bars(rehearse_prod, s, s.source, s.reuse, s.rows)
    for note in report.notes:
        echo(f"note: rehearse-prod: {note}", err=True)
    if s.output_format == "json":
        echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in lines(report):
            echo(line)
        if report.findings:
            echo("")
        for finding in report.findings:
            for line in _finding_lines(finding):
                echo(line)
    if report.findings:
        sys.exit(EXIT_FINDINGS)


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
