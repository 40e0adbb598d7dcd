"""Helpers of the check tests: example projects copied to a temporary directory, git bases."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .conftest import REPO, run, url_str

EXAMPLES = REPO / "tests" / "examples"
GIT = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]


def example(case: str, tmp_path: Path) -> Path:
    """A copy of tests/examples/<case>/ (checks import revisions; the repository stays clean)."""
    dest = tmp_path / case
    shutil.copytree(EXAMPLES / case, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def git(project: Path, *args: str) -> str:
    proc = subprocess.run([*GIT, *args], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def git_history(project: Path, new: tuple[str, ...]) -> None:
    """Commit the project on main without the revisions in ``new``; add those on a branch."""
    git(project, "init", "-q")
    new_files = [p for p in (project / "migrations" / "versions").glob("*.py") if any(n in p.name for n in new)]
    hidden = {p: p.read_text() for p in new_files}
    for p in new_files:
        p.unlink()
    (project / ".gitignore").write_text("__pycache__/\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "main")
    git(project, "checkout", "-q", "-b", "feature")
    for p, text in hidden.items():
        p.write_text(text)
    git(project, "add", "-A")
    git(project, "commit", "-q", "--allow-empty", "-m", "new revisions")


def check(args: list[str], project: Path, server_url, **env: str):
    """Run a dbtasks check in ``project`` with scratch databases on the test server."""
    return run(args, project, DATABASE_URL=url_str(server_url), **env)


def findings(proc) -> list[dict]:
    return json.loads(proc.stdout)


def rules(proc) -> set[tuple[str, str | None]]:
    return {(f["rule"], f["revision"]) for f in findings(proc)}
