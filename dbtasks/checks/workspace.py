"""What every check shares: the project opened once, and the scratch databases of one run.

A :class:`Workspace` loads the Alembic configuration and the revision files
once per run, so ``dbtasks check`` imports each revision file a single time
however many checks step through the history. Migrations run through the
project's own env.py (so other people's projects behave as they do in
production), with the scratch database's URL in ``sqlalchemy.url`` and its
connection in ``config.attributes["connection"]``
(:func:`dbtasks.migrations.run_env`).

Scratch databases made with :meth:`Workspace.scratch` live until the
workspace closes, so one check can leave a database at head for the next
(``roundtrip`` walks the whole history and ``drift`` then compares the models
on the same database instead of migrating again).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable

from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy.engine import URL

from dbtasks import database
from dbtasks.config import Settings, shown_path
from dbtasks.errors import DbtasksError, UsageError
from dbtasks.migrations import alembic_config, env_py_failed, revisions_at, run_env, translate_errors, upgrade_scratch
from dbtasks.safety import scratch_home


class Workspace:
    """An Alembic project opened once: config, revision files, the run's scratch databases."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.config = alembic_config(settings, quiet=True)  # a missing alembic.ini is a usage error
        self._script: ScriptDirectory | None = None
        self._ordered: list[Script] | None = None
        self._stack = contextlib.ExitStack()
        self.at_head: URL | None = None  # a scratch database a check left at head, for the next one
        self.redirected: list[str] = []
        self.env_failed: str | None = None  # the check during which env.py failed
        self.target_metadata: list = []  # env.py's target_metadata, as drift saw it  # databases env.py asked for and was given a scratch database instead
        self._home: Settings | None = None

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    # -- the history ---------------------------------------------------------

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            with translate_errors(self.settings):
                self._script = ScriptDirectory.from_config(self.config)
        return self._script

    def revisions(self) -> list[Script]:
        """Every revision, parents before children (imports each file once)."""
        if self._ordered is None:
            with translate_errors(self.settings):
                self._ordered = list(reversed(list(self.script.walk_revisions())))
        return self._ordered

    def load_error(self) -> str | None:
        """Why the history cannot be loaded, or None when it can."""
        try:
            self.revisions()
        except DbtasksError as exc:
            return str(exc)
        return None

    def get(self, revision: str) -> Script:
        with translate_errors(self.settings):
            script = self.script.get_revision(revision)
        if script is None:
            raise UsageError(f"unknown revision {revision!r}")
        return script

    def heads(self) -> list[str]:
        with translate_errors(self.settings):
            return sorted(self.script.get_heads())

    def ancestors(self, revision: str) -> set[str]:
        """``revision`` and every revision below it."""
        with translate_errors(self.settings):
            return {s.revision for s in self.script.iterate_revisions(revision, "base")}

    relpath = staticmethod(shown_path)

    # -- scratch databases ---------------------------------------------------

    @property
    def home(self) -> Settings:
        """Where scratch databases go: the settings' server, never a protected one (:func:`dbtasks.safety.scratch_home`)."""
        if self._home is None:
            self._home = scratch_home(self.settings, "the checks' scratch databases")
        return self._home

    def scratch(self, template: str | None = None) -> URL:
        """A throwaway database on the settings' server (or, for a protected target, another one), dropped when the workspace closes."""
        return self._stack.enter_context(
            database.scratch(self.home, template, "dbtasks_check", why="the checks create scratch databases")
        )

    def database_at_head(self) -> URL:
        """A scratch database at head: the one a check left there, else a new one."""
        if self.at_head is None:
            url = self.scratch()
            self.upgrade(url, "heads")
            self.at_head = url
        return self.at_head

    # -- running migrations --------------------------------------------------

    def run(self, url: URL, steps: Callable[[Any, MigrationContext], Iterable[Any]], **env_kwargs: Any) -> None:
        """Run env.py once on ``url``; ``steps(heads, context)`` yields the migration steps."""
        self._collect(run_env(self.settings, url, steps, self.script, **env_kwargs))

    def _collect(self, report) -> None:
        for asked in report.redirected:
            if asked not in self.redirected:
                self.redirected.append(asked)

    def upgrade(self, url: URL, target: str = "heads") -> None:
        self._collect(upgrade_scratch(self.settings, url, target, self.script))

    def current(self, url: URL) -> list[str]:
        with database.connect(url) as conn:
            return revisions_at(conn)

    def render_sql(self, start: str | None, end: str) -> str:
        """The SQL of ``start:end`` in Alembic's offline mode (no database needed)."""
        import io

        from alembic.runtime.environment import EnvironmentContext

        buffer = io.StringIO()
        config = alembic_config(self.settings, quiet=True)
        config.output_buffer = buffer
        started: list[bool] = []

        def steps(rev, context):
            started.append(True)
            return self.script._upgrade_revs(end, start)

        try:
            with translate_errors(self.settings):
                with EnvironmentContext(config, self.script, fn=steps, as_sql=True, starting_rev=start, destination_rev=end):
                    self.script.run_env()
        except Exception as exc:  # noqa: BLE001 - before the first step, the culprit is env.py
            if started:
                raise
            raise env_py_failed(self.script, exc) from None
        return buffer.getvalue()
