"""Settings precedence, environments, URL parsing and password redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbtasks.config import database_identifier, derived_port, load_settings
from dbtasks.errors import ConfigError, redact

from .conftest import assert_one_line_error, run


def write_project(tmp_path: Path, pyproject: str = "", dotenv: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.dbtasks]\n" + pyproject)
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path


def test_default_when_nothing_is_set(tmp_path):
    project = write_project(tmp_path)
    s = load_settings(project_dir=project, environ={})
    # nothing of the kit's own (6545, app): the port and the name come from this project
    assert s.pg_port == derived_port(project) != 6545 and s.sources["pg_port"] == "derived"
    assert 6500 <= s.pg_port <= 6999
    assert s.server_kind == "local"
    assert s.url.port == s.pg_port and s.url.host == "127.0.0.1"
    assert s.url.database == database_identifier(project.resolve().name) != "app"


@pytest.mark.parametrize(
    "layers, expected, source",
    [
        ({"pyproject": 7001}, 7001, "pyproject"),
        ({"pyproject": 7001, "dotenv": 7002}, 7002, ".env"),
        ({"pyproject": 7001, "dotenv": 7002, "environ": 7003}, 7003, "environment"),
        ({"pyproject": 7001, "dotenv": 7002, "environ": 7003, "flag": 7004}, 7004, "flag"),
    ],
)
def test_precedence_flag_env_dotenv_pyproject_default(tmp_path, layers, expected, source):
    project = write_project(
        tmp_path,
        pyproject=f"pg_port = {layers['pyproject']}\n" if "pyproject" in layers else "",
        dotenv=f"DBTASKS_PG_PORT={layers['dotenv']}\n" if "dotenv" in layers else "",
    )
    environ = {"DBTASKS_PG_PORT": str(layers["environ"])} if "environ" in layers else {}
    overrides = {"pg_port": layers["flag"]} if "flag" in layers else {}
    s = load_settings(overrides, project_dir=project, environ=environ)
    assert s.pg_port == expected
    assert s.sources["pg_port"] == source


def test_env_reads_name_database_url_and_is_external(tmp_path):
    project = write_project(tmp_path, dotenv="STAGING_DATABASE_URL=postgresql://u:pw@db.internal:5432/stage\n")
    s = load_settings({"env": "staging"}, project_dir=project, environ={"DATABASE_URL": "postgresql://x:y@h/other"})
    assert s.url.host == "db.internal" and s.url.database == "stage"
    assert s.server_kind == "external"
    assert s.is_protected


def test_unknown_environment_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="QA_DATABASE_URL"):
        load_settings({"env": "qa"}, project_dir=write_project(tmp_path), environ={})


def test_protected_environments_are_configurable(tmp_path):
    project = write_project(tmp_path, pyproject='protected_envs = ["live"]\n')
    environ = {"LIVE_DATABASE_URL": "postgresql://u@h/live", "PROD_DATABASE_URL": "postgresql://u@h/prod"}
    assert load_settings({"env": "live"}, project_dir=project, environ=environ).is_protected
    assert not load_settings({"env": "prod"}, project_dir=project, environ=environ).is_protected


@pytest.mark.parametrize("bad", ["not a url", "mysql://u:p@h/db", "postgresql://u:p@h:port/db", "postgresql://u:p@h:5432"])
def test_malformed_database_url(tmp_path, bad):
    with pytest.raises(ConfigError):
        load_settings(project_dir=write_project(tmp_path), environ={"DATABASE_URL": bad})


def test_heroku_style_url_is_accepted(tmp_path):
    s = load_settings(project_dir=write_project(tmp_path), environ={"DATABASE_URL": "postgres://u:p@h:5433/db"})
    assert s.url.drivername == "postgresql+psycopg2" and s.url.port == 5433


def test_cli_malformed_url_one_line_exit_2(tmp_path):
    write_project(tmp_path)
    proc = run(["status"], tmp_path, DATABASE_URL="postgresql://user:s3cretpw@host:notaport/db")
    line = assert_one_line_error(proc, "DATABASE_URL")
    assert "s3cretpw" not in proc.stderr + proc.stdout
    assert "postgresql://user:password@host:port/dbname" in line


def test_cli_url_is_redacted(tmp_path):
    write_project(tmp_path)
    proc = run(["url"], tmp_path, DATABASE_URL="postgresql://alice:Sup3r-Secret@db.example:5432/app")
    assert proc.returncode == 0, proc.stderr
    assert "Sup3r-Secret" not in proc.stdout
    assert proc.stdout.strip() == "postgresql+psycopg2://alice:***@db.example:5432/app"


def test_cli_env_flag_and_prod(tmp_path):
    write_project(tmp_path)
    proc = run(["--prod", "url"], tmp_path, PROD_DATABASE_URL="postgresql://p:pw123456@prod.db/proddb")
    assert proc.returncode == 0 and "prod.db" in proc.stdout and "pw123456" not in proc.stdout
    proc = run(["--env", "nowhere", "url"], tmp_path)
    assert_one_line_error(proc, "NOWHERE_DATABASE_URL")


def test_redact_hides_passwords_in_text():
    text = "could not connect to postgresql://bob:hunter22@db/x and password=hunter22 too"
    assert "hunter22" not in redact(text)
    assert "bob" in redact(text)


def test_a_choice_is_read_whatever_its_case_and_a_wrong_one_lists_the_choices(tmp_path):
    assert load_settings({"mode": "FULL"}, project_dir=tmp_path, environ={}).mode == "full"
    with pytest.raises(ConfigError) as info:
        load_settings({}, project_dir=tmp_path, environ={"MODE": "ful"})
    assert info.value.remedy == "use one of schema, full"
