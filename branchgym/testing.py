"""Test helpers shipped with the library: a throwaway PostgreSQL server.

Used by branchgym's own tests and benchmarks, and by anyone testing code that writes to the
store: ``with postgres_server() as url: TrajectoryStore(url)``. It needs the PostgreSQL server
binaries (``initdb``, ``pg_ctl``) on PATH and ``psycopg`` installed.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
The data folder lives under a fresh temporary folder and the server listens on 127.0.0.1 on a
free port, with fsync off: it exists for one test session and is stopped with it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster, yield its SQLAlchemy URL, stop and delete it afterwards."""
    if shutil.which("initdb") is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    root = tempfile.mkdtemp(prefix="branchgym-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True}
    subprocess.run(
        _as_owner(["initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]), **run
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = os.path.join(root, "server.log")
    subprocess.run(_as_owner(["pg_ctl", "-D", data, "-l", log, "-w", "-o", opts, "start"]), **run)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_owner(["pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
