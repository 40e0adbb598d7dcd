"""``dbtasks adopt``: set dbtasks up in an existing Alembic project.

:func:`plan` reads the project and works out every change first, in memory;
nothing is written until :func:`apply` runs, so a bad input (no alembic.ini,
a pyproject.toml that is not TOML ...) changes nothing. The changes:

- ``dbtasks.mk`` and ``dbtasks.just``: copies of the recipes dbtasks ships
  (``dbtasks/share/``), included from the project's Makefile and imported
  from its justfile (each created when missing). The include and the import
  go at the top of the file, so a target or recipe of the project's own with
  the same name (its ``help``, its ``check``) keeps working and takes
  precedence; the plan names every shadowed recipe and the ``dbtasks`` verb
  that still runs it. make prints its own "overriding recipe" warning for
  each; the justfile gets ``set allow-duplicate-recipes``, which lets the
  project's recipe win silently.
- alembic.ini: the post-write hook that formats each new revision file
  (autoflake, isort, black, through ``dbtasks format-revision``) and a
  date-named ``file_template``, added as text so its comments stay. A
  project's own hooks or file_template are left as they are.
- pyproject.toml: ``[tool.dbtasks]`` with the database name derived from the
  project's name (created when missing); an existing key is never changed.
- .gitignore: ``data/``, ``dumps/``, ``backups/`` when missing.

A file of the user's is never overwritten: an existing ``dbtasks.mk`` that
differs from the shipped one is left alone and reported (remove it and run
adopt again to take this version's). Running adopt twice changes nothing.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import re
import sys
from importlib import resources
from pathlib import Path

from dbtasks import __version__
from dbtasks.errors import ConfigError, UsageError, read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The kit's own alembic.ini uses the same block (see its [post_write_hooks]).
HOOK_NAME = "dbtasks_format"
HOOK_LINES = (
    "# dbtasks (written by `dbtasks adopt`): autoflake, isort and black on each new",
    "# revision file only, so it passes `black --check` as written.",
    f"hooks = {HOOK_NAME}",
    f"{HOOK_NAME}.type = module",
    f"{HOOK_NAME}.module = dbtasks",
    f"{HOOK_NAME}.options = format-revision REVISION_SCRIPT_FILENAME",
)
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s"
FILE_TEMPLATE_LINES = (
    "# dbtasks: date-named revision files (2026_11_21_<rev>_<slug>.py) sort by date.",
    f"file_template = {FILE_TEMPLATE}",
)
GITIGNORE = ("data/", "dumps/", "backups/")
MAKEFILES = ("GNUmakefile", "makefile", "Makefile")  # the order GNU make looks for them
JUSTFILES = ("justfile", "Justfile", ".justfile")

_MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.%/-]+(?:[ \t]+[A-Za-z0-9_.%/-]+)*)[ \t]*::?(?![=:])")
_JUST_RECIPE = re.compile(r"^@?([A-Za-z_][A-Za-z0-9_-]*)(?:[ \t][^:\n]*)?:(?!=)")
_JUST_VARIABLE = re.compile(r"^(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:=")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclasses.dataclass
class Change:
    """One file adopt writes: ``create`` or ``edit``, what it adds, the new text."""

    path: Path
    action: str
    summary: str
    text: str


@dataclasses.dataclass
class Plan:
    """Everything adopt would do in ``project_dir``; nothing is written yet."""

    project_dir: Path
    changes: list[Change]
    notes: list[str]  # what is left as it is, and why; shadowed recipes
    runner: str  # "make", or "just" when the project had only a justfile
    models: str | None  # the models module env.py's target_metadata comes from

    @property
    def next_commands(self) -> list[str]:
        """The three commands to run next, for the project's runner."""
        if self.runner == "just":
            return ["just init-db", 'just db-migrate-create "describe the change"', "just check"]
        return ["make init-db", 'make db-migrate-create MIGRATE_MSG="describe the change"', "make check"]


def shipped(name: str) -> str:
    """The text of a recipe file dbtasks ships: ``dbtasks.mk`` or ``dbtasks.just``."""
    return (resources.files("dbtasks") / "share" / name).read_text(encoding="utf-8")


def shipped_recipes(name: str) -> list[str]:
    """The recipe names a shipped file defines, in file order."""
    text = shipped(name)
    return _make_targets(text) if name.endswith(".mk") else _just_names(text)[0]


# -- reading the project --------------------------------------------------------------


def _read(path: Path) -> str | None:
    return read_text(path) if path.exists() else None


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _joined(lines: list[str], original: str) -> str:
    return "\n".join(lines) + ("\n" if lines and (original.endswith("\n") or not original) else "")


def _header_end(lines: list[str]) -> int:
    """Index after the leading block of comments and blank lines of a Makefile or justfile."""
    index = 0
    while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith("#")):
        index += 1
    if 0 < index < len(lines) and lines[index - 1].strip():
        # A comment right on top of the first rule belongs to that rule.
        while index > 0 and lines[index - 1].strip():
            index -= 1
    return index


def _make_targets(text: str) -> list[str]:
    targets: list[str] = []
    for line in text.splitlines():
        if line.startswith(("\t", " ", "#")):
            continue
        match = _MAKE_TARGET.match(line)
        if match:
            targets += [t for t in match.group(1).split() if not t.startswith(".") and t not in targets]
    return targets


def _just_names(text: str) -> tuple[list[str], list[str]]:
    """The recipes and the variables a justfile defines, in file order."""
    recipes: list[str] = []
    variables: list[str] = []
    for line in text.splitlines():
        if line.startswith((" ", "\t", "#", "[")) or line.startswith(("set ", "import ", "mod ", "alias ")):
            continue
        var = _JUST_VARIABLE.match(line)
        if var:
            variables.append(var.group(1))
            continue
        match = _JUST_RECIPE.match(line)
        if match:
            recipes.append(match.group(1))
    return recipes, variables


def _verbs_of(recipes: list[str]) -> str:
    from dbtasks import names

    shown = []
    for name in recipes:
        try:
            row = names.recipe(name)
        except KeyError:
            row = None
        if name == "help":
            shown.append("help (`dbtasks --help`)")
        else:
            shown.append(f"{name} (`dbtasks {row.verb}`)" if row is not None and row.verb else name)
    return ", ".join(shown)


def _plan_recipe_file(project: Path, name: str, changes: list[Change], notes: list[str]) -> None:
    path = project / name
    text = shipped(name)
    existing = _read(path)
    if existing is None:
        kind = "make" if name.endswith(".mk") else "just"
        changes.append(Change(path, "create", f"the {kind} recipes of dbtasks {__version__} (a copy of the file it ships)", text))
    elif existing != text:
        notes.append(f"{name} differs from the one dbtasks {__version__} ships; left as it is (remove it and run `dbtasks adopt` again to take this version's)")


def _at_the_top(path: Path, existing: str, block: list[str], what: str) -> Change:
    """``block`` inserted after the file's leading comment, set off by blank lines."""
    lines = _lines(existing)
    at = _header_end(lines)
    block = block + [""]
    if at > 0 and lines[at - 1].strip():
        block.insert(0, "")
    return Change(path, "edit", what, _joined(lines[:at] + block + lines[at:], existing))


def _needs_line(project: Path, candidates, included: str, changes: list[Change], what: str, new_file: str) -> tuple[Path, str | None] | None:
    """The project's Makefile/justfile (the first of ``candidates`` that exists) and its text.

    None: there is none, and a ``Makefile``/``justfile`` holding ``new_file``
    is planned. The text is None when it already includes ours.
    """
    path = next((project / n for n in candidates if (project / n).is_file()), None)
    if path is None:
        name = "Makefile" if candidates is MAKEFILES else "justfile"
        changes.append(Change(project / name, "create", what, new_file))
        return None
    existing = read_text(path)
    return path, None if re.search(included, existing, re.M) else existing


# The generic names dbtasks.mk leaves to a Makefile that lists them in DBTASKS_OWN_TARGETS.
OWN_TARGETS = ("help", "init", "check")


def _plan_makefile(project: Path, changes: list[Change], notes: list[str]) -> bool:
    """Include dbtasks.mk from the project's Makefile; True when the project had one."""
    found = _needs_line(
        project, MAKEFILES, r"^\s*-?include\s+(.*\s)?\S*dbtasks\.mk\b", changes, "includes dbtasks.mk",
        "# Database recipes from dbtasks (`make help` lists them); written by `dbtasks adopt`.\n"
        "# Targets of your own go below; one named like a dbtasks recipe takes its place.\n"
        "include dbtasks.mk\n",
    )
    if found is None:
        return False
    path, existing = found
    if existing is None:
        return True
    shadowed = [r for r in shipped_recipes("dbtasks.mk") if r in _make_targets(existing)]
    own = [r for r in shadowed if r in OWN_TARGETS]  # dbtasks.mk steps aside for these
    warned = [r for r in shadowed if r not in OWN_TARGETS]
    block = [
        "# Database recipes from dbtasks (`make help` lists them); written by `dbtasks adopt`.",
        "# Included first, so a target below with the same name takes precedence.",
        *([f"DBTASKS_OWN_TARGETS := {' '.join(own)}  # yours: dbtasks.mk leaves these names to you"] if own else []),
        "include dbtasks.mk",
    ]
    changes.append(_at_the_top(path, existing, block, "includes dbtasks.mk at the top"))
    if shadowed:
        warning = f" (make warns \"overriding recipe\" for {', '.join(warned)}; rename yours to silence it)" if warned else ""
        notes.append(
            f"{path.name} has its own {', '.join(shadowed)}: yours keep working and take precedence over "
            f"dbtasks'{warning}; dbtasks' stay available as {_verbs_of(shadowed)}"
        )
    return True


def _plan_justfile(project: Path, changes: list[Change], notes: list[str]) -> bool:
    """Import dbtasks.just from the project's justfile; True when the project had one."""
    found = _needs_line(
        project, JUSTFILES, r"^\s*import\??\s+['\"]\S*dbtasks\.just['\"]", changes, "imports dbtasks.just",
        "# Database recipes from dbtasks (`just --list` shows them); written by `dbtasks adopt`.\n"
        "# Recipes of your own go below; one named like a dbtasks recipe takes its place.\n"
        "set allow-duplicate-recipes := true\n"
        "set allow-duplicate-variables := true\n"
        "\n"
        "import 'dbtasks.just'\n",
    )
    if found is None:
        return False
    path, existing = found
    if existing is None:
        return True
    recipes, variables = _just_names(existing)
    shadowed = [r for r in shipped_recipes("dbtasks.just") if r in recipes]
    shipped_vars = set(_just_names(shipped("dbtasks.just"))[1])
    block = ["# Database recipes from dbtasks (`just --list` shows them); written by `dbtasks adopt`."]
    if shadowed and not re.search(r"^set\s+allow-duplicate-recipes\b", existing, re.M):
        block.append("# A recipe below with the same name as a dbtasks recipe takes its place.")
        block.append("set allow-duplicate-recipes := true")
    if set(variables) & shipped_vars and not re.search(r"^set\s+allow-duplicate-variables\b", existing, re.M):
        block.append("set allow-duplicate-variables := true")
    block.append("import 'dbtasks.just'")
    changes.append(_at_the_top(path, existing, block, "imports dbtasks.just at the top"))
    if shadowed:
        notes.append(f"{path.name} has its own {', '.join(shadowed)}: yours keep working and take precedence over dbtasks'; dbtasks' stay available as {_verbs_of(shadowed)}")
    both = [v for v in variables if v in shipped_vars]
    if both:
        notes.append(f"{path.name} sets {', '.join(both)}, which dbtasks.just reads too: your value wins and reaches the dbtasks recipes (ENV selects NAME_DATABASE_URL); rename yours if that is not meant")
    return True


# -- alembic.ini ----------------------------------------------------------------------


def _parse_ini(text: str, path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(defaults={"here": str(path.parent)})
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path} cannot be parsed ({first})", "fix the file, then run `dbtasks adopt` again") from None
    return parser


def _section_span(lines: list[str], name: str) -> tuple[int, int] | None:
    """(index of the header, index where its content ends) of section ``name``."""
    start = None
    for i, line in enumerate(lines):
        match = _SECTION.match(line)
        if not match:
            continue
        if start is not None:
            end = i
            # A comment block right on top of the next header belongs to it.
            while end > start + 1 and lines[end - 1].lstrip().startswith(("#", ";")):
                end -= 1
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            return start, end
        if match.group(1).strip() == name:
            start = i
    if start is None:
        return None
    end = len(lines)
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def _plan_alembic_ini(ini: Path, changes: list[Change], notes: list[str]) -> Path:
    """Hook and file_template; returns the env.py of the project."""
    original = read_text(ini)
    parser = _parse_ini(original, ini)
    if not parser.has_option("alembic", "script_location"):
        raise ConfigError(f"{ini} has no [alembic] script_location, so it is not an Alembic configuration", "run `alembic init alembic` first")
    lines = _lines(original)
    added: list[str] = []

    if parser.has_option("alembic", "file_template"):
        if parser.get("alembic", "file_template", raw=True) != FILE_TEMPLATE:
            notes.append(f"{ini.name} has its own file_template; left as it is")
    else:
        start, end = _section_span(lines, "alembic")  # type: ignore[misc]
        at = None
        for i in range(start + 1, end):
            if re.match(r"^\s*[#;]\s*file_template\s*=", lines[i]):
                at = i + 1
                while at < end and lines[at].strip():  # the end of that comment paragraph
                    at += 1
                break
        if at is None:
            at = next(i + 1 for i in range(start + 1, end) if re.match(r"^\s*script_location\s*=", lines[i]))
            block = list(FILE_TEMPLATE_LINES)
        else:
            block = ["", *FILE_TEMPLATE_LINES]
        lines[at:at] = block
        added.append("a date-named file_template")

    hooks = parser.get("post_write_hooks", "hooks", fallback="").strip() if parser.has_section("post_write_hooks") else ""
    if hooks:
        if HOOK_NAME not in re.split(r"[\s,]+", hooks):
            notes.append(f"{ini.name} has its own post_write_hooks ({hooks}); left as they are (add {HOOK_NAME} as in the dbtasks docs to format new revisions)")
    else:
        span = _section_span(lines, "post_write_hooks")
        if span is None:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ["", "[post_write_hooks]", *HOOK_LINES]
        else:
            lines[span[1]:span[1]] = ["", *HOOK_LINES]
        added.append("the post-write hook (autoflake, isort, black)")

    if added:
        text = _joined(lines, original)
        check = _parse_ini(text, ini)  # what we wrote must read back as intended
        assert check.get("alembic", "file_template", raw=True) and check.get("post_write_hooks", "hooks", fallback=None), text
        changes.append(Change(ini, "edit", "adds " + " and ".join(added), text))

    location = parser.get("alembic", "script_location")
    script_dir = Path(location)
    if not script_dir.is_absolute():
        script_dir = ini.parent / script_dir
    return script_dir / "env.py"


def models_module(env_py: Path) -> str | None:
    """The module ``target_metadata`` in env.py comes from: ``from myapp.models import Base`` -> ``myapp.models``."""
    try:
        tree = ast.parse(read_text(env_py))
    except (ConfigError, SyntaxError, ValueError):
        return None
    root = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "target_metadata" for t in node.targets):
            value = node.value
            if isinstance(value, (ast.List, ast.Tuple)) and value.elts:
                value = value.elts[0]
            while isinstance(value, (ast.Attribute, ast.Call)):
                value = value.value if isinstance(value, ast.Attribute) else value.func
            if isinstance(value, ast.Name):
                root = value.id
    if root is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == root:
                    # `from myapp import models` imports a module; `from myapp.models import Base` a name.
                    return f"{node.module}.{alias.name}" if alias.name[:1].islower() and alias.name != "metadata" else node.module
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) == root:
                    return alias.name
    return None


# -- pyproject.toml ------------------------------------------------------------------


def _plan_pyproject(project: Path, ini: Path, changes: list[Change], notes: list[str]) -> None:
    from dbtasks.config import database_identifier, project_name

    path = project / "pyproject.toml"
    original = _read(path)
    try:
        data = tomllib.loads(original or "")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", "fix it, then run `dbtasks adopt` again") from None
    section = data.get("tool", {}).get("dbtasks", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.dbtasks] in {path} is not a table", "write it as a [tool.dbtasks] section, then run `dbtasks adopt` again")
    wanted: dict[str, str] = {"db_name": database_identifier(project_name(project))}
    if ini.resolve() != (project / "alembic.ini").resolve():
        try:
            wanted["alembic_ini"] = ini.resolve().relative_to(project.resolve()).as_posix()
        except ValueError:
            wanted["alembic_ini"] = str(ini.resolve())
    missing = {k: v for k, v in wanted.items() if k not in section}
    for key in wanted.keys() - missing.keys():
        if section[key] != wanted[key]:
            notes.append(f"pyproject.toml sets [tool.dbtasks] {key} = {section[key]!r} already; left as it is")
    if not missing:
        return
    body = [f"{k} = {_toml_string(v)}" for k, v in missing.items()]
    text = original or ""
    lines = _lines(text)
    header = next((i for i, line in enumerate(lines) if re.match(r"^\s*\[\s*tool\s*\.\s*dbtasks\s*\]\s*(#.*)?$", line)), None)
    if header is not None:
        lines[header + 1:header + 1] = body
        new = _joined(lines, text)
    else:
        block = ["[tool.dbtasks]", "# Written by `dbtasks adopt`; `dbtasks settings` shows every setting and where it comes from.", *body]
        while lines and not lines[-1].strip():
            lines.pop()
        new = _joined([*lines, *([""] if lines else []), *block], text or "\n")
    try:
        written = tomllib.loads(new).get("tool", {}).get("dbtasks", {})
    except tomllib.TOMLDecodeError:
        written = {}
    if any(written.get(k) != v for k, v in missing.items()):
        raise ConfigError(
            f"cannot add [tool.dbtasks] to {path} as text (its tables are laid out in a way adopt does not edit)",
            "add " + ", ".join(body) + " under [tool.dbtasks] by hand, then run `dbtasks adopt` again",
        )
    summary = "[tool.dbtasks] " + ", ".join(body)
    changes.append(Change(path, "edit" if original is not None else "create", summary, new))


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plan_gitignore(project: Path, changes: list[Change]) -> None:
    path = project / ".gitignore"
    original = _read(path)
    present = {line.strip().strip("/") for line in (original or "").splitlines()}
    missing = [entry for entry in GITIGNORE if entry.strip("/") not in present]
    if not missing:
        return
    lines = _lines(original or "")
    block = ["# dbtasks: the local server's data, dumps and backups", *missing]
    new = "\n".join([*lines, *([""] if lines and lines[-1].strip() else []), *block]) + "\n"
    changes.append(Change(path, "edit" if original is not None else "create", "ignores " + ", ".join(missing), new))


# -- the verb --------------------------------------------------------------------------


def plan(project_dir: Path, alembic_ini: Path | None = None) -> Plan:
    """Work out what adopting dbtasks changes in ``project_dir``; writes nothing.

    ``alembic_ini`` defaults to ``project_dir/alembic.ini``; another path is
    recorded as ``alembic_ini`` in ``[tool.dbtasks]``.
    """
    project = Path(project_dir).resolve()
    ini = Path(alembic_ini) if alembic_ini else project / "alembic.ini"
    if not ini.is_absolute():
        ini = project / ini
    if not ini.exists():
        where = "in this directory" if ini.parent.resolve() == project else f"at {ini}"
        raise UsageError(
            f"no alembic.ini {where}: dbtasks adopt works in an existing Alembic project",
            "run `alembic init alembic` first (or pass -c path/to/alembic.ini)",
        )
    changes: list[Change] = []
    notes: list[str] = []
    env_py = _plan_alembic_ini(ini, changes, notes)
    models = models_module(env_py) if env_py.is_file() else None
    if models is None:
        notes.append(f"{env_py.name} sets no target_metadata from your models: set it (target_metadata = Base.metadata) so revisions are autogenerated and drift is checked")
    _plan_pyproject(project, ini, changes, notes)
    _plan_recipe_file(project, "dbtasks.mk", changes, notes)
    had_makefile = _plan_makefile(project, changes, notes)
    _plan_recipe_file(project, "dbtasks.just", changes, notes)
    had_justfile = _plan_justfile(project, changes, notes)
    _plan_gitignore(project, changes)
    runner = "just" if had_justfile and not had_makefile else "make"
    return Plan(project, changes, notes, runner, models)


def apply(plan: Plan) -> list[Path]:
    """Write the planned changes; returns the files written."""
    written = []
    for change in plan.changes:
        change.path.write_text(change.text, encoding="utf-8")
        written.append(change.path)
    return written
