"""Settings: one object, one place for every precedence rule.

Each setting is resolved, first match wins, from:

1. a command-line flag (passed to :func:`load_settings` as ``overrides``);
2. its environment variable (``DATABASE_URL``, ``DBTASKS_PG_PORT``, ...);
3. the same variable in the project's ``.env`` file;
4. the key of the same name in ``[tool.dbtasks]`` of ``pyproject.toml``;
5. the default written in :data:`SETTINGS`.

``--env NAME`` (``ENV=NAME`` for make and just) replaces the database URL with
``NAME_DATABASE_URL`` read from the environment or ``.env``. ``--prod`` means
``--env prod``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dbtasks.errors import ConfigError, register_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _csv(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _int(value: Any) -> int:
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _str(value: Any) -> str:
    return str(value)


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one setting is named, read and defaulted (the README table comes from here)."""

    name: str
    variable: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "DATABASE_URL", None, _str,
            "Database to work on. Unset: the local or docker server's database."),
    Setting("env", "DBTASKS_ENV", None, _str,
            "Environment name; reads NAME_DATABASE_URL (make/just: ENV=NAME)."),
    Setting("protected_envs", "DBTASKS_PROTECTED_ENVS", ("prod", "production", "staging"), _csv,
            "Environments where destructive verbs need --confirm=<dbname>."),
    Setting("alembic_ini", "DBTASKS_ALEMBIC_INI", "alembic.ini", _str,
            "The Alembic configuration file (-c/--config)."),
    Setting("db_server", "DB_SERVER", None, _str,
            "local, docker or external. Unset: external when DATABASE_URL is set, else local."),
    Setting("pg_host", "DBTASKS_PG_HOST", "127.0.0.1", _str,
            "Address the local or docker server listens on."),
    Setting("pg_port", "DBTASKS_PG_PORT", 6545, _int,
            "Port of the local or docker server."),
    Setting("pg_data", "DBTASKS_PG_DATA", "data/postgres/pgdata", _str,
            "Data directory of the local server."),
    Setting("pg_bin", "PG_BIN", None, _str,
            "Directory of PostgreSQL binaries. Unset: pg_config --bindir, else the pgserver wheel."),
    Setting("pg_user", "DBTASKS_PG_USER", "postgres", _str,
            "Database superuser of the local or docker server."),
    Setting("pg_password", "DBTASKS_PG_PASSWORD", "postgres", _str,
            "Password of that user (never printed)."),
    Setting("db_name", "DBTASKS_DB_NAME", "app", _str,
            "Database name on the local or docker server."),
    Setting("server_user", "DBTASKS_SERVER_USER", "postgres", _str,
            "OS user that runs the local server when dbtasks runs as root."),
    Setting("start_timeout", "DBTASKS_START_TIMEOUT", 30, _int,
            "Seconds to wait for the server to accept connections."),
    Setting("lock_timeout", "DBTASKS_LOCK_TIMEOUT", "5s", _str,
            "PostgreSQL lock_timeout while migrating."),
    Setting("seed", "DBTASKS_SEED", "app.seed:seed", _str,
            "module:function that loads demo data (db-seed)."),
    Setting("compose_file", "DBTASKS_COMPOSE_FILE", "docker-compose.yml", _str,
            "Compose file of the docker backend."),
    Setting("compose_service", "DBTASKS_COMPOSE_SERVICE", "postgres", _str,
            "Service name of the database in the compose file."),
    # -- data workflows (issue 5) --
    Setting("dump_dir", "DBTASKS_DUMP_DIR", "dumps", _str,
            "Directory of dump-db and dump-and-restore files."),
    Setting("dump_format", "DBTASKS_DUMP_FORMAT", "custom", _str,
            "custom (one file) or directory (parallel dump with dump_jobs)."),
    Setting("dump_jobs", "DBTASKS_DUMP_JOBS", 2, _int,
            "Parallel pg_dump jobs for the directory format."),
    Setting("dump_compress", "DBTASKS_DUMP_COMPRESS", 6, _int,
            "Compression level of dumps and backups (0-9)."),
    Setting("dump_exclude_data", "DBTASKS_DUMP_EXCLUDE_DATA", (), _csv,
            "Table patterns whose rows are left out of dumps, e.g. public.logs,public.emails."),
    Setting("restore_jobs", "DBTASKS_RESTORE_JOBS", 2, _int,
            "Parallel pg_restore jobs."),
    Setting("restore_owner", "DBTASKS_RESTORE_OWNER", None, _str,
            "Role that owns everything a restore creates. Unset: the connecting user."),
    Setting("backup_dir", "DBTASKS_BACKUP_DIR", "backups", _str,
            "Directory of backup-db files."),
    Setting("backup_keep", "DBTASKS_BACKUP_KEEP", 7, _int,
            "How many verified backups backup-db keeps."),
)

SETTING_BY_NAME = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings. Build it with :func:`load_settings`."""

    project_dir: Path
    database_url: str | None = None
    env: str | None = None
    protected_envs: tuple[str, ...] = ("prod", "production", "staging")
    alembic_ini: str = "alembic.ini"
    db_server: str | None = None
    pg_host: str = "127.0.0.1"
    pg_port: int = 6545
    pg_data: str = "data/postgres/pgdata"
    pg_bin: str | None = None
    pg_user: str = "postgres"
    pg_password: str = "postgres"
    db_name: str = "app"
    server_user: str = "postgres"
    start_timeout: int = 30
    lock_timeout: str = "5s"
    seed: str = "app.seed:seed"
    compose_file: str = "docker-compose.yml"
    compose_service: str = "postgres"
    dump_dir: str = "dumps"
    dump_format: str = "custom"
    dump_jobs: int = 2
    dump_compress: int = 6
    dump_exclude_data: tuple[str, ...] = ()
    restore_jobs: int = 2
    restore_owner: str | None = None
    backup_dir: str = "backups"
    backup_keep: int = 7
    # Where each value came from: "flag", "environment", ".env", "pyproject", "default".
    sources: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    # Extra keys of [tool.dbtasks] for the other modules (checks, data, diagram).
    extra: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    # -- derived values --------------------------------------------------

    @property
    def server_kind(self) -> str:
        """``local``, ``docker`` or ``external``."""
        if self.db_server:
            return self.db_server
        return "external" if self.database_url else "local"

    @property
    def url(self) -> URL:
        """The database URL as a SQLAlchemy URL object."""
        if self.database_url:
            return parse_url(self.database_url, self._url_origin())
        return URL.create(
            "postgresql+psycopg2",
            username=self.pg_user,
            password=self.pg_password,
            host=self.pg_host,
            port=self.pg_port,
            database=self.db_name,
        )

    @property
    def database_name(self) -> str:
        return self.url.database or ""

    @property
    def is_protected(self) -> bool:
        """True when the selected environment is listed as protected."""
        return bool(self.env) and self.env.lower() in {e.lower() for e in self.protected_envs}

    def path(self, value: str) -> Path:
        """Resolve a path setting relative to the project directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.project_dir / p

    @property
    def alembic_ini_path(self) -> Path:
        return self.path(self.alembic_ini)

    @property
    def data_dir(self) -> Path:
        return self.path(self.pg_data)

    def _url_origin(self) -> str:
        if self.env:
            return env_variable(self.env)
        return "DATABASE_URL" if self.sources.get("database_url") != "flag" else "--database-url"

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some values replaced (used by tests and scratch databases)."""
        return dataclasses.replace(self, **changes)


def env_variable(env: str) -> str:
    """The variable that holds the URL of environment ``env``: ``prod`` -> ``PROD_DATABASE_URL``."""
    return re.sub(r"[^A-Z0-9]", "_", env.upper()) + "_DATABASE_URL"


def parse_url(text: str, origin: str = "DATABASE_URL") -> URL:
    """Parse a PostgreSQL URL or raise a one-line :class:`ConfigError`.

    ``postgres://`` (Heroku style) is accepted; a bare ``postgresql://`` gets the
    psycopg2 driver.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{origin} is empty", "set it to postgresql://user:password@host:port/dbname")
    text = text.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"{origin} is not a valid database URL",
            "expected postgresql://user:password@host:port/dbname",
        ) from exc
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"{origin} must point at PostgreSQL, not {url.get_backend_name()!r}",
            "expected postgresql://user:password@host:port/dbname",
        )
    if not url.database:
        raise ConfigError(f"{origin} names no database", "append /dbname to the URL")
    try:
        url.port  # noqa: B018 - parsing the port raises for "host:abc"
    except ValueError as exc:  # pragma: no cover - make_url already checks
        raise ConfigError(f"{origin} has an invalid port", "use host:5432") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    register_secret(url.password, url.username)
    return url


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding pyproject.toml or alembic.ini."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file() or (candidate / "alembic.ini").is_file():
            return candidate
    return start


def _read_pyproject(project_dir: Path) -> dict:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", "fix the file") from exc
    return dict(data.get("tool", {}).get("dbtasks", {}))


def load_settings(
    overrides: dict[str, Any] | None = None,
    project_dir: Path | str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve every setting by the precedence in this module's docstring.

    ``overrides`` holds flag values (``None`` means "not given"). Pass
    ``environ`` to read variables from a mapping other than ``os.environ``.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(SETTING_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    project = Path(project_dir).resolve() if project_dir else find_project_dir()
    environ = dict(os.environ if environ is None else environ)
    dotenv_path = project / ".env"
    dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path.is_file() else {}
    pyproject = _read_pyproject(project)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        for source, mapping, key in (
            ("flag", overrides, setting.name),
            ("environment", environ, setting.variable),
            (".env", dotenv, setting.variable),
            ("pyproject", pyproject, setting.name),
        ):
            if key in mapping and mapping[key] not in ("",):
                raw = mapping[key]
                try:
                    values[setting.name] = setting.parse(raw)
                except (TypeError, ValueError) as exc:
                    origin = {"flag": f"--{setting.name.replace('_', '-')}", "pyproject": f"[tool.dbtasks] {setting.name}"}.get(source, setting.variable)
                    raise ConfigError(f"{origin} has an invalid value {raw!r}", setting.help) from exc
                sources[setting.name] = source
                break
        else:
            values[setting.name] = setting.default
            sources[setting.name] = "default"

    env = values.get("env")
    if env:
        variable = env_variable(env)
        url = environ.get(variable) or dotenv.get(variable)
        if not url:
            raise ConfigError(
                f"environment {env!r} is not configured",
                f"set {variable} in the environment or in .env",
            )
        values["database_url"] = url
        sources["database_url"] = variable
        if sources.get("db_server") == "default":
            values["db_server"] = "external"

    if values["db_server"] not in (None, "local", "docker", "external"):
        raise ConfigError(
            f"DB_SERVER={values['db_server']!r} is not a server kind",
            "use local, docker or external",
        )

    extra = {k: v for k, v in pyproject.items() if k not in SETTING_BY_NAME}
    settings = Settings(project_dir=project, sources=sources, extra=extra, **values)
    register_secret(settings.pg_password, settings.pg_user)
    # Validate the URL now so a malformed one fails before anything runs.
    settings.url  # noqa: B018
    return settings
