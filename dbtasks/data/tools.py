"""What the data verbs share: their errors, progress reports, fault injection, directories."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

from dbtasks.errors import ConfigError, DbtasksError


class DataError(DbtasksError):
    """A dump, restore, backup, backfill or cleanup could not go on."""


class DumpFileError(DataError):
    """The dump file is missing, unreadable or not a pg_dump archive."""


# -- progress -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` ``unit`` in ``stage``.

    ``total`` is None when unknown. The CLI draws one bar per stage.
    """

    stage: str
    done: int
    total: int | None = None
    unit: str = "items"
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def report(progress: ProgressCallback | None, stage: str, done: int, total: int | None = None, unit: str = "items", detail: str = "") -> None:
    if progress is not None:
        progress(Progress(stage, done, total, unit, detail))


# -- fault injection ------------------------------------------------------------


def pause_point(stage: str) -> None:
    """Fault injection: stop at ``stage`` when ``DBTASKS_TEST_PAUSE_AT`` names it.

    Documented in the README (Development): with ``DBTASKS_TEST_PAUSE_AT=<stage>``
    and ``DBTASKS_TEST_PAUSE_FILE=<path>`` the process writes its pid to the
    file on reaching the stage and sleeps, so a test (or a person rehearsing an
    outage) can kill it at a known point and watch the next run recover.
    Unset, this does nothing.
    """
    if os.environ.get("DBTASKS_TEST_PAUSE_AT") != stage:
        return
    marker = os.environ.get("DBTASKS_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {stage}\n")
    time.sleep(float(os.environ.get("DBTASKS_TEST_PAUSE_SECONDS", "600")))


def server_major(version_num: int) -> int:
    return version_num // 10000


def ensure_tool_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path} ({exc.strerror})", "choose a writable directory") from None
    return path
