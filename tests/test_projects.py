"""One local server per project: derived defaults, the project mark, create-db and wait-db.

Two copies of the example project run their local clusters side by side
(started once for this module); the rest runs against the session's test
server as an external server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dbtasks.config import DERIVED_PORTS, database_identifier, derived_port, load_settings
from dbtasks.database import drop_database, scratch_name
from dbtasks.server import LocalServer
from dbtasks.testing import free_port

from .conftest import DBTASKS, assert_one_line_error, clean_env, copy_project, run, scalar, url_str

MARK = "select current_setting('dbtasks.project', true)"


# -- defaults derived from the project ------------------------------------------------


def test_db_name_comes_from_the_project_name(tmp_path):
    named = tmp_path / "named"
    named.mkdir()
    (named / "pyproject.toml").write_text('[project]\nname = "My-Shop.API"\n')
    s = load_settings(project_dir=named, environ={})
    assert s.db_name == "my_shop_api" and s.sources["db_name"] == "derived"
    bare = tmp_path / "2nd shop"
    bare.mkdir()
    (bare / "alembic.ini").write_text("[alembic]\n")
    assert load_settings(project_dir=bare, environ={}).db_name == "db_2nd_shop"  # the directory's name
    assert database_identifier("Ünïcode--") == "n_code" and database_identifier("---") == "db"
    assert load_settings(project_dir=named, environ={"DBTASKS_DB_NAME": "mine"}).db_name == "mine"


def test_ports_are_derived_per_project_root(tmp_path):
    ports = {}
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pyproject.toml").write_text("")
        s = load_settings(project_dir=tmp_path / name, environ={})
        assert s.sources["pg_port"] == "derived" and s.pg_port == derived_port(tmp_path / name)
        ports[name] = s.pg_port
    # Different roots spread over the range (two random tmp roots may still share a port: 1 in 499).
    assert len({derived_port(Path(f"/srv/project-{i}")) for i in range(50)}) > 40
    assert all(6500 <= p <= 6999 and p != 6545 for p in ports.values())
    assert load_settings(project_dir=tmp_path / "one", environ={}).pg_port == ports["one"]  # stable
    assert 6545 not in DERIVED_PORTS and len(DERIVED_PORTS) == 499
    shown = run(["settings"], tmp_path / "one")
    assert re.search(rf"^pg_port\s+{ports['one']}\s+derived\s+DBTASKS_PG_PORT", shown.stdout, re.M), shown.stdout
    assert re.search(r"^seed\s+default\s+DBTASKS_SEED", shown.stdout, re.M), shown.stdout


def test_empty_seed_means_none(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.dbtasks]\nseed = ""\n')
    assert load_settings(project_dir=tmp_path, environ={}).seed is None
    proc = run(["seed"], tmp_path, DATABASE_URL="postgresql://u:pw@127.0.0.1:9/x")
    assert_one_line_error(proc, "no seed configured", "DBTASKS_SEED", "[tool.dbtasks]")


# -- two projects' local servers side by side ------------------------------------------


@pytest.fixture(scope="module")
def two_projects():
    """alpha (the example project, seeded) and beta (its own name, no seed), each with its running local server."""
    root = Path(tempfile.mkdtemp(prefix="dbtasks-two-"))
    root.chmod(0o755)  # the servers may run as another OS user
    alpha = copy_project(root / "alpha")
    beta = copy_project(root / "beta's shop")  # a quote and a space: the mark must survive postgresql.conf quoting
    text = (beta / "pyproject.toml").read_text()
    text = text.replace('name = "dbtasks"', 'name = "Beta-Shop"', 1).replace('seed = "app.seed:seed"', 'seed = ""')
    text = re.sub(r"^(db_name|pg_port) = .*\n", "", text, flags=re.M)
    (beta / "pyproject.toml").write_text(text)
    envs = {alpha: {"DBTASKS_PG_PORT": str(free_port())}, beta: {"DBTASKS_PG_PORT": str(free_port())}}
    try:
        # Both set up at once, as two developers would: two programs, not one after the other.
        started = {
            project: subprocess.Popen([DBTASKS, "init"], cwd=project, env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for project, env in envs.items()
        }
        inits = {}
        for project, proc in started.items():
            out, err = proc.communicate(timeout=300)
            inits[project] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        yield {"root": root, "alpha": alpha, "beta": beta, "envs": envs, "inits": inits}
    finally:
        for project, env in envs.items():
            run(["stop-db"], project, **env)
        shutil.rmtree(root, ignore_errors=True)


def _url(project: Path, env: dict):
    return load_settings(project_dir=project, environ=env).url


@pytest.mark.slow
def test_two_projects_side_by_side(two_projects):
    alpha, beta, envs, inits = two_projects["alpha"], two_projects["beta"], two_projects["envs"], two_projects["inits"]
    for project in (alpha, beta):
        assert inits[project].returncode == 0, inits[project].stderr
    assert "seeded:" in inits[alpha].stdout
    assert "note: no seed configured (DBTASKS_SEED / seed in [tool.dbtasks]); skipping demo data" in inits[beta].stdout
    url_a, url_b = _url(alpha, envs[alpha]), _url(beta, envs[beta])
    assert url_b.database == "beta_shop" and url_a.database == "app"

    # Each cluster carries its project, and each project talks to its own.
    assert scalar(url_a, MARK) == str(alpha) and scalar(url_b, MARK) == str(beta)
    assert scalar(url_a, "select count(*) from pg_database where datname = 'beta_shop'") == 0
    down = run(["downgrade"], beta, **envs[beta])
    assert down.returncode == 0, down.stderr
    assert "pending:  none" in run(["status"], alpha, **envs[alpha]).stdout
    assert "pending:  none" not in run(["status"], beta, **envs[beta]).stdout
    assert scalar(url_a, "select count(*) from alembic_version") == 1

    # beta pointed at alpha's port: refused, naming alpha and how to pick another port.
    port_a = envs[alpha]["DBTASKS_PG_PORT"]
    for verb in (["status"], ["wait-db", "--timeout", "5"], ["create-db"]):
        proc = run(verb, beta, DBTASKS_PG_PORT=port_a)
        assert_one_line_error(proc, f"port {port_a}", f"another project ({alpha})", "DBTASKS_PG_PORT", "pg_port in [tool.dbtasks]")
    fresh = two_projects["root"] / "fresh" / "pgdata"
    proc = run(["start-db"], beta, DBTASKS_PG_PORT=port_a, DBTASKS_PG_DATA=str(fresh))
    assert_one_line_error(proc, f"port {port_a}", "already in use", f"another project ({alpha})", "DBTASKS_PG_PORT")
    assert not fresh.exists()
    assert scalar(url_a, "select count(*) from pg_database where datname = 'beta_shop'") == 0

    # A cluster without the mark (an older dbtasks made it) is refused by every project,
    # until its own project's start-db, which reads its own pid file, marks it.
    settings_a = load_settings(project_dir=alpha, environ=envs[alpha])
    local_a = LocalServer(settings_a)
    conf = local_a.data_dir / "postgresql.conf"
    conf.write_text("".join(line for line in conf.read_text().splitlines(keepends=True) if not line.startswith("dbtasks.project")))
    local_a.reload()
    _until(lambda: not scalar(url_a, MARK))
    proc = run(["status"], beta, DBTASKS_PG_PORT=port_a)
    assert_one_line_error(proc, f"port {port_a}", "not marked as this project's local cluster", "DATABASE_URL", "start-db")
    assert_one_line_error(run(["status"], alpha, **envs[alpha]), "not marked as this project's local cluster", "dbtasks start-db")
    assert run(["start-db"], alpha, **envs[alpha]).returncode == 0
    status = run(["status"], alpha, **envs[alpha])
    assert status.returncode == 0 and "pending:  none" in status.stdout, status.stderr
    assert local_a.mark_line() in conf.read_text()
    _until(lambda: scalar(url_a, MARK) == str(alpha))


def _until(condition, seconds: float = 10) -> None:
    """Poll a condition a reload makes true (pg_ctl reload signals the server and returns)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


# -- create-db and wait-db on an external server (the test server) --------------------


@pytest.fixture
def missing_url(dbtasks_server_url):
    """The URL of a database that does not exist yet on the test server; dropped afterwards."""
    url = dbtasks_server_url.set(database=scratch_name("dbtasks_create"))
    yield url
    drop_database(dbtasks_server_url, url.database)


def test_create_db_creates_once_then_says_so(project, missing_url, dbtasks_server_url):
    env = {"DATABASE_URL": url_str(missing_url)}
    first = run(["create-db"], project, **env)
    assert first.returncode == 0 and first.stdout.strip() == f"created database {missing_url.database} on {missing_url.host}:{missing_url.port}", first
    again = run(["create-db"], project, **env)
    assert again.returncode == 0 and "already exists" in again.stdout and "nothing to do" in again.stdout, again
    assert scalar(dbtasks_server_url, f"select count(*) from pg_database where datname = '{missing_url.database}'") == 1


def test_init_db_creates_a_missing_database_on_an_external_server(project, missing_url):
    proc = run(["init-db"], project, DATABASE_URL=url_str(missing_url))
    assert proc.returncode == 0, proc.stderr
    assert f"created database {missing_url.database}" in proc.stdout.splitlines()[0]
    assert scalar(missing_url, "select count(*) from alembic_version") == 1


def test_start_db_on_a_protected_environment_does_not_create(project, missing_url, dbtasks_server_url):
    proc = run(["--env", "prod", "start-db"], project, PROD_DATABASE_URL=url_str(missing_url))
    assert_one_line_error(proc, "does not exist", "dbtasks --env prod create-db")
    assert scalar(dbtasks_server_url, f"select count(*) from pg_database where datname = '{missing_url.database}'") == 0


def test_wait_db_ready_at_once(project, empty_database):
    proc = run(["wait-db"], project, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 0, proc.stderr
    where = f"{empty_database.host}:{empty_database.port}/{empty_database.database}"
    assert re.fullmatch(rf"waiting for {re.escape(where)} \.\.\. ready after \d+\.\d s", proc.stdout.strip()), proc.stdout


def test_wait_db_times_out_on_a_port_nothing_listens_on(project):
    port = free_port()
    proc = run(["wait-db", "--timeout", "1"], project, DATABASE_URL=f"postgresql://u:s3cret@127.0.0.1:{port}/app")
    assert_one_line_error(proc, f"127.0.0.1:{port}/app did not accept connections within 1s", "last error: cannot connect")
    assert proc.stdout.startswith(f"waiting for 127.0.0.1:{port}/app ...")
    assert "s3cret" not in proc.stdout + proc.stderr


def test_wait_db_stops_at_once_on_a_missing_database_or_a_bad_password(project, missing_url):
    # A timeout far beyond the run's own: waiting out either would fail the run, not only the assertion.
    missing = run(["wait-db", "--timeout", "600"], project, timeout=60, DATABASE_URL=url_str(missing_url))
    assert_one_line_error(missing, f"database {missing_url.database!r} does not exist", "dbtasks create-db")
    bad = run(["wait-db", "--timeout", "600"], project, timeout=60, DATABASE_URL=url_str(missing_url.set(password="wrong-pw", database="postgres")))
    assert_one_line_error(bad, "password authentication failed")


def test_init_db_never_creates_a_database_on_a_server_that_is_not_a_development_one(project, missing_url, dbtasks_server_url):
    """A typo in DATABASE_URL of a server that is neither the project's own nor listed in dev_databases: one line, nothing created."""
    proc = run(["init-db"], project, DATABASE_URL=url_str(missing_url), DBTASKS_DEV_DATABASES="")
    assert_one_line_error(proc, "does not exist", "dbtasks create-db")
    assert scalar(dbtasks_server_url, f"select count(*) from pg_database where datname = '{missing_url.database}'") == 0
