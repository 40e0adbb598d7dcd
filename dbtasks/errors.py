"""One root exception for everything dbtasks reports to a user.

Library functions raise a subclass of :class:`DbtasksError`; only the CLI turns
it into a message and an exit code. Each error carries the message (what is
wrong) and a remedy (how to fix it) so the CLI can print one clear line.
"""

from __future__ import annotations

import re

# Exit codes used by the CLI (0 is success).
EXIT_FINDINGS = 1
EXIT_USAGE = 2

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.I)

_known_secrets: set[str] = set()


def register_secret(secret: str | None, username: str | None = None) -> None:
    """Remember a password so :func:`redact` hides it wherever it appears as a word.

    A password equal to its user name (the ``postgres``/``postgres`` of a
    development server) hides nothing and would blank out the user name.
    """
    if secret and len(secret) >= 4 and secret != username:
        _known_secrets.add(secret)


def redact(text: str) -> str:
    """Hide passwords in ``text``: in URLs, ``password=`` pairs and known secrets."""
    if not text:
        return text
    # "password" itself is the placeholder of our own usage examples.
    text = _URL_PASSWORD.sub(lambda m: m[0] if m["pw"] == "password" else f"{m['head']}***{m['at']}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}***", text)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", "***", text)
    return text


class DbtasksError(Exception):
    """Root of every error dbtasks reports. ``remedy`` says what to do next."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, remedy: str | None = None):
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        text = self.message
        if self.remedy:
            text = f"{text}; {self.remedy}" if not text.endswith(".") else f"{text} {self.remedy}"
        return redact(text)


class ConfigError(DbtasksError):
    """A setting is missing or malformed."""


def read_text(path) -> str:
    """A project file's text (UTF-8), or one line saying which file is not text."""
    from pathlib import Path

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a file", "pass the path of the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None


class UsageError(DbtasksError):
    """The command was called with bad arguments."""


class ServerError(DbtasksError):
    """The database server could not be started, stopped or reached."""


class DatabaseNotRunning(ServerError):
    """Nothing answers at the database address."""


class AuthenticationFailed(ServerError):
    """The server refused the credentials."""


class PortInUse(ServerError):
    """Another process listens on the port the local server wants."""


class VersionMismatch(ServerError):
    """The data directory belongs to another PostgreSQL major version."""


class ProtectedEnvironment(DbtasksError):
    """A destructive verb was refused on a protected environment."""


class MigrationError(DbtasksError):
    """Alembic refused or failed a migration command."""


class UnknownRevision(MigrationError):
    """A revision identifier matches nothing in the history."""


class NothingToDo(DbtasksError):
    """The command had nothing to do, which the caller should know about."""

    exit_code = EXIT_FINDINGS
