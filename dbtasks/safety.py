"""Protection of environments: destructive verbs ask before they act.

An environment listed in ``protected_envs`` (default prod, production,
staging) refuses a verb that changes or destroys data unless the user types
the database name when asked, or passes ``--confirm=<dbname>`` in automation.
"""

from __future__ import annotations

from typing import Callable

from dbtasks.config import Settings
from dbtasks.errors import ProtectedEnvironment

Ask = Callable[[str], str]


def guard(settings: Settings, action: str, confirm: str | None = None, ask: Ask | None = None) -> None:
    """Return when ``action`` may go ahead on ``settings``' database, else raise.

    ``ask`` is called with a prompt and returns what the user typed; the CLI
    passes one only when standard input is a terminal.
    """
    if not settings.is_protected:
        return
    dbname = settings.database_name
    if confirm is not None:
        if confirm == dbname:
            return
        raise ProtectedEnvironment(
            f"--confirm={confirm!r} does not match the database {dbname!r} of protected environment {settings.env!r}",
            f"pass --confirm={dbname}",
        )
    if ask is not None:
        typed = ask(f"{action} on protected environment {settings.env!r}: type the database name ({dbname}) to go on")
        if typed.strip() == dbname:
            return
        raise ProtectedEnvironment(f"confirmation did not match {dbname!r}; nothing was done")
    raise ProtectedEnvironment(
        f"refusing to {action} on protected environment {settings.env!r} without confirmation",
        f"run it in a terminal and type the database name, or pass --confirm={dbname}",
    )
