"""The database server: a local cluster, docker compose, or an external URL.

``DB_SERVER=local`` (the default) keeps a PostgreSQL cluster in
``data/postgres/pgdata`` listening on 127.0.0.1 at the project's port
(``pg_port``; by default derived from the project's path), run with ``pg_ctl``.
The cluster carries the project it belongs to in its postgresql.conf
(``dbtasks.project``), so a project never works on another project's server
(:func:`dbtasks.database.check_local_owner`). It runs with settings for a
disposable copy (:data:`LOCAL_TUNING`, in ``dbtasks.conf`` beside postgresql.conf,
rewritten at every start): restores skip WAL, commits do not wait for the
disk, fsync stays on.
Binaries come from ``PG_BIN``, else ``pg_config --bindir``, else the pgserver
wheel's bundled PostgreSQL. PostgreSQL refuses to run as root, so when dbtasks
runs as root the cluster belongs to, and runs as, an unprivileged OS user
(``DBTASKS_SERVER_USER``, default ``postgres``).

``DB_SERVER=docker`` drives the ``postgres`` service of docker-compose.yml, and
``DATABASE_URL`` alone means an external server that dbtasks does not manage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import hashlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks import names
from dbtasks.clients import has_server_binaries, pg_config_bindir, pgserver_bin_dir
from dbtasks.config import Settings
from dbtasks.database import (
    PROJECT_MARK,
    DatabaseMissing,
    DatabaseNotRunning,
    admin_url,
    check_local_owner,
    connect,
    connection,
    create_database,
    database_exists,
    describe,
    pg_port_remedy,
    quote_ident,
    served_project,
    start_hint,
)
from sqlalchemy.exc import DBAPIError

from dbtasks.errors import (
    AuthenticationFailed,
    ConfigError,
    DbtasksError,
    PortInUse,
    ServerError,
    VersionMismatch,
    redact,
)

@dataclasses.dataclass
class ServerStatus:
    """What a lifecycle verb did or found."""

    kind: str
    running: bool
    url: URL
    detail: str = ""
    changed: bool = False

    def describe(self) -> str:
        return f"{self.kind} server {'running' if self.running else 'stopped'} at {describe(self.url)}" + (
            f" ({self.detail})" if self.detail else ""
        )


# -- binaries ---------------------------------------------------------------


def find_bin_dir(pg_bin: str | None) -> Path:
    """Where pg_ctl, initdb and postgres live: PG_BIN, pg_config --bindir, pgserver."""
    if pg_bin:
        path = Path(pg_bin).expanduser()
        if not has_server_binaries(path):
            raise ConfigError(f"PG_BIN={pg_bin} holds no pg_ctl, initdb and postgres", "point PG_BIN at a PostgreSQL bin directory")
        return path
    configured = pg_config_bindir()
    if configured and has_server_binaries(configured):
        return configured
    bundled = pgserver_bin_dir()
    if bundled:
        return bundled
    raise ConfigError(
        "no PostgreSQL server binaries found",
        "install dbtasks' server extra (pip install 'dbtasks[server]', or pipx inject dbtasks pgserver), set PG_BIN to a PostgreSQL bin directory, or set DATABASE_URL to use a server you have",
    )


def binary_major_version(bin_dir: Path) -> int:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ServerError(f"cannot tell the version of {bin_dir / 'postgres'} (it printed {out!r})")
    return int(match.group(1))


# -- helpers ----------------------------------------------------------------

# Where a cluster goes when the server's OS user cannot reach the clone.
RELOCATION_BASE = Path("/var/tmp")


def relocated_data_dir(settings: Settings, user: pwd.struct_passwd) -> Path:
    """The per-project data directory the server's OS user can reach.

    ``/var/tmp/dbtasks-<project>-<hash of the project path>-<user>/pgdata``:
    /var/tmp survives reboots (the cluster should too), the hash keeps two
    clones apart, and the name says whose it is.
    """
    project = settings.project_dir.resolve()
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", project.name)[:40] or "project"
    base = RELOCATION_BASE if RELOCATION_BASE.is_dir() else Path(tempfile.gettempdir())
    return base / f"dbtasks-{label}-{digest}-{user.pw_name}" / "pgdata"


def unreachable_parent(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory above ``path`` that ``user`` cannot enter, or None."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    for parent in reversed(path.parents):
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            allowed = st.st_mode & 0o100
        elif st.st_gid in groups:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            return parent
    return None



def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (possibly another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until_ready(url: URL, timeout: float, on_fail: Callable[[], str] | None = None) -> None:
    """Poll until the database at ``url`` accepts a connection, or raise."""
    deadline = time.monotonic() + timeout
    last: DbtasksError | None = None
    while time.monotonic() < deadline:
        try:
            with connect(url) as conn:
                conn.execute(sa.text("select 1"))
            return
        except DbtasksError as exc:
            last = exc
            time.sleep(0.25)
    tail = on_fail() if on_fail else ""
    raise ServerError(
        f"the server at {describe(url)} did not accept connections within {timeout:g}s ({last.message if last else 'no answer'})"
        + (f"; server log:\n{tail}" if tail else ""),
    )


def ensure_database(url: URL) -> bool:
    """Create the database of ``url`` if missing. Returns True when it was created."""
    if database_exists(url):
        return False
    create_database(url, url.database)
    return True


# -- local tuning -------------------------------------------------------------

# The local cluster holds a developer's disposable copy: losing the last commits
# in a crash is fine, a corrupt cluster is not (it would cost a volume-recreate
# and a fresh restore, and it fails later in confusing ways). So the settings
# trade durability of the last moments, never consistency:
LOCAL_TUNING = {
    # Skip WAL for data loaded into a table created or truncated in the same
    # transaction (what pg_restore does per table), and log less for index builds.
    "wal_level": "minimal",
    "max_wal_senders": "0",  # required by wal_level = minimal; nothing replicates a local copy
    # A crash loses the commits of the last few hundred ms, the data stays consistent.
    "synchronous_commit": "off",
    # Fewer checkpoints while a restore writes gigabytes.
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    # Deliberately on. With fsync = off a power loss or an OS crash (not just a
    # killed server) can leave the cluster silently corrupt: the WAL that recovery
    # replays was never on disk. full_page_writes = off risks torn pages in the
    # same way. Older dbtasks versions wrote both off; this file overrides them.
    "fsync": "on",
    "full_page_writes": "on",
}
TUNING_FILE = "dbtasks.conf"


def maintenance_work_mem_mb(total_bytes: int | None = None) -> int:
    """Memory per index build: 1/16 of the machine's RAM, within 64 MB - 1 GB.

    pg_restore -j N builds N indexes at once, each taking up to this much, so
    the bound keeps a restore on a small laptop from swapping.
    """
    if total_bytes is None:
        try:
            total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total_bytes = 4 * 1024**3
    return max(64, min(1024, total_bytes // 16 // 1024**2))


# -- backends ---------------------------------------------------------------


class Server:
    """Interface of the three backends."""

    kind = "?"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.url

    def start(self) -> ServerStatus:
        raise NotImplementedError

    def stop(self) -> ServerStatus:
        raise NotImplementedError

    def destroy(self) -> ServerStatus:
        raise NotImplementedError


class LocalServer(Server):
    """A cluster in a data directory of the project, run with pg_ctl."""

    kind = "local"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.port = settings.pg_port
        self.host = settings.pg_host
        self._bin_dir: Path | None = None
        self._where: tuple[Path, str] | None = None

    # where the cluster lives ---------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The data directory in use: the configured one, or the per-project one beside it."""
        return self._placement()[0]

    @property
    def relocation_note(self) -> str:
        """Why the cluster lives outside the configured directory ("" when it does not)."""
        return self._placement()[1]

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / (self.data_dir.name + ".log")

    def _placement(self) -> tuple[Path, str]:
        """Choose the data directory once, the same way for every verb.

        As root the server runs as another OS user, which may not be able to
        enter the clone (a clone in root's 0700 home). Rather than change the
        permissions of the user's directories, the cluster then lives in a
        per-project directory that user owns, :func:`relocated_data_dir`. Only
        the project's location moves (the default or pyproject.toml's): a
        DBTASKS_PG_DATA set in the environment, .env or a flag is kept (and an
        unreachable one is reported). A cluster found at either place
        stays where it is, so start, stop, status and volume-recreate agree
        even after permissions change.
        """
        if self._where is None:
            configured = self.settings.data_dir
            where = (configured, "")
            # pyproject.toml is shared by every clone, wherever it lies: only a
            # value of this machine (environment, .env, flag) is kept as given.
            user = self._os_user() if self.settings.sources.get("pg_data", "default") in ("default", "pyproject") else None
            if user is not None and not (configured / "PG_VERSION").is_file():
                moved = relocated_data_dir(self.settings, user)
                blocked = unreachable_parent(configured, user)
                if (moved / "PG_VERSION").is_file() or blocked is not None:
                    why = f"OS user {user.pw_name!r} cannot enter {blocked}" if blocked else "a cluster is there already"
                    where = (moved, f"data in {moved}, because {why}; set DBTASKS_PG_DATA to choose another place")
            self._where = where
        return self._where

    # binaries and OS user ----------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir(self.settings.pg_bin)
        return self._bin_dir

    def _os_user(self) -> pwd.struct_passwd | None:
        """The account that runs the server, or None to run as ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.settings.server_user)
        except KeyError:
            if self.settings.sources.get("server_user") == "default":
                # No postgres account (no PostgreSQL packages): any unprivileged one will do.
                with contextlib.suppress(KeyError):
                    return pwd.getpwnam("nobody")
            raise ConfigError(
                f"dbtasks runs as root, and PostgreSQL refuses root; the OS user {self.settings.server_user!r} that should run it does not exist",
                "create it (useradd --system postgres) or set DBTASKS_SERVER_USER to an unprivileged user",
            ) from None

    def _run(self, args: Sequence[str], check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        user = self._os_user()
        kwargs: dict = {"capture_output": True, "text": True, "timeout": timeout, "cwd": "/"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs["env"] = env
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            env["HOME"] = user.pw_dir if os.path.isdir(user.pw_dir) else "/"
        try:
            proc = subprocess.run([str(a) for a in args], **kwargs)
        except FileNotFoundError as exc:
            raise ConfigError(f"{args[0]} not found", "set PG_BIN to a PostgreSQL bin directory") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{Path(str(args[0])).name} did not finish within {timeout}s" + self._log_tail_suffix()) from exc
        if check and proc.returncode != 0:
            out = (proc.stderr or proc.stdout or "").strip()
            raise ServerError(f"{Path(str(args[0])).name} failed: {redact(out)}" + self._log_tail_suffix())
        return proc

    def _chown(self, path: Path) -> None:
        user = self._os_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _check_reachable(self) -> None:
        """As root, the server's user must be able to walk down to the data directory."""
        user = self._os_user()
        if user is None:
            return
        parent = unreachable_parent(self.data_dir, user)
        if parent is not None:
            raise ServerError(
                f"the server runs as OS user {user.pw_name!r}, which cannot enter {parent}",
                f"set DBTASKS_PG_DATA to a directory it can reach (or unset it: dbtasks then keeps the cluster under {RELOCATION_BASE})",
            )

    def _prepare_relocated(self) -> None:
        """Create the per-project directory, owned by the server's user, mode 700.

        It sits in a world-writable directory, so one that exists must be a real
        directory of that user, not a link or someone else's.
        """
        if not self.relocation_note:
            return
        user = self._os_user()
        home = self.data_dir.parent
        home.parent.mkdir(parents=True, exist_ok=True)
        try:
            home.mkdir(mode=0o700)
            self._chown(home)
        except FileExistsError:
            pass
        st = home.lstat()
        if not stat.S_ISDIR(st.st_mode) or (user is not None and st.st_uid != user.pw_uid):
            raise ServerError(
                f"{home} exists but is not a directory of OS user {user.pw_name if user else '?'}",
                "remove it, or set DBTASKS_PG_DATA to a directory of your choice",
            )
        home.chmod(0o700)

    # state -------------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))

    def _log_tail_suffix(self) -> str:
        tail = self.log_tail()
        return f"\nserver log ({self.log_file}):\n{tail}" if tail else ""

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def data_major_version(self) -> int:
        return int((self.data_dir / "PG_VERSION").read_text().strip().split(".")[0])

    def _pid_file(self) -> tuple[int, int] | None:
        """(pid, port) as postmaster.pid states them, or None without a readable file."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def running_pid_port(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid when that process is this cluster's server."""
        found = self._pid_file()
        if found is None:
            return None
        pid, port = found
        return found if pid_alive(pid) and self._is_our_postmaster(pid, port) else None

    def _is_our_postmaster(self, pid: int, port: int) -> bool:
        """True when ``pid`` is a postgres serving this data directory.

        A postmaster.pid outlives a killed server (kill -9, a container or
        machine restart), and its pid may since belong to anything: pid 1, a
        shell, another cluster's server. A postmaster works inside its data
        directory, so its cwd tells; where /proc is not there to ask, the
        port of the file must answer.
        """
        proc = Path("/proc") / str(pid)
        if not Path("/proc/self").exists():
            return port_in_use(self.host, port)
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return False  # gone meanwhile
        if not any(word in Path(argv0.split(":")[0]).name for word in ("postgres", "postmaster")):
            return False
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:  # another user's process: ask the port instead
            return port_in_use(self.host, port)
        with contextlib.suppress(OSError):
            return os.path.samefile(cwd, self.data_dir)
        return False

    def _move_stale_pid_file(self) -> str:
        """Move a postmaster.pid whose pid is not this cluster's server aside; say so ("" when none).

        PostgreSQL refuses to start while the file names a live process, so a
        stale file naming pid 1 would block the cluster forever.
        """
        found = self._pid_file()
        if found is None or not pid_alive(found[0]) or self.running_pid_port() is not None:
            return ""
        stale = self.data_dir / "postmaster.pid"
        aside = self.data_dir / "postmaster.pid.stale"
        stale.replace(aside)
        return f"moved a stale postmaster.pid aside to {aside} (its pid {found[0]} is not this cluster's server)"

    def check_version(self) -> None:
        if not self.initialized():
            return
        data_version = self.data_major_version()
        bin_version = binary_major_version(self.bin_dir)
        if data_version != bin_version:
            raise VersionMismatch(
                f"{self.data_dir} was created by PostgreSQL {data_version}, but the binaries in {self.bin_dir} are PostgreSQL {bin_version}",
                f"set PG_BIN to a PostgreSQL {data_version} bin directory, or run `{names.command('volume-recreate')}` to start afresh (this deletes the local data)",
            )

    # lifecycle ---------------------------------------------------------------

    def init_cluster(self) -> None:
        """initdb with password authentication over TCP and the configured superuser."""
        self._prepare_relocated()
        self._check_reachable()
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ServerError(
                f"{self.data_dir} exists but is not a PostgreSQL data directory",
                "move it away or set DBTASKS_PG_DATA to another directory",
            )
        for parent in reversed([self.data_dir, *self.data_dir.parents][:3]):
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
                self._chown(parent)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._chown(self.data_dir)
        with tempfile.NamedTemporaryFile("w", delete=False, prefix="dbtasks-pw-") as fh:
            fh.write(self.settings.pg_password + "\n")
            pwfile = Path(fh.name)
        try:
            pwfile.chmod(0o600)
            self._chown(pwfile)
            self._run([
                self.bin_dir / "initdb", "-D", self.data_dir, "-U", self.settings.pg_user,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--no-locale", "--no-instructions",
            ], timeout=120)
        except DbtasksError:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# written by dbtasks\n"
                f"listen_addresses = '{self.host}'\n"
                "unix_socket_directories = ''\n"
            )
        self.write_tuning()
        self.write_mark()

    # tuning ------------------------------------------------------------------

    def tuning(self) -> dict[str, str]:
        """The settings of :data:`LOCAL_TUNING`, with maintenance_work_mem sized to this machine."""
        return {**LOCAL_TUNING, "maintenance_work_mem": f"{maintenance_work_mem_mb()}MB"}

    def write_tuning(self) -> bool:
        """Write :data:`TUNING_FILE` and include it from postgresql.conf; True when either changed.

        The file is rewritten at every start, so a cluster made by an older
        dbtasks gets the current settings at its next start (wal_level and
        max_wal_senders need a restart; the others a reload). The include
        line is added once, at the end of postgresql.conf, so it overrides
        what older versions wrote above it (``fsync = off``); a line the user
        adds below it, or ``ALTER SYSTEM``, overrides the include in turn.
        """
        text = (
            "# Written by dbtasks at every start of the local server; edits here are lost.\n"
            "# Override a value with a line at the end of postgresql.conf or with ALTER SYSTEM.\n"
            + "".join(f"{k} = '{v}'\n" for k, v in self.tuning().items())
        )
        changed = False
        path = self.data_dir / TUNING_FILE
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            self._chown(path)
            changed = True
        conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{TUNING_FILE}'"
        if include not in conf.read_text().splitlines():
            # Appended in place, so the file keeps its owner (the server's OS user when we are root).
            with conf.open("a") as fh:
                fh.write(f"# settings for a disposable development server (dbtasks)\n{include}\n")
            changed = True
        return changed

    # whose cluster -----------------------------------------------------------

    def mark_line(self) -> str:
        """The postgresql.conf line that says which project this cluster belongs to."""
        value = str(self.settings.project_dir).replace("\\", "\\\\").replace("'", "''")
        return f"{PROJECT_MARK} = '{value}'"

    def write_mark(self) -> bool:
        """Make postgresql.conf name this project (adopting a cluster made before the mark, or moved); True when it changed."""
        conf = self.data_dir / "postgresql.conf"
        lines = conf.read_text().splitlines()
        wanted = self.mark_line()
        ours = [line for line in lines if re.match(rf"\s*{re.escape(PROJECT_MARK)}\s*=", line)]
        if ours == [wanted]:
            return False
        kept = [line for line in lines if line not in ours and line != "# the project this cluster belongs to (dbtasks)"]
        # A new file beside it, given the server's OS user (when we are root), then renamed over it:
        # a kill or a full disk half-way leaves the old postgresql.conf, never an empty one.
        fresh = conf.with_name(conf.name + ".dbtasks-new")
        fresh.write_text("\n".join([*kept, "# the project this cluster belongs to (dbtasks)", wanted]) + "\n")
        fresh.chmod(conf.stat().st_mode & 0o777)
        self._chown(fresh)
        os.replace(fresh, conf)
        return True

    def served_mark(self) -> str | None:
        """The mark of the server answering on the configured port, or None when it cannot be asked."""
        try:
            with connect(admin_url(self.url), autocommit=True) as conn:
                return served_project(conn)
        except DbtasksError:
            return None

    def start(self) -> ServerStatus:
        if self.running_pid_port() is None and port_in_use(self.host, self.port):
            mark = self.served_mark()
            if mark and mark != str(self.settings.project_dir):
                raise PortInUse(f"port {self.port} on {self.host} is already in use by the local server of another project ({mark})", pg_port_remedy(self.settings))
            raise PortInUse(
                f"port {self.port} on {self.host} is already in use by another server",
                "stop that server, or set DBTASKS_PG_PORT (or pg_port in [tool.dbtasks]) to a free port",
            )
        created = False
        if not self.initialized():
            self.init_cluster()
            created = True
        self.check_version()
        running = self.running_pid_port()
        if running:
            pid, port = running
            if port != self.port:
                raise ServerError(
                    f"the local server in {self.data_dir} already runs on port {port}, not {self.port}",
                    f"{names.run('stop-db')}, then start it again",
                )
            if self.write_tuning() | self.write_mark():
                self.reload()
            ensure_database(self.url)
            return ServerStatus(self.kind, True, self.url, self._detail(f"already running, pid {pid}"))
        self.write_tuning()
        self.write_mark()
        stale_note = self._move_stale_pid_file()
        # A fresh log per start, so a failure shows this start's lines only.
        self.log_file.write_text("")
        self._chown(self.log_file)
        proc = self._run(
            [self.bin_dir / "pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file,
             "-w", "-t", str(self.settings.start_timeout), "-o", f"-p {self.port} -c listen_addresses={self.host}"],
            check=False,
            timeout=self.settings.start_timeout + 30,
        )
        if proc.returncode != 0:
            raise ServerError(
                f"the local server did not start (pg_ctl: {redact((proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout).strip() else 'failed')})"
                + self._log_tail_suffix()
            )
        wait_until_ready(admin_url(self.url), self.settings.start_timeout, self.log_tail)
        db_created = ensure_database(self.url)
        detail = "initialized and started" if created else "started"
        if db_created:
            detail += f", created database {self.url.database}"
        return ServerStatus(self.kind, True, self.url, self._detail(detail, stale_note), changed=True)

    def reload(self) -> None:
        """Make the running server read postgresql.conf again (pg_ctl reload)."""
        self._run([self.bin_dir / "pg_ctl", "reload", "-D", self.data_dir, "-s"], timeout=30)

    def _detail(self, *parts: str) -> str:
        """One line: what happened, and where the data is when it is not where configured."""
        return "; ".join(p for p in (*parts, self.relocation_note) if p)

    def stop(self) -> ServerStatus:
        if not self.initialized() or self.running_pid_port() is None:
            return ServerStatus(self.kind, False, self.url, self._detail("not running"))
        self._run([self.bin_dir / "pg_ctl", "stop", "-D", self.data_dir, "-m", "fast", "-w", "-t", "60"], timeout=90)
        return ServerStatus(self.kind, False, self.url, self._detail("stopped"), changed=True)

    def destroy(self) -> ServerStatus:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        if self.relocation_note:
            with contextlib.suppress(OSError):
                self.data_dir.parent.rmdir()
        return ServerStatus(self.kind, False, self.url, f"removed {self.data_dir}", changed=True)


class DockerServer(Server):
    """The ``postgres`` service of docker-compose.yml."""

    kind = "docker"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.compose_file = settings.path(settings.compose_file)
        self.service = settings.compose_service

    def command(self, action: str) -> list[str]:
        """The docker compose command line of one lifecycle action."""
        base = ["docker", "compose", "-f", str(self.compose_file)]
        return {
            "start": base + ["up", "-d", "--wait", self.service],
            "stop": base + ["stop", self.service],
            "destroy": base + ["down", "-v"],
        }[action]

    def environment(self) -> dict[str, str]:
        """Variables the compose file reads, so it agrees with dbtasks' settings."""
        env = dict(os.environ)
        env.update(
            DBTASKS_PG_PORT=str(self.settings.pg_port),
            DBTASKS_PG_USER=self.settings.pg_user,
            DBTASKS_PG_PASSWORD=self.settings.pg_password,
            DBTASKS_DB_NAME=self.settings.db_name,
        )
        return env

    def _preflight(self) -> None:
        """Docker CLI, Compose plugin and a running engine, each with its own message."""
        if not self.compose_file.is_file():
            raise ConfigError(f"{self.compose_file} not found", "set DBTASKS_COMPOSE_FILE or use DB_SERVER=local")
        if shutil.which("docker") is None:
            raise ServerError("Docker is not installed", "install Docker, or use DB_SERVER=local (no Docker needed)")
        if subprocess.run(["docker", "compose", "version"], capture_output=True, text=True).returncode != 0:
            raise ServerError("the Docker Compose plugin is not installed", "install docker-compose-plugin, or use DB_SERVER=local (no Docker needed)")
        if subprocess.run(["docker", "info"], capture_output=True, text=True).returncode != 0:
            raise ServerError("the Docker engine is not running", "start Docker, or use DB_SERVER=local (no Docker needed)")

    def _compose(self, action: str) -> subprocess.CompletedProcess:
        self._preflight()
        proc = subprocess.run(self.command(action), capture_output=True, text=True, env=self.environment(), cwd=str(self.settings.project_dir))
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout or "").strip()
            raise ServerError(f"docker compose {action} failed: {redact(err.splitlines()[-1] if err else 'no output')}")
        return proc

    def start(self) -> ServerStatus:
        self._compose("start")
        wait_until_ready(admin_url(self.url), self.settings.start_timeout)
        ensure_database(self.url)
        return ServerStatus(self.kind, True, self.url, "started", changed=True)

    def stop(self) -> ServerStatus:
        self._compose("stop")
        return ServerStatus(self.kind, False, self.url, "stopped", changed=True)

    def destroy(self) -> ServerStatus:
        self._compose("destroy")
        return ServerStatus(self.kind, False, self.url, "container and volume removed", changed=True)


class ExternalServer(Server):
    """A server reached through DATABASE_URL; dbtasks does not manage it."""

    kind = "external"

    def _not_ours(self, verb: str) -> ServerError:
        return ServerError(
            f"the database at {describe(self.url)} is external (DATABASE_URL), so dbtasks cannot {verb} it",
            "manage that server yourself, or unset DATABASE_URL to use the local server",
        )

    def start(self, create_missing: bool = False) -> ServerStatus:
        """Nothing to start: make sure it answers so `make init` can go on; a missing database is created
        only with ``create_missing`` (the caller's verdict: a development server, see :func:`start_db`).

        Elsewhere a missing database more likely means a wrong URL, so the user
        is told to run create-db if it should exist, and nothing is created.
        """
        detail = "external server, not managed by dbtasks; it is reachable"
        try:
            wait_for(self.settings, min(5, self.settings.start_timeout))  # it should be up already: 5 s at most
        except DatabaseMissing as exc:
            if not create_missing:
                raise DatabaseMissing(exc.message, f"{names.run('create-db', **_env_of(self.settings))} if it should exist, or fix {self.settings.url_origin}") from None
            create_db(self.settings)
            detail += f"; created database {self.url.database}"
        return ServerStatus(self.kind, True, self.url, detail, changed="created" in detail)

    def stop(self) -> ServerStatus:
        raise self._not_ours("stop")

    def destroy(self) -> ServerStatus:
        raise self._not_ours("recreate")


def get_server(settings: Settings) -> Server:
    """The backend chosen by DB_SERVER (and DATABASE_URL)."""
    return {"local": LocalServer, "docker": DockerServer, "external": ExternalServer}[settings.server_kind](settings)


def start_db(settings: Settings, create_missing: bool = True) -> ServerStatus:
    """Start the database server (idempotent) and create the database if missing.

    On an external server (DATABASE_URL) the database is created only when
    ``create_missing``: callers pass whether the database is unprotected
    (:func:`dbtasks.safety.protection`), so a typo in a URL of a server that
    is not a development one never creates a database there.
    """
    backend = get_server(settings)
    if isinstance(backend, ExternalServer):
        return backend.start(create_missing=create_missing)
    return backend.start()


def stop_db(settings: Settings) -> ServerStatus:
    """Stop the database server (idempotent)."""
    return get_server(settings).stop()


# -- whose cluster, create-db, wait-db -----------------------------------------


def _env_of(settings: Settings) -> dict[str, str]:
    """``env=NAME`` for a remedy when an environment was chosen, so it names the same database."""
    return {"env": settings.env} if settings.env else {}


def address(url: URL) -> str:
    """``host:port/dbname``, for progress lines."""
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


@dataclasses.dataclass
class Creation:
    """What create-db did."""

    url: URL
    created: bool

    def describe(self) -> str:
        where = f"{self.url.host or 'localhost'}:{self.url.port or 5432}"
        if self.created:
            return f"created database {self.url.database} on {where}"
        return f"database {self.url.database} already exists on {where}; nothing to do"


# SQLSTATEs: insufficient_privilege, duplicate_database.
_NO_PRIVILEGE = "42501"
_DUPLICATE_DATABASE = "42P04"


def create_db(settings: Settings) -> Creation:
    """Create the configured database if it does not exist (idempotent), on any server the role may create databases on.

    Creating is not destructive, so a protected environment is no reason to
    refuse; only the database the settings name (DATABASE_URL, ENV, or the
    local/docker server's) is ever created. The CREATE DATABASE goes over a
    connection to the ``postgres`` maintenance database with the same
    credentials, else ``template1``. A role without CREATEDB gets one line
    saying so.
    """
    url = settings.url
    try:
        with connection(settings):
            return Creation(url, False)
    except DatabaseMissing:
        pass
    stack, conn = _maintenance_connection(settings)
    with stack:
        check_local_owner(settings, conn)
        try:
            conn.execute(sa.text(f"CREATE DATABASE {quote_ident(url.database)}"))
        except DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None)
            if code == _DUPLICATE_DATABASE:  # created meanwhile by someone else
                return Creation(url, False)
            if code == _NO_PRIVILEGE:
                raise ServerError(
                    f"role {url.username!r} may not create databases on {url.host or 'localhost'}:{url.port or 5432}, so database {url.database!r} cannot be created",
                    f"grant it CREATEDB (ALTER ROLE {quote_ident(url.username or '')} CREATEDB), or have the database created by a role that may",
                ) from None
            first = redact(str(exc.orig).strip().splitlines()[0]) if str(exc.orig).strip() else type(exc).__name__
            raise ServerError(f"cannot create database {url.database!r} on {describe(url)}: {first}") from None
    return Creation(url, True)


def _maintenance_connection(settings: Settings) -> tuple[contextlib.ExitStack, sa.Connection]:
    """An autocommit connection to ``postgres`` on the settings' server with the same credentials, else ``template1``."""
    url = settings.url
    last: ServerError | None = None
    for name in ("postgres", "template1"):
        stack = contextlib.ExitStack()
        try:
            return stack, stack.enter_context(connect(admin_url(url, name), start_hint(settings), autocommit=True, origin=settings.url_origin))
        except (DatabaseNotRunning, AuthenticationFailed):
            raise
        except ServerError as exc:  # no such database, or no CONNECT privilege on it: try the next
            last = exc
    raise ServerError(
        f"cannot reach a maintenance database (postgres, template1) on {url.host or 'localhost'}:{url.port or 5432} to create {url.database!r} ({last.message if last else 'no answer'})",
        f"create the database with a role that may, or fix {settings.url_origin}",
    )


def wait_for(settings: Settings, timeout: float) -> float:
    """Wait until the configured database accepts a connection; return the seconds it took.

    Only "nothing answers yet" (connection refused, the server starting up)
    is waited out. A missing database (:class:`DatabaseMissing`), a refused
    password, a program that is not PostgreSQL, another project's server,
    fail at once: waiting would not change them.
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            with connection(settings, autocommit=True) as conn:
                conn.execute(sa.text("select 1"))
            return time.monotonic() - began
        except DatabaseNotRunning as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(
                    f"the database at {address(settings.url)} did not accept connections within {timeout:g}s; last error: {exc.message}",
                    exc.remedy,
                ) from None
            time.sleep(min(0.25, left))


def wait_db(settings: Settings, timeout: float | None = None) -> float:
    """Wait until the database accepts connections (DBTASKS_WAIT_TIMEOUT, --timeout); the seconds it took.

    For container entrypoints and CI: a server that is not up yet is waited
    for; a missing database stops at once and names create-db; a refused
    password stops at once.
    """
    timeout = settings.wait_timeout if timeout is None else timeout
    try:
        return wait_for(settings, timeout)
    except DatabaseMissing as exc:
        raise DatabaseMissing(exc.message, names.run("create-db", **_env_of(settings))) from None
