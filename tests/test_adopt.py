"""Adopting dbtasks into a project it did not create, as a new user would.

The wheel is built from this checkout once per module and installed with
``--no-deps`` into a fresh venv; the kit venv's site-packages is made visible
through a ``.pth`` file, so no network and no long install are needed, and
what runs is the wheel's own files (entry point, share/, recipes.toml), never
the editable kit. The project is a stock ``alembic init`` with its own models.

The console transcripts of docs/adopt.md are the commands this test runs: each
``$ command`` is executed in the fresh project and its output compared with the
lines under it after normalising paths, revision ids, dates and timings
(``...`` on its own line skips any number of lines).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import zipfile
from pathlib import Path

import pytest

from dbtasks import adopt
from dbtasks.config import database_identifier, load_settings

from .conftest import BIN, JUST, REPO, clean_env, run, run_just, run_make, url_str

DOC = REPO / "docs" / "adopt.md"
PROJECT_NAME = "widget-shop"  # its [project].name; the database name becomes widget_shop

MODELS = '''\
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Widget(Base):
    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
'''


# -- the wheel and the venv it is installed into ----------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """dbtasks built from this checkout (a copy of it, so the tree gets no build/ or egg-info)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "dbtasks", src / "dbtasks", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = (root / "dist").glob("dbtasks-*.whl")
    names = set(zipfile.ZipFile(built).namelist())
    for needed in ("dbtasks/share/dbtasks.mk", "dbtasks/share/dbtasks.just", "dbtasks/recipes.toml", "dbtasks/adopt.py"):
        assert needed in names, needed
    assert any(n.endswith("entry_points.txt") for n in names)
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel: Path) -> Path:
    """A venv with the wheel alone installed; the kit venv's packages are visible through a .pth file."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    # A path line only: the kit's own .pth files (its editable dbtasks) are not processed.
    (Path(site) / "dbtasks_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import dbtasks; print(dbtasks.__file__)"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(root)), where
    tools = root / "tools"  # just, and nothing else of the kit's venv
    tools.mkdir()
    (tools / "just").symlink_to(JUST)
    return root


def project_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with the venv's bin on PATH (as pipx or an activated venv gives)."""
    env = clean_env(**extra)
    rest = [p for p in env["PATH"].split(os.pathsep) if p and Path(p) != BIN]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), str(venv / "tools"), *rest])
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "DBTASKS_TEST_EXEC"):
        env.pop(name, None)
    return env


def new_project(root: Path, venv: Path) -> Path:
    """A stock `alembic init` project with its own models; env.py edited only to set target_metadata."""
    project = root / PROJECT_NAME
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[project]\nname = "{PROJECT_NAME}"\nversion = "0.1.0"\n')
    (project / "widgets").mkdir()
    (project / "widgets" / "__init__.py").write_text("")
    (project / "widgets" / "models.py").write_text(MODELS)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "alembic", "init", "alembic"], cwd=project, env=project_env(venv), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    env_py = project / "alembic" / "env.py"
    text = env_py.read_text()
    assert "\ntarget_metadata = None\n" in text
    env_py.write_text(text.replace("\ntarget_metadata = None\n", "\nfrom widgets.models import Base\n\ntarget_metadata = Base.metadata\n"))
    return project


# -- transcripts ----------------------------------------------------------------------


def transcript(text: str) -> list[tuple[str, list[str]]]:
    """The ``$ command`` lines of the ```console blocks, each with the output lines under it."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


def normalise(text: str, project: Path) -> list[str]:
    """Output as the docs show it: paths, revision ids, dates and timings made stable, spacing collapsed."""
    text = text.replace(str(project.resolve()), "<project>").replace(str(project), "<project>")
    text = re.sub(rf"(?<!\S)/\S*/{re.escape(project.name)}(?=/|\s|$)", "<project>", text)  # the docs' /home/you/<name>
    text = re.sub(r"\b[\w.-]+@[\w.-]+:\d+/\w+", "<database>", text)  # user@host:port/dbname
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(r"(?<![0-9a-f])[0-9a-f]{12}(?![0-9a-f])", "<rev>", text)
    text = re.sub(r"(?<!\d)\d{4}[-_]\d{2}[-_]\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?!\d)", "<date>", text)
    text = re.sub(r"(?<![\w.])\d+\.\d+(?=s?\b)", "<n>", text)
    text = re.sub(r"postgresql(\+\w+)?://\S+", "<url>", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line]


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` equals ``actual``, where a ``...`` line stands for any number of lines."""

    @functools.lru_cache(maxsize=None)
    def at(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return any(at(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and at(i + 1, j + 1)

    return at(0, 0)


def test_normalise_and_match() -> None:
    project = Path("/tmp/x/widget-shop")
    got = normalise("wrote /tmp/x/widget-shop/alembic/versions/2026_11_22_3f2a9c1b7d4e_add.py  in 0.42s\n\n", project)
    assert got == ["wrote <project>/alembic/versions/<date>_<rev>_add.py in <n>s"]
    assert normalise("at /home/you/widget-shop/x on postgres@127.0.0.1:6545/app", project) == ["at <project>/x on <database>"]
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["...", "a"], ["a"])
    assert not matches(["a", "d"], ["a", "b", "d"]) and not matches(["a"], ["a", "b"])
    assert [c for c, _ in transcript("```console\n$ one\nout\n$ two\n```\n```sh\n$ skipped\n```\n")] == ["one", "two"]


# -- the kit's own server, watched ------------------------------------------------------


@pytest.fixture
def kit_server_tripwire():
    """A listener on the kit's own default server address that records every connection.

    When that port is taken (the kit's server is running here), the tripwire
    cannot be armed; the test says so instead of pretending.
    """
    kit = load_settings(project_dir=REPO, environ={})
    seen: list[tuple] = []
    listener = socket.socket()
    try:
        listener.bind((kit.pg_host, kit.pg_port))
    except OSError:
        listener.close()
        yield None
        return
    listener.listen(16)

    def serve():
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            seen.append(peer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield seen
    finally:
        listener.close()


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


# -- the adoption ---------------------------------------------------------------------


@pytest.mark.slow
def test_adopt_into_a_fresh_project_runs_the_docs_transcript(tmp_path: Path, venv: Path, empty_database, kit_server_tripwire) -> None:
    """docs/adopt.md, executed: adopt, revision, migrate, check and status in a fresh project."""
    project = new_project(tmp_path, venv)
    env = project_env(venv, DATABASE_URL=url_str(empty_database))
    steps = transcript(DOC.read_text())
    commands = " | ".join(c for c, _ in steps)
    for needed in ("dbtasks adopt --yes", "make db-migrate-create MIGRATE_MSG=", "make db-migrate", "make check", "just db-status"):
        assert needed in commands, needed

    differ = []
    for command, expected in steps:
        proc = subprocess.run(["bash", "-c", command], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        got = normalise(proc.stdout, project)
        assert proc.returncode == 0, f"$ {command}\n{proc.stdout}"
        want = normalise("\n".join(expected), project)
        if not matches(want, got):  # every command runs; the differences are reported together
            differ.append(f"$ {command}\nexpected:\n" + "\n".join(want) + "\ngot:\n" + "\n".join(got))
    assert not differ, "docs/adopt.md differs from what the commands print:\n\n" + "\n\n".join(differ)

    # The revision is date-named by the file_template and formatted by the hook.
    [revision] = (project / "alembic" / "versions").glob("*.py")
    assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_[0-9a-f]{12}_add_widgets\.py", revision.name), revision.name
    today = {datetime.date.today(), datetime.datetime.now(datetime.timezone.utc).date()}
    assert revision.name[:10] in {d.strftime("%Y_%m_%d") for d in today}
    python = str(venv / "bin" / "python")
    for tool in (["black", "--check", "--quiet"], ["isort", "--check-only", "--quiet", "--profile", "black"]):
        proc = subprocess.run([python, "-m", *tool, str(revision)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, (tool, proc.stdout, proc.stderr)

    # Adopting again changes nothing.
    before = _snapshot(project)
    again = subprocess.run(["dbtasks", "adopt", "--yes"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout + again.stderr
    assert _snapshot(project) == before

    # The project's settings are its own, and the kit's server was never contacted.
    shown = subprocess.run(["dbtasks", "settings"], cwd=project, env=project_env(venv), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^db_name\s+widget_shop\s+pyproject\b", shown.stdout, re.M), shown.stdout
    if kit_server_tripwire is None:
        pytest.skip("the kit's default server port is in use here, so the tripwire could not be armed (everything else passed)")
    assert kit_server_tripwire == [], f"the kit's own server address was contacted: {kit_server_tripwire}"


def test_adopt_keeps_the_projects_own_targets(tmp_path: Path) -> None:
    """A project's own help/test (make) and check (just) keep working; the shadowed recipes are named."""
    project = tmp_path / "shop"
    project.mkdir()
    subprocess.run([str(BIN / "alembic"), "init", "alembic"], cwd=project, check=True, capture_output=True)
    (project / "Makefile").write_text("# Our Makefile\n\n.PHONY: help test\n\n# our help\nhelp:\n\t@echo our help\n\ntest:\n\t@echo our tests\n")
    (project / "justfile").write_text("# our justfile\n\ncheck:\n    @echo our check\n\nhello:\n    echo hi\n\nversion := '1'\n")
    proc = run(["adopt", "--yes"], project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Makefile has its own help" in proc.stdout and "justfile has its own check" in proc.stdout
    assert "check (`dbtasks check`)" in proc.stdout
    assert "DBTASKS_OWN_TARGETS := help" in (project / "Makefile").read_text()
    helped = run_make("help", project)
    assert helped.stdout.strip() == "our help" and "overriding recipe" not in helped.stderr, helped.stderr
    assert run_make("test", project).stdout.strip() == "our tests"
    assert run_make("db-migrate-heads", project).returncode == 0
    assert run_just(["check"], project).stdout.strip() == "our check"
    hello = run_just(["hello"], project)  # dbtasks.just sets nothing for the importer: its recipes still echo their lines
    assert hello.stdout.strip() == "hi" and "echo hi" in hello.stderr, hello.stderr
    listed = subprocess.run([JUST, "--list"], cwd=project, capture_output=True, text=True)
    assert listed.returncode == 0 and "db-migrate" in listed.stdout, listed.stderr
    assert run_just(["db-migrate-heads"], project).returncode == 0
    # With only a justfile before, the next commands would be just's; here the project had both.
    assert "make init-db" in proc.stdout


def test_adopt_leaves_what_the_user_has(tmp_path: Path) -> None:
    """Existing hooks, file_template, [tool.dbtasks] keys, .gitignore lines and a changed dbtasks.mk stay as they are."""
    project = tmp_path / "shop"
    project.mkdir()
    ini = "[alembic]\nscript_location = alembic\nfile_template = %%(rev)s\n\n[post_write_hooks]\n# ours\nhooks = ruff\nruff.type = exec\n"
    (project / "alembic.ini").write_text(ini)
    (project / "pyproject.toml").write_text('[tool.poetry]\nname = "Shop 2"\n\n[tool.dbtasks]\ndb_name = "ours"  # keep\n')
    (project / ".gitignore").write_text("/data\n*.pyc")
    (project / "dbtasks.mk").write_text("# changed by hand\n")
    (project / "justfile").write_text("ENV := 'dev'\n\ndefault:\n    echo hi\n")
    before = _snapshot(project)
    shown = run(["adopt", "--dry-run"], project)
    assert shown.returncode == 0 and "dry run: nothing written" in shown.stdout, shown.stdout + shown.stderr
    assert _snapshot(project) == before
    proc = run(["adopt", "--yes"], project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for note in ("own file_template", "own post_write_hooks (ruff)", "dbtasks.mk differs", "sets no target_metadata", "justfile sets ENV, which dbtasks.just reads too"):
        assert note in proc.stdout, note
    assert (project / "alembic.ini").read_text() == ini
    assert (project / "dbtasks.mk").read_text() == "# changed by hand\n"
    assert (project / "pyproject.toml").read_text().startswith('[tool.poetry]\nname = "Shop 2"\n\n[tool.dbtasks]\ndb_name = "ours"  # keep\n')
    assert (project / ".gitignore").read_text() == "/data\n*.pyc\n\n# dbtasks: the local server's data, dumps and backups\ndumps/\nbackups/\n"
    assert "just init-db" in proc.stdout  # the project had only a justfile
    assert run(["adopt", "--yes"], project).stdout.startswith("nothing to change")


def test_adopt_reads_the_models_and_the_name(tmp_path: Path) -> None:
    env_py = tmp_path / "env.py"
    for source, module in [
        ("from myapp.models import Base\ntarget_metadata = Base.metadata\n", "myapp.models"),
        ("from myapp import models\ntarget_metadata = models.Base.metadata\n", "myapp.models"),
        ("import myapp.db.models as m\ntarget_metadata = [m.metadata]\n", "myapp.db.models"),
        ("target_metadata = None\n", None),
    ]:
        env_py.write_text(source)
        assert adopt.models_module(env_py) == module, source
    assert database_identifier("Widget-Shop 2") == "widget_shop_2"
    assert database_identifier("2fast") == "db_2fast"
    assert database_identifier("---") == "db"
