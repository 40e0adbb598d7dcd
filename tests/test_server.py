"""The three server backends. Local clusters are real; docker is checked as far
as a machine without a Docker engine allows (compose file and command lines)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess

import pytest
import yaml

from dbtasks.config import load_settings
from dbtasks.server import LOCAL_TUNING, TUNING_FILE, DockerServer, LocalServer, find_bin_dir, maintenance_work_mem_mb, pgserver_bin_dir, relocated_data_dir
from dbtasks.testing import free_port

from .conftest import REPO, assert_one_line_error, copy_project, local_env, run, run_make, scalar


# A local cluster's whole life (init with initdb, start twice, seed, psql,
# init-db, volume-recreate, stop twice, the server user) is one test of its own
# through make: tests/test_recipes.py::test_make_server_recipes_on_a_local_server.


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another OS user")
def test_clone_the_server_user_cannot_enter(reachable_dir):
    """As root, in a clone inside a mode-700 directory (root's home), the README's
    `make init` works: the cluster moves to a per-project directory the server's
    user owns, every verb finds it there, and the user's directories keep their modes."""
    home = reachable_dir / "home"
    home.mkdir()
    home.chmod(0o700)
    project = copy_project(home / "clone")
    modes = {p: p.stat().st_mode for p in (reachable_dir, home, project)}
    env = {"DBTASKS_PG_PORT": str(free_port())}
    settings = load_settings(project_dir=project, environ=env)
    user = pwd.getpwnam(settings.server_user)
    moved = relocated_data_dir(settings, user)
    shown = run(["settings"], project, **env)
    assert f"data_dir  {moved}" in re.sub(" +", "  ", shown.stdout) and "cannot enter" in shown.stdout, shown.stdout
    try:
        init = run_make("init", project, **env)
        assert init.returncode == 0, init.stderr
        first = init.stdout.splitlines()[0]
        assert f"data in {moved}" in first and f"cannot enter {home};" in first, first
        assert "pending:  none" in init.stdout
        st = moved.parent.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o700)
        assert not (project / "data").exists()
        assert {p: p.stat().st_mode for p in modes} == modes
        assert "pending:  none" in run_make("db-status", project, **env).stdout
        assert "already running" in run_make("start-db", project, **env).stdout
        stop = run_make("stop-db", project, **env)
        assert stop.returncode == 0 and "stopped" in stop.stdout and str(moved) in stop.stdout, stop.stderr
        assert "not running" in run_make("stop-db", project, **env).stdout
    finally:
        run(["stop-db"], project, **env)
        shutil.rmtree(moved.parent, ignore_errors=True)


def test_the_cluster_names_its_project_once(tmp_path):
    """The mark in postgresql.conf: a moved clone's old mark is replaced, not added to; a second write changes nothing."""
    data = tmp_path / "pgdata"
    data.mkdir()
    conf = data / "postgresql.conf"
    conf.write_text("port = 5432\n# the project this cluster belongs to (dbtasks)\ndbtasks.project = '/old/place'\n")
    local = LocalServer(load_settings(project_dir=tmp_path, environ={"DBTASKS_PG_DATA": str(data)}))
    assert local.write_mark() is True
    text = conf.read_text()
    assert text.count("dbtasks.project") == 1 and local.mark_line() in text and text.startswith("port = 5432\n")
    assert local.mark_line() == f"dbtasks.project = '{tmp_path}'"
    assert local.write_mark() is False and conf.read_text() == text


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="the test server is not a dbtasks local cluster")
def test_the_local_cluster_runs_tuned_for_a_disposable_copy(dbtasks_server_url):
    """The session's server is a dbtasks local cluster: WAL-skipping loads, no
    waiting on commit flushes, big index builds. (fsync stays on in a developer's
    cluster, see the next test; a throwaway test server turns it off.)"""
    wanted = ", ".join(f"'{name}'" for name in LOCAL_TUNING)
    rows = scalar(dbtasks_server_url, f"select array_agg(name || '=' || current_setting(name)) from pg_settings where name in ({wanted})")
    shown = dict(row.split("=", 1) for row in rows)
    assert shown["wal_level"] == "minimal" and shown["max_wal_senders"] == "0"
    assert shown["synchronous_commit"] == "off" and shown["max_wal_size"] == "4GB"
    assert shown["fsync"] == "off" and shown["full_page_writes"] == "off"  # testing.throwaway_server
    assert scalar(dbtasks_server_url, "select setting::int / 1024 from pg_settings where name = 'maintenance_work_mem'") == maintenance_work_mem_mb()


def test_a_cluster_of_an_older_dbtasks_gets_the_tuning_at_its_next_start(tmp_path):
    """A postgresql.conf that says fsync = off (older dbtasks) gets the include
    after those lines, once; the file is written once and not again unchanged."""
    data = tmp_path / "pgdata"
    data.mkdir()
    conf = data / "postgresql.conf"
    conf.write_text("# written by dbtasks\nfsync = off\nfull_page_writes = off\n")
    local = LocalServer(load_settings(project_dir=tmp_path, environ={"DBTASKS_PG_DATA": str(data)}))
    assert local.write_tuning() is True
    lines = conf.read_text().splitlines()
    assert lines[-1] == f"include_if_exists = '{TUNING_FILE}'" and lines.index("fsync = off") < len(lines) - 1
    tuning = (data / TUNING_FILE).read_text()
    assert "wal_level = 'minimal'" in tuning and "fsync = 'on'" in tuning
    assert local.write_tuning() is False and conf.read_text().splitlines() == lines


def test_maintenance_work_mem_is_bounded_by_the_machine():
    assert maintenance_work_mem_mb(512 * 1024**2) == 64
    assert maintenance_work_mem_mb(8 * 1024**3) == 512
    assert maintenance_work_mem_mb(64 * 1024**3) == 1024


def test_port_taken_by_another_server_changes_nothing(project, reachable_dir):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = run(["start-db"], project, **local_env(reachable_dir, port))
    assert_one_line_error(proc, f"port {port}", "already in use", "DBTASKS_PG_PORT")
    assert not (reachable_dir / "pgdata").exists()


def test_data_directory_of_another_major_version(project, reachable_dir):
    data = reachable_dir / "pgdata"
    data.mkdir()
    (data / "PG_VERSION").write_text("9\n")
    before = sorted(p.name for p in data.iterdir())
    proc = run(["start-db"], project, **local_env(reachable_dir, free_port()))
    assert_one_line_error(proc, "PostgreSQL 9", "PG_BIN", "volume-recreate")
    assert sorted(p.name for p in data.iterdir()) == before


def test_real_cluster_of_another_major_version(project, reachable_dir):
    """A cluster made by one installed major version, started with another's binaries."""
    system = find_bin_dir(None)
    bundled = pgserver_bin_dir()
    if bundled is None or bundled == system:
        pytest.skip("needs two PostgreSQL major versions (system and pgserver)")
    env = local_env(reachable_dir, free_port(), PG_BIN=str(system))
    try:
        assert run(["start-db"], project, **env).returncode == 0
    finally:
        run(["stop-db"], project, **env)
    proc = run(["start-db"], project, **{**env, "PG_BIN": str(bundled)})
    assert_one_line_error(proc, "was created by PostgreSQL", "PG_BIN")


def test_bundled_pgserver_binaries_run_a_cluster(project, reachable_dir):
    """The fallback for a machine with nothing but Python: the pgserver wheel."""
    bundled = pgserver_bin_dir()
    if bundled is None:
        pytest.skip("pgserver wheel not installed")
    env = local_env(reachable_dir, free_port(), PG_BIN=str(bundled))
    try:
        proc = run(["init-db"], project, **env)
        assert proc.returncode == 0, proc.stderr
        settings = load_settings(project_dir=project, environ=env)
        assert scalar(settings.url, "show server_version_num").startswith("16")
        assert scalar(settings.url, "select count(*) from alembic_version") == 1
    finally:
        run(["stop-db"], project, **env)


def test_failed_start_prints_the_server_log(project, reachable_dir):
    env = local_env(reachable_dir, free_port())
    assert run(["start-db"], project, **env).returncode == 0
    assert run(["stop-db"], project, **env).returncode == 0
    with (reachable_dir / "pgdata" / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'lots'\n")
    proc = run(["start-db"], project, **env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "did not start" in proc.stderr and "server log" in proc.stderr
    assert "shared_buffers" in proc.stderr  # the log's own words


def test_bad_pg_bin(project, reachable_dir):
    proc = run(["start-db"], project, **local_env(reachable_dir, free_port(), PG_BIN=str(reachable_dir)))
    assert_one_line_error(proc, "PG_BIN")


def test_external_server_is_not_ours(project, empty_database):
    from .conftest import url_str

    env = {"DATABASE_URL": url_str(empty_database)}
    start = run(["start-db"], project, **env)
    assert start.returncode == 0 and "not managed by dbtasks" in start.stdout
    assert_one_line_error(run(["stop-db"], project, **env), "external", "cannot stop")
    assert_one_line_error(run(["volume-recreate"], project, **env), "cannot recreate")


# -- docker -------------------------------------------------------------------


def test_compose_file_names_what_the_kit_expects():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["postgres"]
    assert service["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(service["healthcheck"]["test"])
    volume = service["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, removed by `down -v`
    assert any("6545" in p and p.endswith(":5432") for p in service["ports"])


def test_docker_commands_and_settings(tmp_path):
    (tmp_path / "docker-compose.yml").write_text((REPO / "docker-compose.yml").read_text())
    settings = load_settings(project_dir=tmp_path, environ={"DB_SERVER": "docker", "DBTASKS_PG_PORT": "7777"})
    server = DockerServer(settings)
    compose = ["docker", "compose", "-f", str(tmp_path / "docker-compose.yml")]
    assert server.command("start") == compose + ["up", "-d", "--wait", "postgres"]
    assert server.command("destroy") == compose + ["down", "-v"]
    assert server.command("stop") == compose + ["stop", "postgres"]
    assert server.environment()["DBTASKS_PG_PORT"] == "7777"
    assert settings.url.port == 7777


def test_docker_without_engine_is_one_clear_line(project):
    proc = run(["start-db"], project, DB_SERVER="docker", DBTASKS_PG_PORT=str(free_port()))
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is running here")
    assert_one_line_error(proc, "Docker", "DB_SERVER=local")
