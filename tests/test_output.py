"""Output a person likes: colour at a terminal only (NO_COLOR respected), progress lines with rate and ETA.

The CLI runs through a pseudo-terminal here (its stdout and/or stderr is a
tty) to see colour, and through files and with NO_COLOR=1 to see none. The
progress tests of a real dump and restore are in test_data_dump_restore.py and
at the end of this file (at a terminal); the drawing itself is checked with a
clock the test moves.
"""

from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

import pytest

from dbtasks.data.tools import Progress
from dbtasks.formatting import ProgressLine, colour_enabled, style, style_prefix

from .checks_helpers import example
from .conftest import _child, clean_env, run, url_str
from .data_helpers import execute, new_database, drop_database

ESC = "\x1b["
RED, GREEN, YELLOW = "\x1b[31m", "\x1b[32m", "\x1b[33m"
COLOUR_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TERM")


def run_tty(args, cwd: Path, stdout_tty: bool = True, stderr_tty: bool = True, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    """Run the CLI (forked, as conftest.run does) with stdout and/or stderr on a pseudo-terminal 200 columns wide.

    Returns the terminal's text (both streams when both are on it, ``\\r\\n``
    turned into ``\\n``) as stdout, and what went to a file as stderr.
    """
    import dbtasks.cli

    assert dbtasks.cli.main  # imported once, before forking

    env = {k: v for k, v in clean_env().items() if k not in COLOUR_VARIABLES}
    env.update(TERM="xterm", **extra)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    with tempfile.TemporaryDirectory(prefix="dbtasks-tty-") as tmp:
        plain = Path(tmp) / "plain"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(master)
            null = os.open(os.devnull, os.O_RDONLY)
            file = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            _child(list(args), cwd, env, fds=[null, slave if stdout_tty else file, slave if stderr_tty else file])
        os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        status = None
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    data = b""
                if data:
                    chunks.append(data)
                    continue
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            if status is not None and not ready:
                break
            if ready and not data and status is not None:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(["dbtasks", *args], timeout)
        os.close(master)
        text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
        return subprocess.CompletedProcess(["dbtasks", *args], os.waitstatus_to_exitcode(status), text, plain.read_text(errors="replace") if plain.exists() else "")


# -- the rules, per stream ---------------------------------------------------------------


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    "env, tty, coloured",
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # no-color.org: set and not empty
        ({"TERM": "dumb"}, True, False),
        ({"FORCE_COLOR": "1"}, False, True),
        ({"CLICOLOR_FORCE": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, True, False),  # NO_COLOR wins
    ],
)
def test_colour_only_at_a_terminal_and_never_with_NO_COLOR(monkeypatch, env, tty, coloured):
    for name in COLOUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = Stream(tty)
    assert colour_enabled(stream) is coloured
    assert (style("FAILED", "failed", stream) != "FAILED") is coloured
    line = style_prefix("error: the database is down; run `make start-db`", stream)
    assert (line.startswith(RED) if coloured else line == "error: the database is down; run `make start-db`")
    assert line.endswith("error:" + ("\x1b[0m" if coloured else "") + " the database is down; run `make start-db`")


# -- the CLI at a terminal, in a pipe ------------------------------------------------------


def test_error_line_is_red_at_a_terminal_plain_with_NO_COLOR_and_in_files(project, tmp_path):
    missing = tmp_path / "nope.dump"
    at_tty = run_tty(["restore-db", "--file", str(missing)], project, DATABASE_URL="postgresql://u@127.0.0.1:1/x")
    assert at_tty.returncode == 2, at_tty.stdout
    lines = [line for line in at_tty.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(RED) and "error:" in lines[0], lines  # still one line
    assert f"dump file {missing} does not exist" in lines[0]
    no_colour = run_tty(["restore-db", "--file", str(missing)], project, DATABASE_URL="postgresql://u@127.0.0.1:1/x", NO_COLOR="1")
    assert no_colour.returncode == 2 and ESC not in no_colour.stdout and no_colour.stdout.strip().startswith("error: dump file")
    piped = run(["restore-db", "--file", str(missing)], project, DATABASE_URL="postgresql://u@127.0.0.1:1/x")
    assert piped.returncode == 2 and ESC not in piped.stderr and piped.stderr.startswith("error: dump file")


def test_status_colours_its_stream_only_when_that_stream_is_a_terminal(project, dbtasks_database):
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    both = run_tty(["status"], project, **env)
    assert both.returncode == 0, both.stdout
    assert f"pending:  none, {GREEN}up to date" in both.stdout
    # stdout to a file, stderr at the terminal: stdout stays plain.
    split = run_tty(["status"], project, stdout_tty=False, **env)
    assert split.returncode == 0 and ESC not in split.stderr and "pending:  none, up to date" in split.stderr
    forced = run(["status"], project, FORCE_COLOR="1", **env)
    assert f"{GREEN}up to date" in forced.stdout


def test_pending_is_yellow_and_the_check_summary_verdicts_are_coloured(project, empty_database, dbtasks_server_url, tmp_path):
    pending = run_tty(["status"], project, DATABASE_URL=url_str(empty_database))
    assert f"pending:  {YELLOW}" in pending.stdout and "revision(s)" in pending.stdout
    # Two heads: heads fails (red), the checks that need one head are not run (yellow), lint passes (green).
    two = example("two_heads", tmp_path)
    checked = run_tty(["check"], two, DATABASE_URL=url_str(dbtasks_server_url))
    assert checked.returncode == 1, checked.stdout
    rows = {line.split()[0]: line for line in checked.stdout.splitlines() if line.split() and ESC in line}
    assert rows["heads"].startswith(f"heads      {RED}") and "FAILED" in rows["heads"], rows
    assert f"{YELLOW}not-run " in rows["drift"] and f"{GREEN}ok      " in rows["lint"], rows
    assert any(f"{RED}" in line and "FAILED: " in line for line in checked.stdout.splitlines())
    assert f"{RED}" in checked.stdout.split("heads/multiple-heads")[0].splitlines()[-1]  # the finding's error: prefix
    clean = run_tty(["check-heads"], example("clean", tmp_path))
    assert f"heads: {GREEN}ok" in clean.stdout
    plain = run(["check"], two, DATABASE_URL=url_str(dbtasks_server_url))
    assert plain.returncode == 1 and ESC not in plain.stdout + plain.stderr and "not-run " in plain.stdout


# -- drawing progress ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_at_a_terminal_is_one_updating_line_with_rate_and_eta():
    clock, stream = Clock(), Stream(True)
    with ProgressLine(stream, clock=clock, width=120) as bar:
        bar(Progress("dump", 0, 8 * 1024 * 1024, "bytes"))
        clock.now += 2
        bar(Progress("dump", 2 * 1024 * 1024, 8 * 1024 * 1024, "bytes", "public.events"))
        clock.now += 2
        bar(Progress("dump", 8 * 1024 * 1024, 8 * 1024 * 1024, "bytes"))
    frames = stream.getvalue().split("\r")[1:]
    assert "\n" not in "".join(frames[:-1])  # redrawn in place
    assert "25%" in frames[1] and "2.0 MB/8.0 MB" in frames[1] and "1.0 MB/s" in frames[1] and "ETA 0:06" in frames[1] and "public.events" in frames[1]
    last = frames[-1]
    assert "100%" in last and "8.0 MB/8.0 MB" in last and "2.0 MB/s" in last and "in 4.0s" in last and last.endswith("\n")


def test_progress_without_a_total_shows_amount_and_rate_but_no_eta():
    clock, stream = Clock(), Stream(True)
    with ProgressLine(stream, clock=clock, width=120) as bar:
        bar(Progress("restore", 0, None, "bytes"))
        clock.now += 4
        bar(Progress("restore", 6 * 1024 * 1024, None, "bytes"))
    text = stream.getvalue()
    assert "6.0 MB" in text and "1.5 MB/s" in text and "ETA" not in text and "%" not in text


def test_progress_in_a_log_is_quiet_for_short_stages_and_a_line_every_interval_for_long_ones():
    clock, stream = Clock(), Stream(False)
    with ProgressLine(stream, clock=clock, interval=10) as bar:
        bar(Progress("schema", 0, 2, "steps"))
        clock.now += 1
        bar(Progress("schema", 2, 2, "steps"))
        bar(Progress("restore", 0, 100 * 1024 * 1024, "bytes"))
        for _ in range(25):
            clock.now += 1
            bar(Progress("restore", int((clock.now - 101) * 4 * 1024 * 1024), 100 * 1024 * 1024, "bytes"))
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("schema") for line in lines)  # over in a second: nothing
    assert len(lines) == 3, lines  # at 10 s, at 20 s, and the closing line
    assert "\r" not in stream.getvalue() and ESC not in stream.getvalue() and "[" not in lines[0]
    assert "40.0 MB/100.0 MB" in lines[0] and "4.0 MB/s" in lines[0] and "ETA" in lines[0]
    assert "in 25.0s" in lines[-1]


def test_a_failed_stage_ends_its_line_and_draws_no_closing_frame():
    clock, stream = Clock(), Stream(True)
    with pytest.raises(RuntimeError):
        with ProgressLine(stream, clock=clock, width=120) as bar:
            bar(Progress("restore", 10, 100, "bytes"))
            raise RuntimeError("boom")
    assert stream.getvalue().endswith("\n") and " in " not in stream.getvalue()


def test_a_long_line_is_cut_to_the_terminal_width_never_wrapped():
    stream = Stream(True)
    with ProgressLine(stream, clock=Clock(), width=40) as bar:
        bar(Progress("restore", 10, 100, "bytes", "x" * 200))
    assert all(len(frame.rstrip("\n")) <= 39 for frame in stream.getvalue().split("\r"))


# -- a real dump and restore at a terminal ------------------------------------------------------


@pytest.fixture(scope="module")
def big_source(dbtasks_server_url):
    """A database (no migrations) with ~10 MB of table data in one indexed table."""
    url = new_database(dbtasks_server_url)
    execute(
        url,
        "create table big (id int primary key, payload text)",
        "insert into big select g, md5(g::text) || md5((g * 7)::text) from generate_series(1, 100000) g",
        "create index big_payload on big (payload)",
        "analyze big",
    )
    yield url
    drop_database(dbtasks_server_url, url.database)


def test_dump_and_restore_at_a_terminal_draw_bytes_rate_and_reach_the_total(project, big_source, dbtasks_server_url, tmp_path):
    path = tmp_path / "big.dump"
    dumped = run_tty(["dump-db", "--output", str(path)], project, DATABASE_URL=url_str(big_source))
    assert dumped.returncode == 0, dumped.stdout
    frames = [f for line in dumped.stdout.split("\n") for f in line.split("\r") if f.startswith("dump  ")]
    assert frames and "100%" in frames[-1] and "MB/s" in frames[-1] and " in " in frames[-1], frames
    total = frames[-1].split("/")[1].split()[0:2]  # e.g. "9.7 MB"
    assert f"{total[0]} {total[1]} of table data" in dumped.stdout
    target = new_database(dbtasks_server_url)
    try:
        restored = run_tty(["restore-db", "--file", str(path), "--confirm", target.database], project, DATABASE_URL=url_str(target))
        assert restored.returncode == 0, restored.stdout
        frames = [f for line in restored.stdout.split("\n") for f in line.split("\r") if f.startswith(("restore  ", "indexes  "))]
        data = [f for f in frames if f.startswith("restore  ")]
        assert "100%" in data[-1] and f"{total[0]} {total[1]}/{total[0]} {total[1]}" in data[-1], frames
        assert any(f.startswith("indexes") for f in frames), frames  # the index builds are a stage of their own
        # A dump dbtasks did not make (no <dump>.meta.json): bytes and rate, no total, no ETA.
        (tmp_path / "big.dump.meta.json").unlink()
        foreign = run_tty(["restore-db", "--file", str(path), "--confirm", target.database], project, DATABASE_URL=url_str(target))
        assert foreign.returncode == 0, foreign.stdout
        data = [f for line in foreign.stdout.split("\n") for f in line.split("\r") if f.startswith("restore  ")]
        assert "MB/s" in data[-1] and "MB" in data[-1] and "%" not in data[-1] and "ETA" not in "".join(data), data
        assert "MB of table data" in foreign.stdout
    finally:
        drop_database(dbtasks_server_url, target.database)
