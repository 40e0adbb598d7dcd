"""``backup-db``: a timestamped, compressed, verified dump; keep the newest N.

Each backup is checked with ``pg_restore --list`` (the archive is complete and
readable) before any older backup is deleted, so a failed or corrupt backup
never costs a good one.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from dbtasks import names
from dbtasks.config import Settings
from dbtasks.data.dump import FORMATS, DumpResult, dump_db, env_label, read_archive, source_facts, stamped_files, stamped_path
from dbtasks.data.tools import DataError, DumpFileError, ProgressCallback, ensure_tool_dir, remove_meta
from dbtasks.errors import UsageError


@dataclasses.dataclass
class BackupResult:
    """The new backup, the ones kept and the ones deleted."""

    dump: DumpResult
    entries: int
    kept: list[Path]
    deleted: list[Path]


def backup_files(directory: Path, prefix: str) -> list[Path]:
    """Backups of one database in ``directory``, oldest first by the UTC time in their names.

    Both name forms count: ``<prefix>-20261121T201500.123456Z.dump`` and the
    older second-resolution ``<prefix>-20261121T201500Z.dump``.
    """
    return stamped_files(directory, prefix)


def backup_db(
    settings: Settings,
    directory: str | Path | None = None,
    keep: int | None = None,
    progress: ProgressCallback | None = None,
) -> BackupResult:
    """Write ``<dir>/<db>-<env>-<UTC time>.dump``, verify it, then delete all but the newest ``keep``."""
    keep = settings.backup_keep if keep is None else keep
    if keep < 1:
        raise UsageError(f"KEEP={keep} would delete every backup", f"keep at least 1: {names.command('backup-db', KEEP=1)}")
    # Reach the database before creating anything: a refused backup leaves no empty backups/ behind.
    source_facts(settings)
    target = ensure_tool_dir(settings.path(str(directory)) if directory else settings.path(settings.backup_dir))
    prefix = f"{settings.database_name}-{env_label(settings)}"
    fmt = settings.dump_format if settings.dump_format in FORMATS else "custom"
    # Never refused for the clock: a second backup in the same second (or after
    # the clock was set back) gets a later stamp than the newest one there.
    path = stamped_path(target, prefix, FORMATS[fmt][1])
    # No <backup>.meta.json: the backup directory holds the backups only (a
    # restore of a backup shows bytes and rate, without a total or ETA).
    dumped = dump_db(settings, output=path, fmt=fmt, progress=progress, meta=False)
    try:
        info = read_archive(dumped.path, settings.pg_bin)
    except DumpFileError as exc:
        # A backup that cannot be listed is not a backup: remove it, keep the older ones.
        if dumped.path.is_dir():
            shutil.rmtree(dumped.path, ignore_errors=True)
        else:
            dumped.path.unlink(missing_ok=True)
        raise DataError(f"the new backup failed verification ({exc.message}); older backups were kept") from None
    files = backup_files(target, prefix)
    doomed = files[:-keep] if len(files) > keep else []
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        remove_meta(path)  # a <backup>.meta.json copied beside it by hand goes with it
    kept = [p for p in files if p not in doomed]
    return BackupResult(dumped, len(info.entries), kept, doomed)
