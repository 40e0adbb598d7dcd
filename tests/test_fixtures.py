"""The pytest plugin's per-test transaction fixtures: dbtasks_connection and dbtasks_session.

The proof that one test's rows are invisible to the next needs two tests that
run in order on the same worker, so it runs a small test file with the plugin
in its own pytest process (no xdist), on this session's server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

from .conftest import clean_env, copy_project, url_str

INNER_TESTS = '''
import sqlalchemy as sa
import pytest

COUNT = sa.text("select count(*) from tags where name like 'leak%'")


def test_1_writes_and_commits(dbtasks_session, dbtasks_connection):
    dbtasks_session.execute(sa.text("insert into tags (name) values ('leak-session')"))
    dbtasks_session.commit()  # the code under test commits: a savepoint is released
    dbtasks_session.rollback()  # what was committed stays
    with dbtasks_connection.begin_nested():
        dbtasks_connection.execute(sa.text("insert into tags (name) values ('leak-connection')"))
    assert dbtasks_connection.execute(COUNT).scalar() == 2


def test_2_sees_nothing_of_test_1(dbtasks_connection):
    assert dbtasks_connection.execute(COUNT).scalar() == 0
    # the schema is at head: the migrated tables are there
    assert dbtasks_connection.execute(sa.text("select count(*) from alembic_version")).scalar() == 1


def test_3_a_clone_per_test_still_works_alongside(dbtasks_connection, dbtasks_database):
    engine = sa.create_engine(dbtasks_database)
    with engine.begin() as conn:
        conn.execute(sa.text("insert into tags (name) values ('leak-clone')"))
    engine.dispose()
    assert dbtasks_connection.execute(COUNT).scalar() == 0


def test_4_commits_on_the_connection(dbtasks_connection):
    dbtasks_connection.execute(sa.text("insert into tags (name) values ('leak-committed')"))
    dbtasks_connection.commit()


def test_5_closes_the_connection(dbtasks_connection):
    dbtasks_connection.execute(sa.text("insert into tags (name) values ('leak-closed')"))
    dbtasks_connection.close()


def test_6_still_isolated_after_a_commit_and_a_close(dbtasks_connection):
    assert dbtasks_connection.execute(COUNT).scalar() == 0
'''


# The inner session clones this session's template instead of migrating its own (the fixtures under test start there).
INNER_CONFTEST = '''
import os

import pytest

from dbtasks.config import parse_url


@pytest.fixture(scope="session")
def dbtasks_template():
    return parse_url(os.environ["OUTER_TEMPLATE_URL"])
'''


def test_rows_written_by_one_test_are_invisible_to_the_next(tmp_path: Path, dbtasks_server_url: URL, dbtasks_template: URL):
    project = copy_project(tmp_path / "project")
    (project / "tests").mkdir()
    (project / "tests" / "test_inner.py").write_text(INNER_TESTS)
    (project / "tests" / "conftest.py").write_text(INNER_CONFTEST)
    env = clean_env(TEST_DATABASE_URL=url_str(dbtasks_server_url), OUTER_TEMPLATE_URL=url_str(dbtasks_template))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-p", "no:pytest_alembic", "-o", "addopts=", "-rA", "tests/test_inner.py"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    for name in ("test_1_writes_and_commits", "test_2_sees_nothing_of_test_1", "test_3_a_clone_per_test_still_works_alongside",
                 "test_4_commits_on_the_connection", "test_5_closes_the_connection", "test_6_still_isolated_after_a_commit_and_a_close"):
        assert f"PASSED tests/test_inner.py::{name}" in out, out
    # The commit on the shared connection is reported (as an error at teardown), and the next test is still isolated.
    assert "ERROR at teardown of test_4_commits_on_the_connection" in out, out
    assert "called commit() on dbtasks_connection" in out and "dbtasks_session" in out, out
    assert "6 passed, 1 error" in out, out
