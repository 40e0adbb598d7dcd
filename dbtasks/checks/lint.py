"""lint: revision files read without a database.

Rules (the ``rule`` of each finding):

- ``import-error``: the revision file cannot be imported (the others are still linted).
- ``self-contained``: the revision imports something other than the standard
  library, alembic, sqlalchemy and the allow-list (``lint_allowed_imports``),
  typically the application's own models, which move on after the revision is
  written and then break it.
- ``missing-revision-id``: no ``revision = "..."`` assignment.
- ``missing-downgrade``: no ``downgrade()`` function.
- ``empty-downgrade`` (warning): ``downgrade()`` only passes while ``upgrade()`` does something.
- ``revision-id-mismatch`` / ``down-revision-mismatch``: the variables disagree
  with the docstring's ``Revision ID:`` / ``Revises:`` lines.
- SQL safety: each revision's SQL is rendered in Alembic's offline mode and
  linted with squawk for the configured PostgreSQL version; squawk's rule names
  are used as they are (``adding-required-field``, ``require-concurrent-index-creation``,
  ``changing-column-type``, ``constraint-missing-not-valid``, ``ban-drop-column``,
  ``renaming-column``, ``renaming-table``, ...). ``sql-not-rendered`` (warning)
  says a revision's SQL could not be rendered offline.
- ``suppression-without-reason``: a suppression comment that does not say why.

A line ``# dbtasks: allow <rule>: <why>`` anywhere in a revision file
suppresses that rule for that file.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import load_python_file

from dbtasks import names
from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.changes import scope as changes_scope
from dbtasks.checks.workspace import Workspace
from dbtasks.config import Settings, shown_path
from dbtasks.errors import ConfigError, DbtasksError, redact
from dbtasks.migrations import EnvPyError, import_roots, revision_ids

NAME = "lint"
BASE_ALLOWED = ("alembic", "sqlalchemy")
SUPPRESSION = re.compile(r"#\s*dbtasks:\s*allow\s+(?P<rule>[\w.-]+)\s*(?::\s*(?P<why>.*?))?\s*$")

# The op.* calls that produce the SQL a squawk rule is about, to point at a line.
RULE_OPS = {
    "adding-required-field": ("add_column",),
    "adding-not-nullable-field": ("alter_column", "add_column"),
    "adding-field-with-default": ("add_column",),
    "require-concurrent-index-creation": ("create_index",),
    "changing-column-type": ("alter_column",),
    "constraint-missing-not-valid": ("create_foreign_key", "create_check_constraint"),
    "adding-foreign-key-constraint": ("create_foreign_key",),
    "ban-drop-column": ("drop_column",),
    "ban-drop-table": ("drop_table",),
    "renaming-column": ("alter_column",),
    "renaming-table": ("rename_table",),
    "disallowed-unique-constraint": ("create_unique_constraint",),
    "adding-primary-key-constraint": ("create_primary_key",),
}


@dataclasses.dataclass
class RevisionFile:
    """One revision file as lint sees it: source, syntax tree, identifiers."""

    path: Path
    source: str
    tree: ast.Module | None = None
    syntax_error: str | None = None
    revision: str | None = None
    down_revision: tuple[str, ...] | None = None
    has_revision: bool = False
    has_down_revision: bool = False
    suppressions: dict[str, str] = dataclasses.field(default_factory=dict)
    bad_suppressions: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "RevisionFile":
        source = path.read_text(encoding="utf-8", errors="replace")
        item = cls(path=path, source=source)
        for number, line in enumerate(source.splitlines(), 1):
            match = SUPPRESSION.search(line)
            if match:
                if match["why"]:
                    item.suppressions[match["rule"]] = match["why"]
                else:
                    item.bad_suppressions.append((number, match["rule"]))
        try:
            item.tree = ast.parse(source, str(path))
        except SyntaxError as exc:
            item.syntax_error = f"line {exc.lineno}: {exc.msg}"
            return item
        for node in item.tree.body:
            target, value = _assignment(node)
            if target in ("revision", "down_revision"):
                try:
                    literal = ast.literal_eval(value)
                except ValueError:
                    continue
                if target == "revision":
                    item.revision, item.has_revision = (str(literal) if literal else None), True
                else:
                    item.down_revision, item.has_down_revision = revision_ids(literal), True
        return item

    def function(self, name: str) -> ast.FunctionDef | None:
        if self.tree is None:
            return None
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
        return None

    def docstring(self) -> str:
        return (ast.get_docstring(self.tree) or "") if self.tree else ""


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def _is_import_module_call(node: ast.AST) -> bool:
    """``importlib.import_module("literal")`` or ``import_module("literal")``."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


def project_packages(settings: Settings, script_dir: Path) -> set[str]:
    """Top-level packages and modules of the project itself (not its migrations, tests or build files)."""
    skip = {"tests", "test", "conftest", "setup", "noxfile", "fabfile", "manage", script_dir.name, *BASE_ALLOWED}
    own: set[str] = set()
    for root in import_roots(settings):
        for child in root.iterdir():
            if child.is_dir() and (child / "__init__.py").is_file():
                own.add(child.name)
            elif child.suffix == ".py" and child.is_file():
                own.add(child.stem)
    project = _project_name(settings.project_dir)
    if project:
        own.add(project)
    return own - skip


def _project_name(project_dir: Path) -> str | None:
    path = project_dir / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, ValueError):
        return None
    return re.sub(r"[-.]+", "_", name).lower() if isinstance(name, str) else None


def _is_empty(body: list[ast.stmt]) -> bool:
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in body)


def docstring_ids(doc: str) -> tuple[str | None, tuple[str, ...] | None]:
    """The ``Revision ID:`` and ``Revises:`` values of a revision docstring (None: absent)."""
    rev = re.search(r"^\s*Revision ID:\s*(\S*)\s*$", doc, re.M)
    down = re.search(r"^\s*Revises:[ \t]*(.*?)\s*$", doc, re.M)
    if down is None:
        return (rev.group(1) if rev else None), None
    # The same ids in any spelling: "a, b", "('a', 'b')", "None" or nothing for a first revision.
    words = [w.strip(" '\"") for w in re.split(r"[,()\[\]\s]+", down.group(1))]
    downs = tuple(w for w in words if w and w != "None")
    return (rev.group(1) if rev else None), downs


# -- discovery --------------------------------------------------------------------


def revision_paths(script: ScriptDirectory) -> list[Path]:
    """Every revision file of the project's version locations (nothing is imported)."""
    locations = getattr(script, "_version_locations", None) or [script.versions]
    recursive = getattr(script, "recursive_version_locations", False)
    paths: set[Path] = set()
    for location in locations:
        folder = Path(location)
        if not folder.is_dir():
            continue
        pattern = "**/*.py" if recursive else "*.py"
        paths.update(p.resolve() for p in folder.glob(pattern) if p.name != "__init__.py" and "__pycache__" not in p.parts)
    return sorted(paths)


# -- the rules --------------------------------------------------------------------


class _Linter:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.allowed = set(BASE_ALLOWED) | set(settings.lint_allowed_imports) | set(sys.stdlib_module_names)
        self.findings: list[Finding] = []
        self.unrendered: str | None = None  # why no revision's SQL could be rendered (env.py failed)
        self.no_squawk: str | None = None  # squawk (the `lint` extra) is not installed: its rules are skipped

    relpath = staticmethod(shown_path)

    def add(self, item: RevisionFile, rule: str, message: str, line: int | None = None, severity: str = "error", remedy: str | None = None) -> None:
        if rule in item.suppressions:
            return
        self.findings.append(Finding(NAME, rule, message, severity, item.revision, self.relpath(item.path), line, remedy))

    def structure(self, item: RevisionFile) -> None:
        for line, rule in item.bad_suppressions:
            self.findings.append(Finding(
                NAME, "suppression-without-reason", f"`# dbtasks: allow {rule}` gives no reason, so it is ignored",
                "error", item.revision, self.relpath(item.path), line,
                f"write it as `# dbtasks: allow {rule}: <why this is safe>`",
            ))
        if item.tree is None:
            self.add(item, "import-error", f"the revision cannot be parsed ({item.syntax_error})", remedy="fix the syntax error")
            return
        if not item.has_revision or not item.revision:
            self.add(item, "missing-revision-id", "no `revision = \"...\"` assignment; Alembic cannot identify this file", 1)
        doc_rev, doc_down = docstring_ids(item.docstring())
        if item.revision and doc_rev is not None and doc_rev != item.revision:
            self.add(item, "revision-id-mismatch", f"revision is {item.revision!r} but the docstring says Revision ID: {doc_rev}",
                     self._line_of(item, "revision"), remedy="make the docstring and the variable agree")
        if item.has_down_revision and doc_down is not None and set(doc_down) != set(item.down_revision or ()):
            self.add(
                item, "down-revision-mismatch",
                f"down_revision is {', '.join(item.down_revision or ()) or 'None'} but the docstring says Revises: {', '.join(doc_down) or '(nothing)'}",
                self._line_of(item, "down_revision"), remedy="make the docstring's Revises: line and down_revision agree",
            )
        upgrade, downgrade = item.function("upgrade"), item.function("downgrade")
        if downgrade is None:
            self.add(item, "missing-downgrade", "the revision has no downgrade() function", 1,
                     remedy="write a downgrade() that undoes upgrade(), or raise NotImplementedError with a reason")
        elif upgrade is not None and not _is_empty(upgrade.body) and _is_empty(downgrade.body):
            self.add(item, "empty-downgrade", "downgrade() does nothing while upgrade() changes the schema", downgrade.lineno,
                     "warning", "undo the upgrade in downgrade(), or raise NotImplementedError if it cannot be undone")

    def imports(self, item: RevisionFile, own: set[str]) -> None:
        """The project's own packages are errors (they move on and break old revisions); other libraries are warnings."""
        if item.tree is None:
            return
        for node in ast.walk(item.tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")] if node.level else [node.module or ""]
            elif _is_import_module_call(node):
                names = [node.args[0].value]
            for name in names:
                top = name.split(".")[0]
                if top in self.allowed and not name.startswith("."):
                    continue
                if name.startswith(".") or top in own:
                    self.add(
                        item, "self-contained", f"imports {name!r} from the project itself; the application moves on after the revision is written, and then breaks it",
                        node.lineno,
                        remedy="copy what the revision needs into it (sa.table()/sa.column() for data), or allow the package with lint_allowed_imports",
                    )
                else:
                    self.add(
                        item, "third-party-import", f"imports {name!r}, a library besides alembic and sqlalchemy: the revision runs only where it is installed",
                        node.lineno, "warning",
                        remedy="keep it pinned in the project's dependencies, or allow it with lint_allowed_imports",
                    )

    def importable(self, item: RevisionFile) -> bool:
        if item.tree is None:
            return False
        try:
            load_python_file(str(item.path.parent), item.path.name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            self.add(item, "import-error", f"the revision cannot be imported: {type(exc).__name__}: {text}", remedy="fix the import; the revision must load on its own")
            return False
        return True

    # -- SQL safety ---------------------------------------------------------------

    def sql_safety(self, workspace: Workspace, items: list[RevisionFile]) -> None:
        by_revision = {i.revision: i for i in items if i.revision}
        if not by_revision:
            return
        sql = self._render(workspace, by_revision)
        if not sql:
            return
        try:
            find_squawk()
        except ConfigError as exc:  # an optional extra: the other rules still run, with one note
            self.no_squawk = f"squawk's SQL safety rules not checked: {exc}"
            return
        used: dict[tuple[str, str], set[int]] = {}  # op lines already named by a finding of that revision and rule
        for rev, report in ((rev, report) for rev, found in squawk_reports(self.settings, sql).items() for report in found):
            item = by_revision.get(rev)
            if item is None:
                continue
            lines = sql[rev].splitlines()
            start, end = int(report.get("line", 0)), int(report.get("line_end", report.get("line", 0)))
            statement = " ".join(" ".join(lines[start:end + 1]).split())
            rule = report.get("rule_name") or "squawk"
            line = self._op_line(item, rule, statement, used.setdefault((rev, rule), set()))
            if len(statement) > 160:
                statement = statement[:157] + "..."
            self.add(item, rule, f"{report.get('message', '').strip()} SQL: {statement}", line,
                     remedy=(report.get("help") or None) and f"{report['help'].rstrip('.')}, or add `# dbtasks: allow {rule}: <why>`")

    def _render(self, workspace: Workspace, by_revision: dict[str, RevisionFile]) -> dict[str, str]:
        """The SQL of each in-scope revision, from one offline run when possible."""
        out: dict[str, str] = {}
        try:
            chunks = split_revisions(workspace.render_sql(None, "heads"))
            return {rev: chunks[rev] for rev in by_revision if rev in chunks}
        except EnvPyError as exc:
            self.unrendered = f"SQL safety not checked: {exc.message}"
            return out
        except DbtasksError:
            pass
        except Exception:  # noqa: BLE001 - a revision that cannot render offline; find which below
            pass
        for rev, item in by_revision.items():
            try:
                script = workspace.get(rev)
                down = revision_ids(script.down_revision)
                start = down[0] if len(down) == 1 else None
                if len(down) > 1:
                    continue  # merge revisions hold no DDL of their own
                chunk = split_revisions(workspace.render_sql(start, rev)).get(rev)
                if chunk is not None:
                    out[rev] = chunk
            except Exception as exc:  # noqa: BLE001
                text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                self.add(item, "sql-not-rendered", f"the SQL cannot be rendered in offline mode ({text}); squawk did not see it",
                         severity="warning", remedy="guard data access with `if context.is_offline_mode()`")
        return out

    def _line_of(self, item: RevisionFile, name: str) -> int | None:
        for node in item.tree.body if item.tree else ():
            if _assignment(node)[0] == name:
                return node.lineno
        return None

    def _op_line(self, item: RevisionFile, rule: str, statement: str = "", used: set[int] | None = None) -> int | None:
        """The line of the op call that produced ``statement``.

        Among the calls of the rule's ops (and ``op.execute``), the one whose
        string literals (index, table, column names; the SQL of an execute) the
        statement names most; a tie goes to the first call not named yet, so
        two findings of one rule point at two calls.
        """
        upgrade = item.function("upgrade")
        if upgrade is None:
            return None
        wanted = RULE_OPS.get(rule, ())
        calls = sorted(
            (node for node in ast.walk(upgrade)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (*wanted, "execute")),
            key=lambda node: (node.func.attr not in wanted, node.lineno, node.col_offset),
        )
        if not calls:
            return upgrade.lineno
        used = set() if used is None else used
        sql = " ".join(statement.split()).rstrip(";").lower()
        best = max(calls, key=lambda node: (_names_in(node, sql), node.lineno not in used, -calls.index(node)))
        used.add(best.lineno)
        return best.lineno


def _names_in(call: ast.Call, sql: str) -> int:
    """How many of the call's string literals ``sql`` (normalized, lowercase) names: identifiers as words, SQL as text."""
    score = 0
    for text in {n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and isinstance(n.value, str)}:
        text = " ".join(text.split()).rstrip(";").lower()
        if not text:
            continue
        if re.fullmatch(r"[\w$]+", text):
            score += bool(re.search(rf"(?<![\w$]){re.escape(text)}(?![\w$])", sql))
        elif sql and sql in text:
            score += 10  # the statement itself, written out in an op.execute()
        elif " " in text and text in sql:
            score += 2  # a phrase of it (a default, a piece of a composed execute)
    return score


MARKER = re.compile(r"^-- Running upgrade .*-> (\S+)\s*$")


def split_revisions(text: str) -> dict[str, str]:
    """Each revision's SQL out of an offline script, as the transaction(s) it runs in.

    An env.py that renders the whole script as one transaction (a stock
    ``alembic init``) leaves a revision's part without its BEGIN (before
    Alembic's own table) or its COMMIT (after the last revision). squawk would
    then judge it as run outside a transaction (an index on a table made in the
    same revision is flagged), so the part gets the BEGIN/COMMIT it lacks.
    """
    return {rev: _strip_version_table("\n".join(lines), opened) for rev, (lines, opened) in offline_chunks(text).items()}


def offline_chunks(text: str, keep_preamble: bool = False) -> dict[str, tuple[list[str], bool]]:
    """An offline script cut at Alembic's ``-- Running upgrade`` markers: each revision's lines, and whether
    they start inside a transaction that began before them. The BEGIN right before a marker opens that
    revision's own transaction and goes with it; with ``keep_preamble`` what precedes the first marker
    (Alembic's own table) goes with the first revision too."""
    chunks: dict[str, tuple[list[str], bool]] = {}
    current: list[str] = []
    first = True
    in_transaction = False
    for line in text.splitlines():
        match = MARKER.match(line)
        if match:
            if keep_preamble and first:
                opening = current
            else:
                opening = []
                while current and current[-1].strip() in ("", "BEGIN;"):
                    opening.insert(0, current.pop())
                opening = [o for o in opening if o.strip()]
            first = False
            current = opening
            chunks[match.group(1)] = (current, in_transaction and not any(o.strip().upper() == "BEGIN;" for o in opening))
            continue
        in_transaction = still_open([line], in_transaction)
        current.append(line)
    return chunks


def still_open(lines, in_transaction: bool) -> bool:
    """Whether a transaction is open after ``lines`` of SQL, given whether one was open before them."""
    for line in lines:
        word = line.strip().upper()
        if word == "BEGIN;":
            in_transaction = True
        elif word in ("COMMIT;", "ROLLBACK;"):
            in_transaction = False
    return in_transaction


def _strip_version_table(sql: str, in_transaction: bool = False) -> str:
    """Drop Alembic's own bookkeeping statements; keep BEGIN/COMMIT, closing a transaction left open at either end."""
    kept = ["BEGIN;"] if in_transaction else []
    for statement in re.split(r";\s*\n", sql):
        if "alembic_version" in statement or not statement.strip():
            continue
        kept.append(statement.strip().rstrip(";") + ";")
        in_transaction = still_open([kept[-1]], in_transaction)
    if in_transaction:
        kept.append("COMMIT;")
    return "\n\n".join(kept) + "\n"


def squawk_reports(settings: Settings, texts: dict[str, str]) -> dict[str, list[dict]]:
    """Run squawk once over several SQL texts (key -> SQL); its JSON reports per key.

    Each report has squawk's ``rule_name``, ``message``, ``help`` and the
    0-based ``line``/``line_end`` within that text. Uses the settings'
    ``lint_pg_version`` and ``lint_squawk_exclude``. :class:`ConfigError` when
    squawk is not installed or fails (db-migrate-sql shares this with lint).
    """
    squawk = find_squawk()
    found: dict[str, list[dict]] = {key: [] for key in texts}
    if not texts:
        return found
    with tempfile.TemporaryDirectory(prefix="dbtasks-lint-") as tmp:
        files = {}
        for number, (key, text) in enumerate(texts.items()):
            path = Path(tmp) / f"{number}.sql"
            path.write_text(text)
            files[str(path)] = key
        args = [squawk, "--reporter", "json", "--no-error-on-unmatched-pattern"]
        if settings.lint_pg_version:
            args += ["--pg-version", settings.lint_pg_version]
        if settings.lint_squawk_exclude:
            args += ["--exclude", ",".join(settings.lint_squawk_exclude)]
        proc = subprocess.run([*args, *files], capture_output=True, text=True, cwd=tmp)
        try:
            reports = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            first = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigError(f"squawk failed: {first[0] if first else 'no output'}", "check the squawk installation (pip install squawk-cli)") from None
    for report in reports:
        name = report.get("file", "")
        key = files.get(name) or files.get(str(Path(tmp) / Path(name).name))
        if key is not None:
            found[key].append(report)
    return found


def find_squawk() -> str:
    """The squawk binary: next to this Python (the venv) or on PATH."""
    candidate = Path(sys.executable).parent / "squawk"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("squawk")
    if not found:
        raise ConfigError("squawk is not installed", "pip install 'dbtasks[lint]' (pipx inject dbtasks squawk-cli)")
    return found


def run(workspace: Workspace) -> CheckResult:
    """Lint the revisions in scope (added since the git base, or all); no database needed."""
    settings = workspace.settings
    scope = changes_scope(settings)
    result = CheckResult(NAME)
    if scope.note:
        result.notes.append(scope.note)
    linter = _Linter(settings)
    own = project_packages(settings, Path(workspace.script.dir))
    items = [RevisionFile.read(p) for p in revision_paths(workspace.script) if scope.includes(p)]
    if not items:
        result.notes.append(f"no revision in scope ({scope.describe()})")
        return result
    result.notes.append(f"linted {len(items)} revision(s): {scope.describe()}")
    for item in items:
        linter.structure(item)
        linter.imports(item, own)
    # Importing is only needed to name the culprit when the history does not load.
    broken = workspace.load_error()
    if broken:
        result.notes.append(f"SQL safety not checked: the history cannot be loaded ({broken})")
        for item in items:
            linter.importable(item)
    else:
        linter.sql_safety(workspace, [i for i in items if i.tree is not None])
        if linter.unrendered:
            result.notes.append(linter.unrendered)
        if linter.no_squawk:
            result.notes.append(linter.no_squawk)
    result.findings = sorted(linter.findings, key=lambda f: (f.file or "", f.line or 0, f.rule))
    return result


CHECK = declare(
    name=NAME, recipe="db-lint-migrations", verb="lint", order=20, run=run, doc=__doc__,
    help="Lint new revisions (SINCE=REF, ALL=1, FORMAT=json): imports, structure, squawk",
    needs={"git"}, options=("since", "all_revisions"), params=(names.SINCE, names.ALL),
)
