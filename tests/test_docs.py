"""The docs run: every ```console block of README.md and docs/*.md is executed.

A console block is a transcript. A line starting with ``$ `` is a command (a
line ending in ``\\`` continues it; the lines of a here-document belong to it);
the lines after it, up to the next command, are its expected output, where a
line ``...`` stands for any number of lines. Each page's blocks run in order,
in one fresh copy of the example project, through ``bash -c`` with the venv's
bin on PATH: the state a reader has who follows the page from the top.

The project is a fresh clone as the README describes it: its own local
PostgreSQL (``DB_SERVER=local``, a free port instead of the default, so test
runs never meet the kit's own server), created by the page's first command
when that is ``make init``, else by a ``make init`` the test runs first: once
per test process (initdb, migrate and seed are most of its time), later pages
start a copy of that stopped cluster, which adopts their project. make
and just run the kit's dbtasks (the warm test program of tests/forkserver.py,
shown as ``.venv/bin/dbtasks``), and so does a bare ``dbtasks`` (first on PATH;
``DBTASKS_TEST_EXEC=1`` makes both the installed program).

Output is stdout and stderr together, compared after normalising what differs
from run to run: the project's path and other temporary paths, the server's
port, revision ids (12 hex digits), dates and times, durations, sizes and
rates, decimal numbers, ANSI codes, runs of spaces, blank lines, and make's and
just's own ``Error N`` trailer lines. A command must exit 0 unless its expected
output shows an ``error`` line. A file whose first line is
``<!-- transcripts: tests/test_x.py -->`` is run by that test instead.

Besides: every recipe is described somewhere in README.md or docs/ outside
the generated recipe table, and every link between the pages resolves (every
setting and every CLI verb being documented is tests/test_recipes.py's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbtasks import names
from dbtasks.checks.runner import registry
from dbtasks.testing import free_port

from .conftest import BIN, REPO, clean_env, copy_project, recipe_program, run

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIP_MARK = re.compile(r"^<!-- transcripts: (\S+) -->")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    line: int = 0  # where the command is written, for the failure message


def transcripts(text: str) -> list[Step]:
    """The steps of every ```console block of ``text``, in order."""
    steps: list[Step] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            if line.startswith("$ "):
                start, command = i + 1, line[2:]
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command + "\n" + lines[i]
                heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1", command)
                if heredoc:
                    while i + 1 < len(lines) and lines[i + 1] != heredoc.group(2):
                        i += 1
                        command += "\n" + lines[i]
                    i += 1
                    command += "\n" + lines[i]
                steps.append(Step(command, line=start))
            elif steps:
                steps[-1].expected.append(line)
            else:
                raise AssertionError(f"line {i + 1}: a console block must start with a `$ ` command")
            i += 1
        i += 1
    return steps


def page_steps(page: Path) -> list[Step]:
    text = page.read_text()
    if SKIP_MARK.match(text):
        return []
    return transcripts(text)


RUNNABLE = [p for p in PAGES if page_steps(p)]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TRAILERS = re.compile(r"^(make(\[\d+\])?: \*\*\* .*Error \d+|make(\[\d+\])?: (Entering|Leaving) directory .*|error: Recipe `[^`]+` failed .*)$")
_RULES = [
    (re.compile(r"(?:/private)?/(?:var/)?tmp/[^\s'\"`)]+"), "<tmp>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"(?<!\d)\d{8}T\d{6}(\.\d+)?Z?(?!\d)"), "<time>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?( ?UTC| ?Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"(?<!\d)\d{4}[-_]\d\d[-_]\d\d(?!\d)"), "<date>"),
    (re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{12}(?![0-9a-zA-Z])"), "<rev>"),
    (re.compile(r"\b\d+(\.\d+)? ?(B|kB|KB|MB|GB|KiB|MiB|GiB|rows|row)/s\b"), "<rate>"),
    (re.compile(r"\b\d+(\.\d+)? ?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|bytes)\b"), "<size>"),
    (re.compile(r"\b\d+(\.\d+)? ?(ms|s|sec|seconds|min)\b"), "<dur>"),
    (re.compile(r"\b\d+:\d\d(:\d\d)?\b"), "<dur>"),
    (re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])"), "<n>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(text: str, project: Path | None = None, program: str | None = None) -> list[str]:
    """The lines of ``text`` as the comparison sees them."""
    text = _ANSI.sub("", text)
    if program:
        text = text.replace(program, ".venv/bin/dbtasks")
    if project is not None:
        for root in {str(project), str(project.resolve())}:
            text = text.replace(root + "/", "").replace(root, ".")
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line.strip() or _TRAILERS.match(line.strip()):
            continue
        for pattern, replacement in _RULES:
            line = pattern.sub(replacement, line)
        out.append(line.strip())
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected``, where a line ``...`` matches any number of lines."""
    memo: dict[tuple[int, int], bool] = {}

    def fits(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(expected):
                memo[i, j] = j == len(actual)
            elif expected[i] == "...":
                memo[i, j] = fits(i + 1, j) or (j < len(actual) and fits(i, j + 1))
            else:
                memo[i, j] = j < len(actual) and expected[i] == actual[j] and fits(i + 1, j + 1)
        return memo[i, j]

    return fits(0, 0)


# -- the parser and the comparison, without a database ---------------------------------


def test_transcript_parsing_continuations_heredocs_and_outputs():
    text = "\n".join([
        "```sh", "$ not a transcript", "```",
        "```console",
        "$ make db-migrate-create \\",
        '    MIGRATE_MSG="add x"',
        "created abc",
        "...",
        "$ cat >> app/models.py <<'EOF'",
        "",
        "class X: pass",
        "EOF",
        "$ make db-status",
        "```",
    ])
    steps = transcripts(text)
    assert [s.command for s in steps] == [
        'make db-migrate-create \\\n    MIGRATE_MSG="add x"',
        "cat >> app/models.py <<'EOF'\n\nclass X: pass\nEOF",
        "make db-status",
    ]
    assert steps[0].expected == ["created abc", "..."] and steps[1].expected == [] and steps[2].expected == []


def test_normalising_and_matching():
    project = Path("/tmp/dbtasks-docs-abc/project")
    actual = normalise(
        "\x1b[36m/tmp/fork-x/dbtasks revision\x1b[0m\n"
        "created 1a2b3c4d5e6f: /tmp/dbtasks-docs-abc/project/alembic/versions/2026_01_02_1a2b3c4d5e6f_add_x.py\n"
        "dumped app to dumps/app-local-20261121T201500Z.dump (412.3 MB, 3.1s, 12 MB/s)\n"
        "database: postgres@127.0.0.1:41234/app\n\n"
        "make: *** [/x/dbtasks.mk:80: db-migrate] Error 2\n",
        project, "/tmp/fork-x/dbtasks",
    )
    assert actual == [
        ".venv/bin/dbtasks revision",
        "created <rev>: alembic/versions/<date>_<rev>_add_x.py",
        "dumped app to dumps/app-local-<time>.dump (<size>, <dur>, <rate>)",
        "database: postgres@127.0.0.1:<port>/app",
    ]
    expected = normalise("created c7833a3022c8: alembic/versions/2026_11_21_c7833a3022c8_add_x.py\n...\ndatabase: postgres@127.0.0.1:6545/app")
    assert matches(["...", *expected], actual)
    assert not matches(expected, actual)
    assert matches(["..."], []) and not matches(["x"], [])


# -- the pages ------------------------------------------------------------------------


def _reachable_tmp() -> Path:
    """A directory the local server's OS user can enter (pytest's tmp is 0700 when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="dbtasks-docs-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def initialized_data():
    """Where the first page of this test process that needs ``make init`` leaves a copy of its stopped cluster.

    ``make init`` is initdb, migrate and seed, most of a page's setup. The
    first such page runs it, stops the server and keeps a copy of ``data``
    here; every later one gets a copy of that (``cp -a`` keeps the owner: the
    server's OS user when we are root). Each page then starts its cluster
    (``start-db`` adopts it for the page's project, postgresql.conf's project
    mark): migrated, seeded and running, what a reader has after ``make init``.
    """
    cache = _reachable_tmp()
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(REPO)) for p in RUNNABLE])
def test_page_transcripts_run(page: Path, request: pytest.FixtureRequest):
    steps = page_steps(page)
    root = _reachable_tmp()
    project = copy_project(root / "project")
    program = recipe_program()
    settings = {"DB_SERVER": "local", "DBTASKS_PG_PORT": str(free_port())}
    env = clean_env(DBTASKS=program, **settings)
    env["PATH"] = os.pathsep.join([str(Path(program).parent), str(BIN), env["PATH"]])  # `dbtasks` is the warm program too
    try:
        if steps[0].command.strip() != "make init":
            # A page that does not start with `make init` (workflows.md does: it runs initdb itself) starts after it.
            cache = request.getfixturevalue("initialized_data")
            if not (cache / "data").is_dir():
                setup = run(["init"], project, **settings)
                assert setup.returncode == 0, setup.stdout + setup.stderr
                stopped = run(["stop-db"], project, **settings)
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr
                subprocess.run(["cp", "-a", str(project / "data"), str(cache / "data.tmp")], check=True)
                (cache / "data.tmp").rename(cache / "data")
            else:
                subprocess.run(["cp", "-a", str(cache / "data"), str(project / "data")], check=True)
            setup = run(["start-db"], project, **settings)
            assert setup.returncode == 0 and "(started)" in setup.stdout, setup.stdout + setup.stderr  # not initialized anew
        where = page.relative_to(REPO)
        for step in steps:
            proc = subprocess.run(
                ["bash", "-c", step.command], cwd=project, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
            )
            actual = normalise(proc.stdout, project, program)
            expected = normalise("\n".join(step.expected))
            shown = "\n".join(step.expected)
            assert matches(expected, actual), (
                f"{where}:{step.line}: `{step.command}` printed\n{proc.stdout}\n"
                f"normalised:\n" + "\n".join(actual) + f"\n\nthe page shows:\n{shown}\nnormalised:\n" + "\n".join(expected)
            )
            failing_is_shown = any(line.lower().startswith("error") for line in step.expected)
            assert proc.returncode == 0 or failing_is_shown, (
                f"{where}:{step.line}: `{step.command}` exited {proc.returncode} but the page shows no error:\n{proc.stdout}"
            )
    finally:
        run(["stop-db"], project, **settings)
        shutil.rmtree(root, ignore_errors=True)


# -- everything is documented ---------------------------------------------------------


def docs_text() -> str:
    return "\n".join(p.read_text() for p in PAGES)


def without_generated_tables(text: str) -> str:
    return re.sub(r"<!-- begin (\w+) -->.*?<!-- end \1 -->", "", text, flags=re.S)


def test_every_recipe_is_described_outside_the_generated_table():
    """Each recipe of the name table (the checks' too) is mentioned in the prose or
    a transcript of some page, not only in the generated recipe table."""
    registry()
    text = without_generated_tables(docs_text())
    missing = [row.recipe for row in names.rows() if not re.search(rf"(?<![\w-]){re.escape(row.recipe)}(?![\w-])", text)]
    assert not missing, f"recipes not described in README.md or docs/: {missing}"


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(((?:\.\./|docs/|\./)?[\w./-]+\.(?:md|mmd|sql|svg|yml|yaml))(?:#[\w-]+)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
