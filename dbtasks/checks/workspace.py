"""What every check shares: the project opened once, options, scratch databases, steps.

A :class:`Workspace` loads the Alembic configuration and the revision files
once per run, so ``dbtasks check`` imports each revision file a single time
however many checks step through the history. Migrations run through the
project's own env.py (so other people's projects behave as they do in
production), with the scratch database's URL in ``sqlalchemy.url`` and its
connection in ``config.attributes["connection"]``.

Check options (``[tool.dbtasks]`` keys in pyproject.toml, each overridable by
its environment variable) are read by :class:`CheckOptions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import URL

from dbtasks.config import Settings, _csv
from dbtasks.database import connect, scratch_database
from dbtasks.errors import ConfigError, DbtasksError
from dbtasks.migrations import alembic_config, translate_errors

Progress = Callable[[str], None]

# Style rules of squawk that say nothing about locking or data safety; the
# lock_timeout rule is excluded because dbtasks sets lock_timeout per session.
DEFAULT_SQUAWK_EXCLUDE = (
    "require-lock-timeout",
    "require-statement-timeout",
    "prefer-robust-stmts",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamptz",
)


@dataclasses.dataclass(frozen=True)
class Option:
    """One check option: its ``[tool.dbtasks]`` key, variable, default and meaning."""

    name: str
    variable: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


def _optional_str(value: Any) -> str | None:
    text = str(value).strip()
    return text or None


def _stripped(value: Any) -> str:
    return str(value).strip()


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


OPTIONS: tuple[Option, ...] = (
    Option("lint_since", "DBTASKS_LINT_SINCE", "origin/main", _stripped,
           "Git base: lint and rehearse only revisions added or changed since it (falls back to main, then to all)."),
    Option("lint_allowed_imports", "DBTASKS_LINT_ALLOWED_IMPORTS", ("alembic_postgresql_enum",), _csv,
           "Packages a revision may import besides the standard library, alembic and sqlalchemy."),
    Option("lint_squawk_exclude", "DBTASKS_LINT_SQUAWK_EXCLUDE", DEFAULT_SQUAWK_EXCLUDE, _csv,
           "squawk rules that are not reported (style rules by default)."),
    Option("lint_pg_version", "DBTASKS_LINT_PG_VERSION", "16", _optional_str,
           "PostgreSQL version squawk judges the SQL for (e.g. 13, 16.2)."),
    Option("roundtrip_irreversible", "DBTASKS_ROUNDTRIP_IRREVERSIBLE", (), _csv,
           "Revisions whose downgrade is not tested (skipped with a warning)."),
    Option("roundtrip_min_revision", "DBTASKS_ROUNDTRIP_MIN_REVISION", None, _optional_str,
           "Oldest revision whose downgrade is tested; older ones are only upgraded."),
    Option("rehearse_rows", "DBTASKS_REHEARSE_ROWS", 20, _positive_int,
           "Generated rows per table before the new revisions are applied."),
)


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """Options of the checks: environment variable > ``[tool.dbtasks]`` key > default."""

    lint_since: str = "origin/main"
    lint_allowed_imports: tuple[str, ...] = ("alembic_postgresql_enum",)
    lint_squawk_exclude: tuple[str, ...] = DEFAULT_SQUAWK_EXCLUDE
    lint_pg_version: str | None = "16"
    roundtrip_irreversible: tuple[str, ...] = ()
    roundtrip_min_revision: str | None = None
    rehearse_rows: int = 20
    # True when lint_since was not configured (so a missing ref may fall back).
    since_is_default: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, environ: dict[str, str] | None = None) -> "CheckOptions":
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        configured: set[str] = set()
        for option in OPTIONS:
            for origin, mapping, key in (
                (option.variable, environ, option.variable),
                (f"[tool.dbtasks] {option.name}", settings.extra, option.name),
            ):
                if key in mapping and mapping[key] not in ("", None):
                    try:
                        values[option.name] = option.parse(mapping[key])
                    except (TypeError, ValueError) as exc:
                        raise ConfigError(f"{origin} has an invalid value {mapping[key]!r}", option.help) from exc
                    configured.add(option.name)
                    break
            else:
                values[option.name] = option.default
        return cls(**values, since_is_default="lint_since" not in configured)


# -- the project, opened once ------------------------------------------------------


def url_text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


class Workspace:
    """An Alembic project opened once: config, revision files, options, scratch databases."""

    def __init__(self, settings: Settings, options: CheckOptions | None = None):
        self.settings = settings
        self.options = options or CheckOptions.from_settings(settings)
        self.config = alembic_config(settings, quiet=True)
        with translate_errors(settings):
            self.script = ScriptDirectory.from_config(self.config)
        self._ordered: list[Script] | None = None

    # -- the history ---------------------------------------------------------

    def revisions(self) -> list[Script]:
        """Every revision, parents before children (imports each file once)."""
        if self._ordered is None:
            with translate_errors(self.settings):
                self._ordered = list(reversed(list(self.script.walk_revisions())))
        return self._ordered

    def get(self, revision: str) -> Script:
        with translate_errors(self.settings):
            script = self.script.get_revision(revision)
        if script is None:
            raise DbtasksError(f"unknown revision {revision!r}")
        return script

    def heads(self) -> list[str]:
        with translate_errors(self.settings):
            return sorted(self.script.get_heads())

    def relpath(self, path: str | Path) -> str:
        try:
            return os.path.relpath(path)
        except ValueError:  # pragma: no cover - other drive on Windows
            return str(path)

    # -- scratch databases ---------------------------------------------------

    def scratch(self, template: str | None = None) -> contextlib.AbstractContextManager[URL]:
        """A throwaway database on the settings' server, dropped on exit."""
        from dbtasks.server import start_hint

        return scratch_database(self.settings.url, template, "dbtasks_check", start_hint(self.settings), why="the checks create scratch databases")

    def settings_for(self, url: URL) -> Settings:
        return self.settings.with_(database_url=url_text(url))

    # -- running migrations --------------------------------------------------

    def run(self, url: URL, steps: Callable[[Any, MigrationContext], Iterable[Any]], **env_kwargs: Any) -> None:
        """Run env.py once on ``url``; ``steps(heads, context)`` yields the migration steps."""
        settings = self.settings_for(url)
        with connect(url) as conn:
            config = alembic_config(settings, connection=conn, quiet=True)
            with translate_errors(settings):
                with EnvironmentContext(config, self.script, fn=steps, as_sql=False, **env_kwargs):
                    self.script.run_env()
            if conn.in_transaction():
                conn.commit()

    def upgrade(self, url: URL, target: str = "heads") -> None:
        self.run(url, lambda rev, context: self.script._upgrade_revs(target, rev), destination_rev=target)

    def step(self, url: URL, revision: Script, upgrade: bool) -> None:
        """Apply exactly one revision's upgrade or downgrade."""
        self.run(url, lambda rev, context: [RevisionStep(self.script.revision_map, revision, upgrade)])

    def current(self, url: URL) -> list[str]:
        with connect(url) as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())

    def render_sql(self, start: str | None, end: str) -> str:
        """The SQL of ``start:end`` in Alembic's offline mode (no database needed)."""
        import io

        buffer = io.StringIO()
        config = alembic_config(self.settings, quiet=True)
        config.output_buffer = buffer
        destination = end
        with translate_errors(self.settings):
            with EnvironmentContext(
                config,
                self.script,
                fn=lambda rev, context: self.script._upgrade_revs(destination, start),
                as_sql=True,
                starting_rev=start,
                destination_rev=destination,
            ):
                self.script.run_env()
        return buffer.getvalue()


def revision_ids(down: Any) -> tuple[str, ...]:
    """``down_revision`` as a tuple (None -> (), "a" -> ("a",))."""
    if not down:
        return ()
    if isinstance(down, (list, tuple)):
        return tuple(down)
    return (down,)
