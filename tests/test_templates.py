"""The files teams copy into their CI and pre-commit: valid YAML for their tool, running real recipes.

docs/ci/github-actions.yml and docs/ci/gitlab-ci.yml are validated with
check-jsonschema's vendored GitHub Workflows and GitLab CI schemas, offline
(every HTTP request of the validator would go to a closed port). check-jsonschema
vendors no schema for a pre-commit hook manifest, so .pre-commit-hooks.yaml is
checked here against the keys pre-commit documents for one. Every command
the templates and the hooks run must be a recipe of dbtasks/recipes.toml or a
verb of the CLI, and the hooks that say "no database" must run without one.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dbtasks import names
from dbtasks.checks.runner import registry
from dbtasks.cli import cli

from .conftest import BIN, REPO, copy_project, run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GITHUB = REPO / "docs" / "ci" / "github-actions.yml"
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"
HOOKS = REPO / ".pre-commit-hooks.yaml"


def load(path: Path):
    return yaml.safe_load(path.read_text())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with a vendored schema; any attempt to fetch something fails (closed-port proxy)."""
    program = BIN / "check-jsonschema"
    assert program.exists(), "check-jsonschema is missing: pip install -e '.[test]'"
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = {"PATH": str(BIN), "HOME": str(path.parent), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy,
           "http_proxy": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    return subprocess.run([str(program), "--no-cache", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, env=env, timeout=120)


# -- CI templates ---------------------------------------------------------------


@pytest.mark.parametrize("path, schema, breakage", [
    (GITHUB, "vendor.github-workflows", ("runs-on:", "runs_on:")),
    (GITLAB, "vendor.gitlab-ci", ("  script:", "  scripts:")),
])
def test_ci_template_matches_its_schema_offline(path, schema, breakage, tmp_path):
    proc = check_jsonschema(schema, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the validator does validate: the same file with one key misspelt is refused
    broken = tmp_path / path.name
    broken.write_text(path.read_text().replace(*breakage, 1))
    proc = check_jsonschema(schema, broken)
    assert proc.returncode == 1 and "Schema validation errors" in proc.stdout, proc.stdout + proc.stderr


def commands(lines: list[str]) -> list[list[str]]:
    """The shell commands of a job's steps, split into words (GitHub expressions kept as one word)."""
    out = []
    for line in lines:
        for part in re.split(r"\s*(?:&&|;)\s*", line.strip()):
            if part:
                out.append(shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "EXPR", part)))
    return out


def github_job():
    workflow = load(GITHUB)
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    return job, [s["run"] for s in steps if "run" in s], steps


def gitlab_job():
    (job,) = [v for k, v in load(GITLAB).items() if isinstance(v, dict) and "script" in v]
    return job, job["script"]


def recipe_names() -> set[str]:
    registry()  # the checks add their rows
    return {row.recipe for row in names.rows()}


def extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


@pytest.mark.parametrize("which", ["github", "gitlab"])
def test_ci_template_runs_make_check_after_wait_db_against_a_postgres_16_service(which):
    if which == "github":
        job, lines, steps = github_job()
        services = list(job["services"].values())
        env = job["env"]
        host = "localhost:5432"
        checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["fetch-depth"] == 0  # the git base for lint and rehearse
    else:
        job, lines = gitlab_job()
        services = job["services"]
        env = job["variables"]
        host = f"{services[0]['alias']}:5432"
        assert str(env["GIT_DEPTH"]) == "0"
    assert [s.get("image") or s.get("name") if isinstance(s, dict) else s for s in services] == ["postgres:16"]
    assert re.fullmatch(rf"postgresql://postgres:postgres@{re.escape(host)}/\w+", env["DATABASE_URL"])
    assert env["DBTASKS_DEV_DATABASES"] == host  # the throwaway service may hold scratch databases

    cmds = commands(lines)
    makes = [c[1] for c in cmds if c[0] == "make"]
    assert makes == ["wait-db", "check"], makes  # wait for the service, then every guardrail
    assert set(makes) <= recipe_names()
    check = next(c for c in cmds if c[:2] == ["make", "check"])
    assert any(word.startswith("SINCE=origin/") for word in check[2:]), check
    installs = [c for c in cmds if c[:2] == ["pip", "install"]]
    dbtasks_spec = next(w for c in installs for w in c[2:] if w.startswith("dbtasks["))
    wanted = set(re.match(r"dbtasks\[([^\]]*)\]", dbtasks_spec).group(1).split(","))
    assert wanted == {"lint", "server"} and wanted <= extras()  # squawk for lint, a PostgreSQL 16 pg_dump for schema.sql
    install_at = min(i for i, c in enumerate(cmds) if c[:2] == ["pip", "install"])
    assert install_at < cmds.index(["make", "wait-db"])


# -- the pre-commit hook manifest -------------------------------------------------

# The keys pre-commit documents for a hook of .pre-commit-hooks.yaml, with their types.
HOOK_KEYS = {
    "id": str, "name": str, "entry": str, "language": str, "alias": str, "files": str, "exclude": str,
    "types": list, "types_or": list, "exclude_types": list, "additional_dependencies": list, "args": list,
    "always_run": bool, "fail_fast": bool, "pass_filenames": bool, "description": str, "language_version": str,
    "log_file": str, "minimum_pre_commit_version": str, "require_serial": bool, "stages": list, "verbose": bool,
}
REQUIRED = {"id", "name", "entry", "language"}
LANGUAGES = {
    "conda", "coursier", "dart", "docker", "docker_image", "dotnet", "fail", "golang", "haskell", "julia", "lua",
    "node", "perl", "pygrep", "python", "r", "ruby", "rust", "script", "swift", "system", "unsupported",
    "unsupported_script",
}
HOOK_CHECK = {"dbtasks-heads": "heads", "dbtasks-lint": "lint", "dbtasks-docs": "docs", "dbtasks-ledger": "ledger"}


def hooks() -> list[dict]:
    manifest = load(HOOKS)
    assert isinstance(manifest, list) and manifest, "a manifest is a list of hooks"
    return manifest


def test_pre_commit_manifest_has_the_documented_shape():
    manifest = hooks()
    assert [h.get("id") for h in manifest] == list(HOOK_CHECK)
    for hook in manifest:
        assert isinstance(hook, dict), hook
        assert REQUIRED <= set(hook), (hook.get("id"), REQUIRED - set(hook))
        assert set(hook) <= set(HOOK_KEYS), (hook["id"], set(hook) - set(HOOK_KEYS))
        for key, value in hook.items():
            assert isinstance(value, HOOK_KEYS[key]), (hook["id"], key, value)
            if HOOK_KEYS[key] is list:
                assert all(isinstance(item, str) for item in value), (hook["id"], key)
        assert hook["language"] == "python" and hook["language"] in LANGUAGES
        assert hook["pass_filenames"] is False  # the checks look at the whole history, not the staged files
        for key in ("files", "exclude"):
            if key in hook:
                re.compile(hook[key])
        assert hook["description"].strip() and hook["name"].strip()


def test_pre_commit_hooks_run_the_verbs_of_their_checks():
    checks = {c.name: c for c in registry()}
    for hook in hooks():
        words = shlex.split(hook["entry"])
        assert words[0] == "dbtasks" and len(words) == 2, hook["entry"]  # the console script of the package
        check = checks[HOOK_CHECK[hook["id"]]]
        assert words[1] == check.verb and cli.get_command(None, words[1]) is not None, (hook["id"], words)
        assert check.recipe in recipe_names()
    lint = next(h for h in hooks() if h["id"] == "dbtasks-lint")
    (squawk,) = lint["additional_dependencies"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert squawk in pyproject["project"]["optional-dependencies"]["lint"]  # the lint extra, as pre-commit cannot name extras of a repo


@pytest.mark.parametrize("path, ran_by", [
    ("alembic/versions/2024_01_01_1200_abc123_add_x.py", {"dbtasks-heads", "dbtasks-lint", "dbtasks-docs", "dbtasks-ledger"}),
    ("backend/migrations/versions/abc123_add_x.py", {"dbtasks-heads", "dbtasks-lint", "dbtasks-docs", "dbtasks-ledger"}),
    ("alembic.ini", {"dbtasks-heads", "dbtasks-lint", "dbtasks-docs", "dbtasks-ledger"}),
    ("migrations.sum", {"dbtasks-ledger"}),
    ("pyproject.toml", {"dbtasks-lint", "dbtasks-docs"}),
    ("docs/database/schema.sql", {"dbtasks-docs"}),
    ("README.md", {"dbtasks-docs"}),
    ("app/models.py", set()),  # the docs are drawn from the migrations, not the models
    ("docs/guide.md", set()),
])
def test_pre_commit_hooks_run_for_migration_and_docs_files(path, ran_by):
    assert {h["id"] for h in hooks() if re.search(h["files"], path)} == ran_by


def test_hooks_that_say_no_database_need_none(tmp_path):
    """heads and lint run with DATABASE_URL at a closed port; docs says it needs a server, and does."""
    by_id = {h["id"]: h for h in hooks()}
    assert "no database" in by_id["dbtasks-heads"]["description"].lower()
    assert "no database" in by_id["dbtasks-lint"]["description"].lower()
    assert "needs a database server" in by_id["dbtasks-docs"]["description"].lower()
    project = copy_project(tmp_path / "project")
    nowhere = {"DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{closed_port()}/app"}
    for hook in ("dbtasks-heads", "dbtasks-lint"):
        proc = run(shlex.split(by_id[hook]["entry"])[1:], project, **nowhere)
        assert proc.returncode == 0, (hook, proc.stdout, proc.stderr)
    proc = run(shlex.split(by_id["dbtasks-docs"]["entry"])[1:], project, **nowhere)
    assert proc.returncode == 2 and "cannot connect" in proc.stderr, proc.stdout + proc.stderr
