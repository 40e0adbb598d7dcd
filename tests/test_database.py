"""Scratch databases: created and dropped on the real server, with a clear error
for a role that may not create databases."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from dbtasks.config import load_settings
from dbtasks.database import connect, database_exists, scratch
from dbtasks.errors import ServerError


def settings_on(url, tmp_path):
    return load_settings({"database_url": url.render_as_string(hide_password=False)}, project_dir=tmp_path, environ={})


def test_scratch_database_is_dropped_even_when_the_body_fails(dbtasks_server_url, tmp_path):
    with pytest.raises(RuntimeError):
        with scratch(settings_on(dbtasks_server_url, tmp_path), prefix="dbtasks_t") as url:
            assert database_exists(url)
            name = url.database
            raise RuntimeError("boom")
    assert not database_exists(dbtasks_server_url, name)


def test_role_without_createdb_gets_one_clear_line(dbtasks_server_url, tmp_path):
    role = f"dbtasks_nocreate_{uuid.uuid4().hex[:8]}"
    with connect(dbtasks_server_url, autocommit=True) as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD 'Pw-{role}'"))
    try:
        limited = dbtasks_server_url.set(username=role, password=f"Pw-{role}")
        with pytest.raises(ServerError) as info:
            with scratch(settings_on(limited, tmp_path), prefix="dbtasks_t", why="the checks create scratch databases"):
                pytest.fail("a role without CREATEDB created a database")
        text = str(info.value)
        assert "cannot create a scratch database" in text and "CREATEDB" in text
        assert "\n" not in text and f"Pw-{role}" not in text
    finally:
        with connect(dbtasks_server_url, autocommit=True) as conn:
            conn.execute(sa.text(f"DROP ROLE {role}"))
