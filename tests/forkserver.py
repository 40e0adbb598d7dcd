"""A warm `dbtasks` program for the recipes that make and just run in tests.

make and just start the program named by ``DBTASKS=`` / ``dbtasks=`` once per
recipe. A new interpreter importing dbtasks, SQLAlchemy and Alembic costs most
of a second; the tests run a few hundred recipes. So, unless
``DBTASKS_TEST_EXEC=1`` asks for the installed program, run_make and run_just
name a small client instead (a Python script without site-packages, a few
milliseconds to start). It hands its arguments, environment, working directory
and its stdin, stdout and stderr (the descriptors themselves) to a server thread
of the test process, which forks a child that runs the real entry point exactly
as :func:`tests.conftest.run` does, and sends back the exit status. make and just
still parse the recipe, expand its variables and run it through the shell.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

CLIENT = """#!{python} -SE
# Written by tests/forkserver.py: runs dbtasks in a warm process of the test session.
import json, os, socket, sys

s = socket.socket(socket.AF_UNIX)
s.connect({socket_path!r})
body = json.dumps({{"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(s, [len(body).to_bytes(8, "big") + body], [0, 1, 2])
status = b""
while len(status) < 4:
    chunk = s.recv(4 - len(status))
    if not chunk:
        sys.exit("dbtasks (tests/forkserver.py): the test process went away")
    status += chunk
sys.exit(int.from_bytes(status, "big", signed=True))
"""

_lock = threading.Lock()
_program: str | None = None
_owner = os.getpid()
_children: set[int] = set()
_running: tuple[socket.socket, Path] | None = None


def program() -> str:
    """The path of the client program, starting this process's server on first use."""
    global _program
    with _lock:
        if _program is None or _owner != os.getpid():
            _program = _start()
        return _program


def _start() -> str:
    global _owner, _running
    import dbtasks.cli  # noqa: F401  (imported once here, not in every child)

    _owner = os.getpid()
    home = Path(tempfile.mkdtemp(prefix="dbtasks-fork-"))
    socket_path = str(home / "socket")
    server = socket.socket(socket.AF_UNIX)
    server.bind(socket_path)
    server.listen(16)
    client = home / "dbtasks"
    client.write_text(CLIENT.format(python=sys.executable, socket_path=socket_path))
    client.chmod(0o755)
    threading.Thread(target=_serve, args=(server,), name="dbtasks-forkserver", daemon=True).start()
    _running = (server, home)
    atexit.register(stop)
    return str(client)


def stop() -> None:
    """Stop this process's server (end of the test session): kill children still running, remove the files."""
    global _program, _running
    with _lock:
        if _running is None or _owner != os.getpid():
            return
        server, home = _running
        _running = _program = None
    for pid in list(_children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.close()
    shutil.rmtree(home, ignore_errors=True)


def _serve(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # closed at exit
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def _handle(conn: socket.socket) -> None:
    with conn:
        data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
        try:
            size = int.from_bytes(data[:8], "big")
            body = data[8:]
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    return
                body += chunk
            request = json.loads(body)
            from .conftest import _child

            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _child(request["args"], Path(request["cwd"]), request["env"], fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        _children.add(pid)
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            _children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        conn.sendall((code if code >= 0 else 128 - code).to_bytes(4, "big", signed=True))
