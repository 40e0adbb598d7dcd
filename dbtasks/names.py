"""The one name table: recipe <-> CLI verb <-> library function (<-> check).

Every recipe of the Makefile and the justfile has one row in recipes.toml
(next to this module; data, read by :func:`rows`), and the
README's recipe table, ``make help``, ``just --list`` and the recipes
themselves are tested against it. Checks add their own rows when the check
registry (:func:`dbtasks.checks.runner.registry`) loads them, so a new check is one
module plus its recipe lines.

Remedies in messages are built here with :func:`command`, so a message names
what the user actually has:

- run through our Makefile (which exports ``DBTASKS_RUNNER=make``): the make
  recipe, ``make db-migrate-down STEPS=2``;
- run through our justfile (``DBTASKS_RUNNER=just``): the just recipe,
  ``just db-migrate-down 2``;
- anything else (the ``dbtasks`` CLI in a project without our recipes, a
  team's own Makefile): the verb, ``dbtasks downgrade --steps 2``.

This module sits at the bottom of the package (it imports nothing of
dbtasks), so every layer can build its remedies from it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUNNER_VARIABLE = "DBTASKS_RUNNER"


@dataclasses.dataclass(frozen=True)
class Param:
    """One value a recipe passes: its make variable, its just position, its CLI flag."""

    variable: str  # make variable (MIGRATE_MSG, STEPS, ...), exported to dbtasks
    flag: str  # the CLI flag carrying the same value (--message, --steps, ...)
    positional: bool = True  # a just recipe takes it as a positional argument


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One row of the table."""

    recipe: str  # make and just recipe name
    verb: str | None  # `dbtasks` command line after the program name, None for pure make/just chores
    function: str | None  # library function, dotted from the package
    help: str  # one line, shown by make help and just --list
    params: tuple[Param, ...] = ()
    alias_of: str | None = None
    check: str | None = None  # the check name, for recipes that run one check

    @property
    def words(self) -> list[str]:
        return shlex.split(self.verb) if self.verb else []


SINCE = Param("SINCE", "--since")
ALL = Param("ALL", "--all")
FORMAT = Param("FORMAT", "--format")

# Values every recipe accepts, passed before the recipe name under just.
GLOBAL_PARAMS = {
    "env": Param("ENV", "--env", positional=False),
    "confirm": Param("CONFIRM", "--confirm", positional=False),
}

def _load() -> list[Recipe]:
    """The rows of recipes.toml, next to this module (data, not code: one place to read them all)."""
    data = tomllib.loads((Path(__file__).parent / "recipes.toml").read_text(encoding="utf-8"))
    return [
        Recipe(
            row["name"], row.get("verb"), row.get("function"), row["help"],
            tuple(Param(variable, flag) for variable, flag in row.get("params", ())), row.get("alias_of"),
        )
        for row in data["recipe"]
    ]


_ROWS: list[Recipe] = _load()

_BY_RECIPE: dict[str, Recipe] = {}


def register(row: Recipe) -> Recipe:
    """Add a row (the check registry adds one per check); a name is registered once."""
    existing = _BY_RECIPE.get(row.recipe)
    if existing is not None and existing != row:
        raise ValueError(f"recipe {row.recipe!r} is declared twice")
    if existing is None:
        _ROWS.append(row)
        _BY_RECIPE[row.recipe] = row
    return row


for _row in list(_ROWS):
    _BY_RECIPE[_row.recipe] = _row


def rows() -> tuple[Recipe, ...]:
    """Every row: the table above plus the rows registered by checks."""
    return tuple(_ROWS)


def recipe(name: str) -> Recipe:
    return _BY_RECIPE[name]


def runner() -> str:
    """``make``, ``just`` or ``cli``: how this process was started, as far as remedies care."""
    value = os.environ.get(RUNNER_VARIABLE, "").strip().lower()
    return value if value in ("make", "just") else "cli"


def _quote(value: str) -> str:
    return value if value and all(c.isalnum() or c in "-_./:=@," for c in value) else '"' + value.replace('"', '\\"') + '"'


def command(name: str, /, **values: str | int) -> str:
    """The command that runs recipe ``name`` for this user, e.g. ``make db-migrate-down STEPS=2``.

    ``values`` are keyed by make variable (``STEPS=2``) or by the global
    settings ``env``/``confirm``; a value is shown as given (``"<rev>"`` is fine).
    """
    row = recipe(name)
    how = runner()
    given = {k: str(v) for k, v in values.items()}
    globals_ = {k: given.pop(k) for k in list(given) if k in GLOBAL_PARAMS}
    params = {p.variable: p for p in row.params}
    unknown = set(given) - set(params)
    if unknown:
        raise ValueError(f"recipe {name!r} takes no {', '.join(sorted(unknown))}")
    if how == "make":
        parts = ["make", name]
        parts += [f"{GLOBAL_PARAMS[k].variable}={_quote(v)}" for k, v in globals_.items()]
        parts += [f"{k}={_quote(v)}" for k, v in given.items()]
        return " ".join(parts)
    if how == "just":
        parts = ["just"] + [f"{GLOBAL_PARAMS[k].variable}={_quote(v)}" for k, v in globals_.items()] + [name]
        for p in row.params:  # positional, in order; a gap is filled with the empty string
            if p.variable in given:
                parts.append(_quote(given[p.variable]))
            elif any(q.variable in given for q in row.params[row.params.index(p) + 1:]):
                parts.append('""')
        return " ".join(parts)
    if row.verb is None:
        raise ValueError(f"recipe {name!r} has no dbtasks verb")
    parts = ["dbtasks"] + [f"{GLOBAL_PARAMS[k].flag} {_quote(v)}" for k, v in globals_.items()] + row.words
    for var, value in given.items():
        flag = params[var].flag
        parts.append(flag if value in ("1", "true") and flag in ("--all", "--apply", "--dry-run", "--write", "--force", "--all-rows") else f"{flag} {_quote(value)}")
    return " ".join(parts)


def given(assignment: str, flag: str) -> str:
    """How this user wrote a setting: ``MASK=0`` under make or just, ``--no-mask`` on the bare CLI."""
    return assignment if runner() in ("make", "just") else flag


def run(name: str, /, **values: str | int) -> str:
    """``run `<command>` `` for messages."""
    return f"run `{command(name, **values)}`"


def markdown_table() -> str:
    """The README's recipe table, generated from the rows (checks included once registered)."""
    out = ["| recipe (make / just) | CLI verb | library function | what it does |", "|---|---|---|---|"]
    for row in rows():
        verb = f"`dbtasks {row.verb}`" if row.verb else "—"
        function = f"`{row.function}`" if row.function else "—"
        params = " ".join(f"{p.variable}=…" for p in row.params)
        recipe = f"`{row.recipe}`" + (f" {params}" if params else "")
        out.append(f"| {recipe} | {verb} | {function} | {row.help} |")
    return "\n".join(out) + "\n"
