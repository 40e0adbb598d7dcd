"""Load the application's demo data (``db-seed``)."""

from __future__ import annotations

import importlib
import sys

from dbtasks.config import Settings
from dbtasks.database import connection
from dbtasks.errors import ConfigError
from dbtasks.migrations import translate_errors
from dbtasks.safety import guard


def load_callable(spec: str, setting: str = "DBTASKS_SEED"):
    """Import ``module:function`` relative to the project directory."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{setting}={spec!r} is not module:function", "e.g. app.seed:seed")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting}: cannot import {module_name} ({exc})", "fix the module path, or run from the project directory") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{setting}: {module_name} has no function {attr}", "fix the function name")
    return fn


def seed(settings: Settings, confirm: str | None = None, ask=None) -> dict[str, int]:
    """Run the seed function in one transaction; returns rows inserted per table."""
    if not settings.seed:
        raise ConfigError("no seed configured, so there is no demo data to load", "set DBTASKS_SEED or seed in [tool.dbtasks] to module:function")
    guard(settings, "load demo data", confirm, ask)
    project = str(settings.project_dir)
    if project not in sys.path:
        sys.path.insert(0, project)
    fn = load_callable(settings.seed)
    with translate_errors(settings), connection(settings) as conn:
        with conn.begin():
            result = fn(conn)
    return dict(result or {})
