"""roundtrip (`db-check-roundtrip`): each downgrade restores the schema before its upgrade."""

from __future__ import annotations

from .checks_helpers import check, example, findings, rules


def roundtrip(project, server, **env):
    return check(["check-roundtrip", "--format", "json"], project, server, **env)


def test_exact_downgrades_pass_with_either_env_py_style(tmp_path, dbtasks_server_url):
    for case in ("clean", "clean_url_env"):
        proc = check(["check-roundtrip"], example(case, tmp_path), dbtasks_server_url)
        assert proc.returncode == 0, (case, proc.stdout, proc.stderr)
        assert proc.stdout == "roundtrip: ok\n", (case, proc.stdout)
        assert proc.stderr == "note: roundtrip: 2 revision(s) walked\n", (case, proc.stderr)


def test_leftover_index_and_enum_type_are_named(tmp_path, dbtasks_server_url):
    proc = roundtrip(example("roundtrip_leftover", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1, proc.stderr
    (left,) = [f for f in findings(proc) if f["rule"] == "downgrade-leaves-objects"]
    assert left["revision"] == "7a7a7a7a7a01"
    assert left["file"] == "migrations/versions/2026_01_02_7a7a7a7a7a01_add_mood.py"
    assert "index ix_posts_title" in left["message"] and "enum type mood" in left["message"]
    # the leftover type also makes the second upgrade fail; the walk stops there
    assert ("reupgrade-failed", "7a7a7a7a7a01") in rules(proc)
    assert not [f for f in findings(proc) if f["revision"] == "7a7a7a7a7a02"]


def test_downgrade_that_drops_too_much_is_named(tmp_path, dbtasks_server_url):
    proc = roundtrip(example("roundtrip_lossy", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1
    lost = [f for f in findings(proc) if f["rule"] == "downgrade-loses-objects"]
    assert [f["revision"] for f in lost] == ["7b7b7b7b7b01"]
    assert "column posts.score" in lost[0]["message"]


def test_not_implemented_downgrade_is_a_warning_and_the_walk_goes_on(tmp_path, dbtasks_server_url):
    proc = check(["check-roundtrip"], example("roundtrip_irreversible", tmp_path), dbtasks_server_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning: roundtrip/irreversible [7c7c7c7c7c01]" in proc.stdout and "NotImplementedError" in proc.stdout


def test_irreversible_list_and_minimum_revision_are_configurable(tmp_path, dbtasks_server_url):
    project = example("roundtrip_lossy", tmp_path)
    proc = roundtrip(project, dbtasks_server_url, DBTASKS_ROUNDTRIP_IRREVERSIBLE="7b7b7b7b7b01")
    assert proc.returncode == 0, proc.stdout
    assert rules(proc) == {("irreversible", "7b7b7b7b7b01")}
    (project / "pyproject.toml").write_text('[tool.dbtasks]\nroundtrip_min_revision = "7b7b7b7b7b01"\n')
    assert roundtrip(project, dbtasks_server_url).returncode == 1  # the minimum itself is tested
    leftover = example("roundtrip_leftover", tmp_path)
    (leftover / "pyproject.toml").write_text('[tool.dbtasks]\nroundtrip_min_revision = "7a7a7a7a7a02"\n')
    proc = check(["check-roundtrip"], leftover, dbtasks_server_url)
    assert proc.returncode == 0, proc.stdout  # 7a7a7a7a7a01 is older than the minimum: only upgraded
    assert "note: roundtrip: 2 revision(s) older than 7a7a7a7a7a02 only upgraded" in proc.stderr.splitlines(), proc.stderr


def test_unknown_irreversible_revision_is_a_usage_error(tmp_path, dbtasks_server_url):
    from .conftest import assert_one_line_error

    proc = check(["check-roundtrip"], example("clean", tmp_path), dbtasks_server_url, DBTASKS_ROUNDTRIP_IRREVERSIBLE="nope")
    assert_one_line_error(proc, "roundtrip_irreversible names unknown revision(s): nope")


def test_a_snapshot_turns_jit_off_for_its_session(dbtasks_database):
    """The catalog union once cost more than jit_above_cost: compiled, each snapshot took 16x as long (a roundtrip
    of 200 revisions 114 s instead of 11 s). Its comment query is cheaper now, but a big schema raises the
    estimate again, so the snapshot's session runs it without JIT."""
    import sqlalchemy as sa

    from dbtasks.checks import snapshot
    from dbtasks.database import connect

    with connect(dbtasks_database) as conn:
        conn.execute(sa.text("set jit = on"))
        taken = snapshot.take(conn)
        assert conn.execute(sa.text("show jit")).scalar() == "off"
        assert "users" in " ".join(taken["table"])
