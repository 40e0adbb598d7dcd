"""Which revision files are new: the files added or changed since a git base.

Lint and rehearse look only at revisions added since the git base
(``--since``, default ``origin/main``), so a project with an old history can
adopt them without fixing every old revision first. The comparison is against
the merge base of the git base and HEAD, and includes uncommitted and
untracked files, so a revision written a minute ago is linted too.

When the default base does not exist (a clone without a remote, a CI job on a
detached checkout) the next candidates are ``main`` and ``master``; when none
exists, or the project is not in a git repository, everything is in scope and
a note says so. A base the user named that does not exist is an error.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

from dbtasks.config import Settings
from dbtasks.errors import UsageError

FALLBACK_BASES = ("main", "master")


@dataclasses.dataclass
class Scope:
    """The files in scope: ``files is None`` means every revision."""

    files: set[Path] | None
    base: str | None = None
    note: str | None = None

    def includes(self, path: str | Path) -> bool:
        return self.files is None or Path(path).resolve() in self.files

    def describe(self) -> str:
        return "all revisions" if self.files is None else f"revisions added or changed since {self.base}"


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def _ref_exists(ref: str, cwd: Path) -> bool:
    return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd).returncode == 0


def scope(settings: Settings) -> Scope:
    """The revisions in scope for lint and rehearse: ``since`` and ``all_revisions`` of the settings."""
    return changed_since(
        settings.alembic_ini_path.parent, settings.since,
        since_is_default=settings.sources.get("since", "default") == "default", all_revisions=settings.all_revisions,
    )


def changed_since(project_dir: Path, since: str | None, since_is_default: bool = False, all_revisions: bool = False) -> Scope:
    """The scope for ``since``; see the module docstring for the fallbacks."""
    if all_revisions or not since:
        return Scope(None)
    if shutil.which("git") is None or not project_dir.is_dir():
        top = None
    else:
        top = _git(["rev-parse", "--show-toplevel"], project_dir)
    if top is None or top.returncode != 0:
        if not since_is_default:
            raise UsageError(f"--since {since} needs a git repository, and {project_dir} is not in one", "pass --all")
        return Scope(None, note=f"{project_dir} is not in a git repository: checking all revisions")
    root = Path(top.stdout.strip())
    base = since
    if not _ref_exists(since, root):
        if not since_is_default:
            raise UsageError(
                f"git base {since!r} does not exist",
                "fetch it (git fetch origin) or pass another --since REF, or --all",
            )
        base = next((ref for ref in FALLBACK_BASES if ref != since and _ref_exists(ref, root)), None)
        if base is None:
            return Scope(None, note=f"git base {since!r} does not exist (nor main, master): checking all revisions")
    merge_base = _git(["merge-base", base, "HEAD"], root)
    point = merge_base.stdout.strip() if merge_base.returncode == 0 and merge_base.stdout.strip() else base
    diff = _git(["diff", "--name-only", "--diff-filter=d", "-z", point, "--"], root)
    if diff.returncode != 0:
        raise UsageError(f"git diff against {base!r} failed: {diff.stderr.strip().splitlines()[0] if diff.stderr.strip() else 'unknown error'}")
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], root)
    names = [n for n in (diff.stdout + "\0" + untracked.stdout).split("\0") if n]
    note = None if base == since else f"git base {since!r} does not exist: using {base!r}"
    return Scope({(root / n).resolve() for n in names}, base=base, note=note)
