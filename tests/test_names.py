"""The one name table (dbtasks/names.py) against the Makefile, the justfile, the CLI and the README,
and remedies that name the command the user actually has: make, just or the bare CLI."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from dbtasks import names
from dbtasks.checks.runner import registry
from dbtasks.cli import cli
from dbtasks.config import SETTINGS
from dbtasks.testing import free_port

from .conftest import REPO, assert_one_line_error, clean_env, run, run_just, run_make

registry()  # the checks register their recipes
ROWS = {row.recipe: row for row in names.rows()}


# The kit's Makefile and justfile hold its setup recipes and include the shipped ones.
FILES = {"Makefile": ("Makefile", "dbtasks/share/dbtasks.mk"), "justfile": ("justfile", "dbtasks/share/dbtasks.just")}


def text_of(kind: str) -> str:
    return "\n".join((REPO / path).read_text() for path in FILES[kind])


def make_recipes() -> dict[str, str]:
    out = {}
    for line in text_of("Makefile").splitlines():
        m = re.match(r"^([a-zA-Z0-9_-]+):.*## (.*)$", line)
        if m:
            out[m[1]] = m[2]
    return out


def just_recipes() -> dict[str, str]:
    lines = text_of("justfile").splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = re.match(r"^([a-zA-Z0-9_-]+)(\s[^:]*)?:(\s.*)?$", line)
        if m and ":=" not in line and i and lines[i - 1].startswith("# "):
            out[m[1]] = lines[i - 1][2:]
    return out


def recipe_body(path: str, recipe: str) -> str:
    lines = text_of(path).splitlines()
    start = [i for i, line in enumerate(lines) if re.match(rf"^{re.escape(recipe)}(\s[^:]*)?:", line)][-1]  # the kit's own wins
    body = []
    for line in lines[start + 1:]:
        if not line.startswith(("\t", "    ")):
            break
        body.append(line.strip())
    return " ".join(body)


def test_every_recipe_is_one_row_with_the_same_help_in_make_and_just():
    assert set(make_recipes()) == set(ROWS), set(make_recipes()) ^ set(ROWS)
    assert set(just_recipes()) == set(ROWS), set(just_recipes()) ^ set(ROWS)
    for recipe, row in ROWS.items():
        assert make_recipes()[recipe] == row.help, recipe
        assert just_recipes()[recipe] == row.help, recipe


@pytest.mark.parametrize("recipe", sorted(r for r, row in ROWS.items() if row.verb))
def test_each_recipe_calls_the_verb_of_its_row(recipe):
    row = ROWS[recipe]
    for path, program in (("Makefile", "$(DBTASKS)"), ("justfile", "{{dbtasks}}")):
        body = recipe_body(path, recipe)
        words = body.split(program, 1)[1].split() if program in body else []
        verb = " ".join(row.words).replace("--env prod ", "")
        assert " ".join(words).startswith(verb), (path, recipe, body)


@pytest.mark.parametrize("recipe", sorted(r for r, row in ROWS.items() if row.verb))
def test_each_verb_exists_and_each_function_is_real(recipe):
    row = ROWS[recipe]
    verb = next(w for w in row.words if not w.startswith("-") and w != "prod")
    assert cli.get_command(None, verb) is not None, verb
    module, _, attr = row.function.rpartition(".")
    assert callable(getattr(importlib.import_module(f"dbtasks.{module}"), attr)), row.function


def test_every_registered_check_has_recipes_a_verb_and_a_readme_row():
    readme = (REPO / "README.md").read_text()
    for check in registry():
        assert check.recipe in make_recipes() and check.recipe in just_recipes(), check.name
        assert cli.get_command(None, check.verb) is not None, check.name
        assert f"| `{check.recipe}`" in readme, f"README has no row for {check.recipe}"
        assert check.help and check.description, check.name


def test_readme_tables_are_generated_from_the_declarations():
    proc = subprocess.run([sys.executable, "scripts/readme_tables.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    readme = (REPO / "README.md").read_text()
    assert names.markdown_table() in readme


def test_every_recipe_variable_reaches_dbtasks_from_make_and_just():
    """A setting carried by a make variable is exported by the Makefile and passed by the justfile."""
    makefile = text_of("Makefile")
    justfile = text_of("justfile")
    for s in SETTINGS:
        if not (s.make or s.is_argument):
            continue
        carrier = s.make or s.variable
        if carrier not in makefile:
            continue  # a CLI-only argument (no recipe passes it)
        assert re.search(rf"export [^\n]*\b{s.variable}\b", makefile), (s.name, "Makefile")
        assert re.search(rf"\${s.variable}\b|export {s.variable}\b|\b{s.variable}=\"\$", justfile), (s.name, "justfile")


# -- remedies follow the runner ---------------------------------------------------


@pytest.mark.parametrize(
    "runner, expected",
    [
        ("make", "make db-migrate-down STEPS=2"),
        ("just", "just db-migrate-down 2"),
        ("cli", "dbtasks downgrade --steps 2"),
    ],
)
def test_command_is_built_for_the_runner(monkeypatch, runner, expected):
    monkeypatch.setenv(names.RUNNER_VARIABLE, runner)
    assert names.command("db-migrate-down", STEPS=2) == expected


def test_command_quotes_and_orders_values(monkeypatch):
    monkeypatch.setenv(names.RUNNER_VARIABLE, "make")
    assert names.command("db-migrate-create", MIGRATE_MSG="add x") == 'make db-migrate-create MIGRATE_MSG="add x"'
    assert names.command("db-migrate", env="prod", confirm="app_prod") == "make db-migrate ENV=prod CONFIRM=app_prod"
    monkeypatch.setenv(names.RUNNER_VARIABLE, "just")
    assert names.command("db-migrate-down", TO="abc") == 'just db-migrate-down "" abc'
    assert names.command("db-migrate", env="prod") == "just ENV=prod db-migrate"
    monkeypatch.delenv(names.RUNNER_VARIABLE)
    assert names.command("db-cleanup", OLDER_THAN="1 year", APPLY=1) == 'dbtasks cleanup --older-than "1 year" --apply'
    with pytest.raises(ValueError):
        names.command("db-status", STEPS=1)


def test_remedy_names_the_make_recipe_the_just_recipe_or_the_verb(project):
    """The same error, reached three ways, names the command each user has."""
    env = {"DB_SERVER": "local", "DBTASKS_PG_PORT": str(free_port()), "DBTASKS_PG_DATA": str(project / "nowhere")}
    assert_one_line_error(run_make("db-status", project, **env), "cannot connect", "run `make start-db`")
    assert_one_line_error(run_just(["db-status"], project, **env), "cannot connect", "run `just start-db`")
    assert_one_line_error(run(["status"], project, **env), "cannot connect", "run `dbtasks start-db`")


def test_a_foreign_makefile_gets_the_cli_verb(project):
    """A team's own Makefile calling dbtasks is not ours: remedies name the verb, not our recipes."""
    (project / "Makefile").write_text("status:\n\tdbtasks status\n")
    env = {"DB_SERVER": "local", "DBTASKS_PG_PORT": str(free_port()), "DBTASKS_PG_DATA": str(project / "nowhere")}
    proc = subprocess.run(["make", "-s", "status"], cwd=project, capture_output=True, text=True, env=clean_env(**env))
    assert "run `dbtasks start-db`" in proc.stderr, proc.stderr
