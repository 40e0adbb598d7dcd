"""``restore-db`` and ``dump-and-restore``: load a dump without risking the current database.

How a restore keeps the current database safe:

1. The archive is read (``pg_restore --list``) and checked against the target
   server before anything changes: a missing, corrupt or too-new dump stops here.
2. An advisory lock on the server's maintenance database makes restores into
   the same database take turns; a killed run's lock dies with its connection.
3. Leftovers of an interrupted earlier run (``dbtasks_restore_*`` scratch
   databases, ``dbtasks_old_*`` databases swapped out) are dropped.
4. The dump is restored into a new scratch database ``dbtasks_restore_<ts>_<hash>``.
5. Only when that fully succeeded, one transaction renames the current
   database to ``dbtasks_old_<ts>_<hash>`` and the scratch database to the
   target name (PostgreSQL allows ``ALTER DATABASE ... RENAME`` in a
   transaction, so both renames commit together or not at all).
6. The old database is dropped.

Killed at any point, the target name holds either the old database, untouched,
or the new one, complete; the next run drops whatever is left over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from dbtasks import names
from dbtasks.config import Settings, load_settings
from dbtasks.clients import ClientVersionError, find_client, first_error, run_client
from dbtasks.database import advisory_lock, admin_url, connect, create_database, describe, drop_database, quote_ident, start_hint
from dbtasks.data.dump import FORMATS, ArchiveInfo, DumpResult, archive_revision, dump_db, env_label, read_archive, source_facts, stamped_path
from dbtasks.data.tools import (
    CopyWatch,
    DataError,
    ProgressCallback,
    TableSize,
    ensure_tool_dir,
    meta_path,
    pause_point,
    read_meta,
    remove_meta,
    report,
    restored_bytes,
    server_major,
)
from dbtasks.errors import DbtasksError, ProtectedEnvironment, UsageError
from dbtasks.safety import carry_mark, confirm_unmasked, guard, protection

SCRATCH_PREFIX = "dbtasks_restore_"
OLD_PREFIX = "dbtasks_old_"
MODES = ("schema", "full")


@dataclasses.dataclass
class RestoreResult:
    """What a restore did."""

    database: str
    file: Path
    tables: int
    seconds: float
    mode: str = "full"
    revision: str | None = None
    replaced: bool = False
    leftovers: list[str] = dataclasses.field(default_factory=list)
    dump: DumpResult | None = None
    data_bytes: int | None = None  # table data loaded: the source's sizes, or measured after a foreign dump
    masked: object | None = None  # a masking.MaskReport: dump-and-restore with masking rules: what was masked before the swap
    unmasked: bool = False  # masking rules exist but MASK=0 skipped them (confirmed)


def target_hash(target: str) -> str:
    """Eight hex digits naming the target inside scratch names (names are limited to 63 bytes)."""
    return f"{zlib.crc32(target.encode()):08x}"


def scratch_names(target: str) -> tuple[str, str]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    h = target_hash(target)
    return f"{SCRATCH_PREFIX}{stamp}_{h}", f"{OLD_PREFIX}{stamp}_{h}"


def leftover_pattern(target: str) -> re.Pattern:
    return re.compile(rf"^({SCRATCH_PREFIX}|{OLD_PREFIX})\d{{14}}_{target_hash(target)}$")


def leftovers(url: URL, target: str) -> list[str]:
    """Scratch and swapped-out databases that earlier restores into ``target`` left behind."""
    pattern = leftover_pattern(target)
    with connect(admin_url(url), autocommit=True) as conn:
        names = conn.execute(sa.text("select datname from pg_database where datname like 'dbtasks\\_%'")).scalars().all()
    return sorted(n for n in names if pattern.match(n))


@contextlib.contextmanager
def restore_lock(url: URL, target: str) -> Iterator[None]:
    """One restore per target at a time; the lock dies with the process holding it."""
    key = zlib.crc32(f"dbtasks:restore:{target}".encode())
    with connect(admin_url(url), autocommit=True) as conn, advisory_lock(conn, key, wait=False) as got:
        if not got:
            raise DataError(f"another restore into {target!r} is running on {describe(url)}", "wait for it to finish, then run again")
        yield


def _facts(settings: Settings) -> tuple[int, str | None, bool]:
    """(server_version_num, owner of the target database or None, current user is superuser)."""
    target = settings.database_name
    with connect(admin_url(settings.url), start_hint(settings), autocommit=True, origin=settings.url_origin) as conn:
        num = int(conn.execute(sa.text("show server_version_num")).scalar())
        owner = conn.execute(
            sa.text("select pg_get_userbyid(datdba) from pg_database where datname = :n"), {"n": target}
        ).scalar()
        superuser, createdb = conn.execute(sa.text("select rolsuper, rolcreatedb from pg_roles where rolname = current_user")).one()
    if not (superuser or createdb):
        # The restore builds a new database and swaps it in: without CREATEDB it
        # would fail at CREATE DATABASE, so say it before anything starts.
        role = settings.url.username or "current user"
        raise DataError(
            f"role {role!r} may not create databases on {describe(settings.url)}, and a restore builds the dump in a new database that replaces {target!r}",
            f"as a superuser run ALTER ROLE {quote_ident(role)} CREATEDB, or restore as a role that has CREATEDB",
        )
    return num, owner, bool(superuser)


def swap_in(url: URL, scratch: str, target: str, old: str, attempts: int = 10) -> bool:
    """Rename ``target`` to ``old`` and ``scratch`` to ``target`` in one transaction; drop ``old``.

    Returns True when a database was replaced. Sessions on the target are
    terminated first; one that reconnects in between makes the rename fail,
    and the whole swap is tried again.
    """
    replaced = False
    for attempt in range(attempts):
        engine_url = admin_url(url)
        try:
            with connect(engine_url) as conn:
                with conn.begin():
                    exists = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": target}).scalar()
                    if exists:
                        conn.execute(
                            sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n and pid <> pg_backend_pid()"),
                            {"n": target},
                        )
                        conn.execute(sa.text(f"ALTER DATABASE {quote_ident(target)} RENAME TO {quote_ident(old)}"))
                    conn.execute(sa.text(f"ALTER DATABASE {quote_ident(scratch)} RENAME TO {quote_ident(target)}"))
                    pause_point("swap-uncommitted")
                replaced = bool(exists)
            break
        except DBAPIError as exc:
            if "being accessed by other users" in str(exc.orig) and attempt + 1 < attempts:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise DataError(
                f"could not swap the restored database in as {target!r}: {str(exc.orig).strip().splitlines()[0]}",
                f"the current database is unchanged; close the sessions on {target!r} and run again",
            ) from None
    pause_point("after-swap")
    if replaced:
        drop_database(url, old)
    return replaced


def _check_versions(info: ArchiveInfo, version_num: int, url: URL) -> None:
    target_major = server_major(version_num)
    if info.from_major and info.from_major > target_major:
        raise ClientVersionError(
            f"{info.path} is a dump of a PostgreSQL {info.from_major} server, newer than the PostgreSQL {target_major} server at {describe(url)}",
            f"restore it into a PostgreSQL {info.from_major} or newer server (e.g. PG_BIN=<PostgreSQL {info.from_major} bin> {names.command('volume-recreate')})",
        )


def pg_restore_args(pg_restore: str, file: Path, dbname: str, jobs: int, owner: str | None, data_only: bool = False, sections: tuple[str, ...] = ()) -> list[str]:
    args = [pg_restore, f"--dbname={dbname}", "--verbose", "--exit-on-error", "--no-owner", "--no-privileges"]
    if owner:
        args.append(f"--role={owner}")
    if data_only:
        args += ["--data-only", "--disable-triggers"]
    args += [f"--section={section}" for section in sections]
    if jobs > 1:
        # Parallel pg_restore also loads each table it created as TRUNCATE + COPY in
        # one transaction, which wal_level = minimal (the local server's) writes
        # without WAL. --single-transaction would do that for one job, but was not
        # faster (docs/development.md) and may run out of locks on big schemas.
        args.append(f"--jobs={jobs}")
    args.append(str(file))
    return args


_DATA_ENTRY = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ")
_BUILD_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:INDEX|CONSTRAINT|FK CONSTRAINT) (?!ATTACH )")


def archive_sizes(info: ArchiveInfo) -> dict[str, TableSize] | None:
    """The recorded size of every table the archive holds rows of, from ``<dump>.meta.json``;
    None for a dump without one (or one that does not cover every table): progress then has no total."""
    recorded = read_meta(info.path)
    if recorded is None:
        return None
    names = [f"{m.group(1)}.{m.group(2)}" for e in info.data_entries if (m := _DATA_ENTRY.match(e))]
    if len(names) != len(info.data_entries) or any(n not in recorded for n in names):
        return None
    return {n: recorded[n] for n in names}


def index_builds(info: ArchiveInfo) -> int:
    """How many indexes, constraints and foreign keys a full restore of the archive builds."""
    return sum(1 for e in info.entries if _BUILD_ENTRY.match(e))


def run_pg_restore(args: list[str], url: URL, info: ArchiveInfo, progress: ProgressCallback | None, stage: str = "restore", indexes: int = 0) -> int:
    """Run pg_restore into ``url`` reporting bytes of table data (then the index builds); returns the bytes loaded."""
    watch = CopyWatch(progress, stage, url, archive_sizes(info), indexes=indexes)

    def on_line(line: str) -> None:
        watch.line(line)
        if "processing data for table" in line and len(watch.started) == 1:
            pause_point("restore-running")

    with watch:
        code, lines = run_client(args, url, on_line)
        if code != 0:
            raise DataError(
                f"pg_restore failed: {first_error(lines, 'pg_restore')}",
                "the current database is unchanged",
            )
        measured = None
        if watch.sizes is None:
            with connect(url, autocommit=True) as conn:
                measured = restored_bytes(conn)
        return watch.finish(measured)


def load_archive(pg_restore: str, info: ArchiveInfo, scratch: URL, jobs: int, role: str | None, progress: ProgressCallback | None, between: Callable[[URL], None] | None = None) -> int:
    """Restore the whole archive into ``scratch``; returns the bytes of table data loaded.

    With ``between`` the restore runs in two passes: the tables and their rows
    (pre-data and data), then ``between(scratch)``, then the indexes,
    constraints and triggers (post-data). Masking runs there: it rewrites
    tables that have no index yet, and every index is built from masked
    values only.
    """
    if between is None:
        return run_pg_restore(pg_restore_args(pg_restore, info.path, scratch.database, jobs, role), scratch, info, progress, indexes=index_builds(info))
    loaded = run_pg_restore(pg_restore_args(pg_restore, info.path, scratch.database, jobs, role, sections=("pre-data", "data")), scratch, info, progress)
    between(scratch)

    def indexes_only(p) -> None:  # the data bar ended with the first pass
        if progress is not None and p.stage == "indexes":
            progress(p)

    run_pg_restore(pg_restore_args(pg_restore, info.path, scratch.database, jobs, role, sections=("post-data",)), scratch, info, indexes_only, indexes=index_builds(info))
    return loaded


def drop_rows(info: ArchiveInfo) -> bool:
    """Delete the table data of a directory archive, keeping its table of contents (what post-data needs); False for a one-file archive."""
    if not info.path.is_dir():
        return False
    for path in info.path.iterdir():
        if path.name != "toc.dat" and path.is_file():
            path.unlink()
    return True


def _into_scratch(settings: Settings, version_num: int, build: Callable[[URL], None], owner: str | None) -> tuple[bool, list[str]]:
    """Build a scratch database with ``build`` and swap it in as the target."""
    url = settings.url
    target = settings.database_name
    if target in ("postgres", "template0", "template1"):
        raise UsageError(f"refusing to replace the server's own {target!r} database", "point DATABASE_URL at your application's database")
    with restore_lock(url, target):
        cleaned = leftovers(url, target)
        for name in cleaned:
            drop_database(url, name)
        scratch, old = scratch_names(target)
        create_database(url, scratch, owner=owner)
        try:
            build(url.set(database=scratch))
            pause_point("before-swap")
            replaced = swap_in(url, scratch, target, old)
        except BaseException:
            with contextlib.suppress(DbtasksError, DBAPIError):
                drop_database(url, scratch)
            raise
    return replaced, cleaned


def _owner(settings: Settings, owner: str | None, current_owner: str | None, superuser: bool) -> str | None:
    """Who owns the new database: the requested role, else whoever owned the old one."""
    role = owner or settings.restore_owner
    if role:
        with connect(admin_url(settings.url), autocommit=True) as conn:
            if not conn.execute(sa.text("select 1 from pg_roles where rolname = :r"), {"r": role}).scalar():
                raise UsageError(
                    f"role {role!r} does not exist on {describe(settings.url)}",
                    f"create it (CREATE ROLE {role}) or leave out --owner / DBTASKS_RESTORE_OWNER",
                )
        return role
    return current_owner if superuser else None


def restore_db(
    settings: Settings,
    file: str | Path | None,
    jobs: int | None = None,
    owner: str | None = None,
    confirm: str | None = None,
    ask=None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    ask_sessions=None,
    say=None,
) -> RestoreResult:
    """Restore a pg_dump archive into the database of ``settings``, replacing it only on success.

    Objects are created without their production owners and grants
    (``--no-owner --no-privileges``) and belong to the connecting user, or to
    ``owner`` (``DBTASKS_RESTORE_OWNER``) when given. ``jobs`` parallel workers.

    A dump at a revision this checkout's migrations lack is refused unless
    ``force`` (as dump-and-restore refuses it). The sessions the swap will
    end are named first (``say``), and ``ask_sessions`` (a terminal) may
    decline. A database marked protected stays marked after the swap.
    """
    info = read_archive(file, settings.pg_bin)
    if not force:
        _check_revision_known(settings, info)
    protection = guard(settings, f"restore {info.path.name} into the database", confirm, ask)
    _announce_sessions(settings, ask_sessions, say)
    result = _restore_full(settings, info, jobs, owner, progress)
    carry_mark(settings.url, protection.mark)
    return result


def _check_revision_known(settings: Settings, info: ArchiveInfo) -> None:
    from dbtasks import migrations

    revision = archive_revision(info.path, settings.pg_bin)
    if not revision:
        return
    script = migrations.script_directory(settings)
    for rev in revision.split(","):
        try:
            found = script.get_revision(rev)
        except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
            found = None
        if found is None:
            raise DataError(
                f"{info.path.name} is at revision {rev}, which this checkout's migrations do not have; nothing was changed",
                "pull the branch that has it, or pass --force (make/just FORCE=1) to restore it anyway",
            )


def sessions_on(settings: Settings) -> list[str]:
    """application_name of every other session on the target database (what a swap ends)."""
    with connect(admin_url(settings.url), start_hint(settings), autocommit=True, origin=settings.url_origin) as conn:
        return [r or "?" for r in conn.execute(
            sa.text("select application_name from pg_stat_activity where datname = :n and pid <> pg_backend_pid() order by pid"),
            {"n": settings.database_name},
        ).scalars()]


def _announce_sessions(settings: Settings, ask_sessions, say) -> None:
    apps = sessions_on(settings)
    if not apps:
        return
    counted = ", ".join(f"{a} x{apps.count(a)}" if apps.count(a) > 1 else a for a in sorted(set(apps)))
    text = f"the restore will end {len(apps)} session(s) on {settings.database_name!r} ({counted})"
    if ask_sessions is not None:
        if not ask_sessions(f"{text}; go on?"):
            raise UsageError(f"declined: {text}; nothing was done")
    elif say is not None:
        say(text)


def _restore_full(settings: Settings, info: ArchiveInfo, jobs: int | None, owner: str | None, progress: ProgressCallback | None, after: Callable[[URL], None] | None = None, between: Callable[[URL], None] | None = None) -> RestoreResult:
    started = time.monotonic()
    jobs = jobs or settings.restore_jobs
    url = settings.url
    version_num, current_owner, superuser = _facts(settings)
    _check_versions(info, version_num, url)
    major = server_major(version_num)
    pg_restore = find_client("pg_restore", settings.pg_bin, min_major=max(info.by_major, 0), prefer=major, why=f"{info.path.name} was written by pg_dump {info.dumped_by}")
    role = owner or settings.restore_owner
    tables = len(info.data_entries)

    loaded: list[int] = []

    def build(scratch: URL) -> None:
        loaded.append(load_archive(pg_restore.path, info, scratch, jobs, role, progress, between))
        if after is not None:
            after(scratch)

    replaced, cleaned = _into_scratch(settings, version_num, build, _owner(settings, owner, current_owner, superuser))
    return RestoreResult(settings.database_name, info.path, tables, time.monotonic() - started, "full", None, replaced, cleaned, data_bytes=loaded[-1] if loaded else None)


# -- dump-and-restore -------------------------------------------------------------------


def source_settings(settings: Settings, source_env: str) -> Settings:
    if not source_env or not source_env.strip():
        raise UsageError("no source environment given", f"name it (it reads <ENV>_DATABASE_URL), e.g. `{names.command('dump-and-restore', FROM='prod')}`")
    if "://" in source_env or "@" in source_env:
        raise UsageError(
            "FROM takes an environment's name (prod), not a URL",
            f"put the URL in PROD_DATABASE_URL (or <ENV>_DATABASE_URL, in .env) and run `{names.command('dump-and-restore', FROM='prod')}`",
        )
    return load_settings({"env": source_env.strip(), "alembic_ini": settings.alembic_ini}, project_dir=settings.project_dir)


def _same_database(a: URL, b: URL) -> bool:
    return (a.host or "localhost", a.port or 5432, a.database) == (b.host or "localhost", b.port or 5432, b.database)


def dump_and_restore(
    settings: Settings,
    source_env: str,
    mode: str = "schema",
    jobs: int | None = None,
    owner: str | None = None,
    keep_dump: bool = True,
    progress: ProgressCallback | None = None,
    confirm: str | None = None,
    ask=None,
    say: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Dump environment ``source_env`` and load it into the local database, safely.

    ``mode="schema"`` (the default): build the schema from this project's own
    migrations at the dump's alembic revision, load the rows only, then upgrade
    to head, so the local schema is exactly what the migrations make.
    ``mode="full"``: a plain full restore of the dump. Either way the local
    database is replaced only after everything succeeded. Refused when the
    target is a protected environment.
    """
    if mode not in MODES:
        raise UsageError(f"unknown MODE={mode!r}", "use MODE=schema (default) or MODE=full")
    target = protection(settings)
    if target.protected:
        raise ProtectedEnvironment(
            f"refusing to dump-and-restore into {target.why}",
            "the target is the local database; run it without ENV (FROM= names the source)",
        )
    source = source_settings(settings, source_env)
    if _same_database(source.url, settings.url):
        raise UsageError(f"source {source_env!r} and target are the same database ({describe(settings.url)})", "pick another FROM, or another target DATABASE_URL")
    # Masking rules are read (and MASK=0 confirmed) before anything is dumped.
    from dbtasks.data import masking

    rules = masking.load_rules(settings)
    if rules and not settings.mask:
        confirm_unmasked(settings, source_env, confirm, ask)
    masking_on = bool(rules) and settings.mask
    keep_dump = keep_dump and not masking_on  # the raw dump holds unmasked rows: it never stays
    masked: list = []
    # Check the target answers before spending time on a dump.
    version_num, current_owner, superuser = _facts(settings)
    if mode == "schema" and not superuser:
        raise DataError(
            "MODE=schema loads rows with triggers disabled, which needs a superuser on the local server",
            f"connect as a superuser, or use `{names.command('dump-and-restore', FROM='<env>', MODE='full')}`",
        )
    dump_settings = working_dump_settings(settings)
    source_facts(source)  # the source answers before anything is created on disk
    if masking_on and mode == "full":
        # The copy gets the source's schema, and the masking runs before its foreign keys
        # exist: check the rules against the source's catalog now, before the dump.
        with connect(source.url, origin=source.url_origin) as conn:
            masking.validate(settings, conn, rules, try_it=False)
    dump_dir = ensure_tool_dir(dump_settings.path(settings.dump_dir))
    # The dump keeps a ".partial-<pid>" name until the restore succeeded: a run
    # killed half-way leaves a file the next dump removes, not one more copy.
    final = stamped_path(dump_dir, f"{source.database_name}-{env_label(source)}", FORMATS[dump_settings.dump_format][1])
    working = final.with_name(f"{final.name}.partial-{os.getpid()}")
    dumped = dump_db(source.with_(dump_format=dump_settings.dump_format, dump_compress=dump_settings.dump_compress), output=working, progress=progress)
    done = False

    def mask_after(scratch: URL) -> None:
        """MODE=schema: the raw dump goes as soon as the scratch database holds the rows at head, then the rows are masked, before the swap."""
        _remove_dump(dumped.path)
        masked.append(masking.apply(settings, scratch, rules, say=say))

    def mask_between(scratch: URL) -> None:
        """MODE=full: the rows are in, the indexes not yet: the dump's rows go, the rows are masked, then post-data builds the indexes from masked values."""
        drop_rows(info)
        masked.append(masking.apply(settings, scratch, rules, say=say))

    def remove_after(scratch: URL) -> None:
        """MODE=full: what is left of the dump (a one-file archive) goes before the swap."""
        _remove_dump(dumped.path)

    try:
        pause_point("dumped")
        info = read_archive(dumped.path, settings.pg_bin)
        if mode == "full":
            result = _restore_full(settings, info, jobs, owner, progress, after=remove_after if masking_on else None, between=mask_between if masking_on else None)
        else:
            result = _restore_schema(settings, info, version_num, jobs, owner, current_owner, superuser, progress, mask_after if masking_on else None)
        result.masked = masked[-1] if masked else None
        result.unmasked = bool(rules) and not settings.mask
        done = True
    finally:
        if done and keep_dump:
            dumped.path.rename(final)
            if meta_path(dumped.path).exists():
                meta_path(dumped.path).rename(meta_path(final))
        else:
            _remove_dump(dumped.path)
    result.dump = dataclasses.replace(dumped, path=final)
    result.file = final
    return result


def working_dump_settings(settings: Settings) -> Settings:
    """How dump-and-restore dumps: unless DBTASKS_DUMP_FORMAT / DBTASKS_DUMP_COMPRESS say otherwise,
    the directory format (pg_dump and pg_restore run ``dump_jobs`` / ``restore_jobs`` workers) without
    compression. The dump is read back at once on this machine, so gzip only costs time: on 493 MB
    it made the dump 2.7x and the restore 1.25x slower (docs/development.md, Benchmarks)."""
    chosen = {}
    if settings.sources.get("dump_format", "default") == "default":
        chosen["dump_format"] = "directory"
    if settings.sources.get("dump_compress", "default") == "default":
        chosen["dump_compress"] = 0
    return settings.with_(**chosen) if chosen else settings


def _remove_dump(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    remove_meta(path)


def _migrated_schema(settings: Settings, revisions: list[str], script, output: Path, version_num: int) -> Path:
    """Our migrations at ``revisions`` in a throwaway database, dumped schema-only (custom format) to ``output``."""
    from dbtasks import migrations
    from dbtasks.database import scratch as scratch_database

    major = server_major(version_num)
    pg_dump = find_client("pg_dump", settings.pg_bin, min_major=major, prefer=major, why=f"the server at {describe(settings.url)} runs PostgreSQL {major}")
    with scratch_database(settings, prefix="dbtasks_schema", why="dump-and-restore MODE=schema") as built:
        for rev in revisions:
            migrations.upgrade_scratch(settings, built, rev, script)
        code, lines = run_client([pg_dump.path, "--schema-only", "--format=custom", f"--file={output}", f"--dbname={built.database}"], built)
        if code != 0:
            raise DataError(f"pg_dump of the migrated schema failed: {first_error(lines, 'pg_dump')}", "the current database is unchanged")
    return output


def _schema_pass(pg_restore: str, schema_dump: Path, scratch: URL, section: str, jobs: int) -> None:
    """One section of the migrated schema into ``scratch``, owners and grants as the migrations made them."""
    args = [pg_restore, f"--dbname={scratch.database}", "--exit-on-error", f"--section={section}"]
    if jobs > 1:
        args.append(f"--jobs={jobs}")
    code, lines = run_client([*args, str(schema_dump)], scratch)
    if code != 0:
        raise DataError(f"restoring the migrated schema ({section}) failed: {first_error(lines, 'pg_restore')}", "the current database is unchanged")


def _restore_schema(settings: Settings, info: ArchiveInfo, version_num: int, jobs: int | None, owner: str | None, current_owner: str | None, superuser: bool, progress: ProgressCallback | None, after: Callable[[URL], None] | None = None) -> RestoreResult:
    from dbtasks import migrations

    started = time.monotonic()
    _check_versions(info, version_num, settings.url)
    revision = archive_revision(info.path, settings.pg_bin)
    if not revision:
        raise DataError(f"{info.path.name} holds no alembic_version rows, so its schema revision is unknown", f"use `{names.command('dump-and-restore', FROM='<env>', MODE='full')}` for a plain restore")
    revisions = revision.split(",")
    script = migrations.script_directory(settings)
    for rev in revisions:
        try:
            script.get_revision(rev)
        except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
            raise DataError(
                f"the dump is at revision {rev}, which this checkout's migrations do not have",
                f"pull the branch that has it, or use `{names.command('dump-and-restore', FROM='<env>', MODE='full')}`",
            ) from None
    major = server_major(version_num)
    pg_restore = find_client("pg_restore", settings.pg_bin, min_major=info.by_major, prefer=major, why=f"{info.path.name} was written by pg_dump {info.dumped_by}")
    jobs = jobs or settings.restore_jobs
    role = owner or settings.restore_owner
    tables = len(info.data_entries)
    loaded: list[int] = []

    def build(scratch: URL) -> None:
        report(progress, "schema", 0, 2, "steps", f"migrations at {revision}")
        with tempfile.TemporaryDirectory(prefix="dbtasks-schema-") as tmp:
            # Our migrations build the schema in a database of their own; its pg_dump is
            # restored around the rows: tables first, the rows into tables without
            # indexes, then the indexes, constraints and triggers, each built once.
            # Loading rows into the indexed tables the migrations made took twice as
            # long (docs/development.md, Benchmarks).
            built = _migrated_schema(settings, revisions, script, Path(tmp) / "schema.dump", version_num)
            report(progress, "schema", 1, 2, "steps")
            _schema_pass(pg_restore.path, built, scratch, "pre-data", 1)
            args = pg_restore_args(pg_restore.path, info.path, scratch.database, jobs, role, data_only=True)
            loaded.append(run_pg_restore(args, scratch, info, progress, "data"))
            _schema_pass(pg_restore.path, built, scratch, "post-data", jobs)
        migrations.upgrade_scratch(settings, scratch, "heads", script)
        report(progress, "schema", 2, 2, "steps", "upgraded to head")
        if after is not None:
            after(scratch)

    replaced, cleaned = _into_scratch(settings, version_num, build, _owner(settings, owner, current_owner, superuser))
    return RestoreResult(settings.database_name, info.path, tables, time.monotonic() - started, "schema", revision, replaced, cleaned, data_bytes=loaded[-1] if loaded else None)
