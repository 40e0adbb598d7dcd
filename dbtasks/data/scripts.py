"""``run-script``: run a backfill or one-off data script against an environment.

A script is a Python file inside the project with a ``main`` function. Its
parameters say what it gets, by name:

- ``session`` (a SQLAlchemy ``Session``) or ``connection`` (a ``Connection``),
  inside one transaction that commits when ``main`` returns and rolls back
  when it raises; a script that sets ``TRANSACTION = False`` manages its own
  (the batched helpers in :mod:`dbtasks.data.backfill` open their own short
  transactions and want this);
- ``settings``: the resolved :class:`~dbtasks.config.Settings` (the URL of
  ``--env``), for the batched helpers;
- ``progress``: a callback the CLI draws as a progress bar;
- ``dry_run``: True under ``--dry-run`` (``DRY_RUN=1``); a script without this
  parameter refuses a dry run rather than quietly writing.

``main`` returns anything printable (or None). Protected environments ask for
the database name first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dbtasks import names
from dbtasks.config import Settings
from dbtasks.data.tools import DataError, ProgressCallback
from dbtasks.database import connection, make_engine
from dbtasks.errors import DbtasksError, UsageError, redact
from dbtasks.safety import guard

INJECTED = ("session", "connection", "settings", "progress", "dry_run")


class ScriptError(DataError):
    """The script raised; its transaction was rolled back."""


@dataclasses.dataclass
class ScriptResult:
    path: Path
    result: Any
    seconds: float
    transaction: bool


def resolve_script(settings: Settings, path: str | Path | None) -> Path:
    """The script's real path, refused unless it is a file inside the project."""
    if path is None or not str(path).strip():
        raise UsageError("no script given", f"e.g. `{names.command('run-script', SCRIPT='scripts/backfills/<name>.py')}`")
    raw = Path(path).expanduser()
    candidate = raw if raw.is_absolute() else (Path.cwd() / raw)
    real = candidate.resolve()
    project = settings.project_dir.resolve()
    if real != project and project not in real.parents:
        raise UsageError(f"script {path} is outside the repository {project}", "put it under scripts/backfills/ and pass that path")
    if not real.exists():
        raise UsageError(f"script {path} does not exist", "check the path (e.g. scripts/backfills/<name>.py)")
    if not real.is_file():
        raise UsageError(f"script {path} is not a file", "pass the path of a .py file")
    if real.suffix != ".py":
        raise UsageError(f"script {path} is not a Python file", "pass the path of a .py file with a main() function")
    return real


def load_main(real: Path):
    project_root = str(real.parent)
    module_name = "dbtasks_script_" + hashlib.sha1(str(real).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, real)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {real} as a Python module")
    module = importlib.util.module_from_spec(spec)
    added = project_root not in sys.path
    if added:
        sys.path.insert(0, project_root)
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise ScriptError(f"{real.name} called sys.exit({exc.code!r}) while being imported", "move the work into main(); nothing was run") from None
    except Exception as exc:  # noqa: BLE001 - any import-time error of a user script
        raise ScriptError(f"{real.name} failed to import: {type(exc).__name__}: {redact(str(exc)).splitlines()[0] if str(exc) else ''}", "fix the script; nothing was run") from None
    main = getattr(module, "main", None)
    if not callable(main):
        raise UsageError(f"{real.name} has no main() function", "define main(session) or main(connection)")
    return module, main


def run_script(
    settings: Settings,
    path: str | Path | None,
    confirm: str | None = None,
    ask=None,
    progress: ProgressCallback | None = None,
    dry_run: bool = False,
) -> ScriptResult:
    """Run ``main`` of the script at ``path`` with what its parameters ask for."""
    real = resolve_script(settings, path)
    project = str(settings.project_dir)
    if project not in sys.path:
        sys.path.insert(0, project)
    module, main = load_main(real)
    params = inspect.signature(main).parameters
    unknown = [p for p, v in params.items() if p not in INJECTED and v.default is inspect.Parameter.empty and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
    if unknown:
        raise UsageError(f"{real.name}: main() asks for {', '.join(unknown)}, which run-script cannot give", f"use parameters named {', '.join(INJECTED)}")
    if "session" in params and "connection" in params:
        raise UsageError(f"{real.name}: main() asks for both session and connection", "ask for one")
    if dry_run and "dry_run" not in params:
        raise UsageError(f"{real.name} does not support a dry run (its main() has no dry_run parameter)", "run without --dry-run, or add the parameter")
    if not dry_run:
        rel = real.relative_to(settings.project_dir.resolve())
        guard(settings, f"run {rel}", confirm, ask)
    transactional = bool(getattr(module, "TRANSACTION", True))
    kwargs: dict[str, Any] = {}
    if "settings" in params:
        kwargs["settings"] = settings
    if "progress" in params:
        kwargs["progress"] = progress
    if "dry_run" in params:
        kwargs["dry_run"] = dry_run
    started = time.monotonic()
    try:
        if "session" not in params and "connection" not in params:
            result = main(**kwargs)
        elif transactional:
            with connection(settings) as conn:
                trans = conn.begin()
                try:
                    if "session" in params:
                        session = Session(bind=conn, join_transaction_mode="create_savepoint")
                        try:
                            result = main(session=session, **kwargs)
                            # Releases the session's savepoint; the outer transaction commits below.
                            session.commit()
                        finally:
                            session.close()
                    else:
                        result = main(connection=conn, **kwargs)
                except BaseException:
                    trans.rollback()
                    raise
                # A dry run may write to see what would happen; none of it stays.
                trans.rollback() if dry_run else trans.commit()
        else:
            if "session" in params:
                engine = make_engine(settings.url)
                try:
                    with Session(engine) as session:
                        result = main(session=session, **kwargs)
                finally:
                    engine.dispose()
            else:
                with connection(settings) as conn:
                    result = main(connection=conn, **kwargs)
                    if conn.in_transaction():
                        conn.commit()
    except DbtasksError:
        raise
    except SystemExit as exc:
        # sys.exit() inside main() would end dbtasks silently with the script's code.
        raise ScriptError(
            f"{real.name} called sys.exit({exc.code!r}) instead of returning from main()",
            ("its transaction was rolled back" if transactional else "changes it committed before the exit stay")
            + "; return to succeed, raise an exception to fail",
        ) from None
    except Exception as exc:  # noqa: BLE001 - a user script may raise anything
        detail = redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        raise ScriptError(
            f"{real.name} failed: {type(exc).__name__}{': ' + detail if detail else ''}",
            "its transaction was rolled back" if transactional else "changes it committed before the error stay",
        ) from None
    return ScriptResult(real, result, time.monotonic() - started, transactional)
