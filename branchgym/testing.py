"""Test helpers shipped with the library: a throwaway PostgreSQL server, and a vLLM server.

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


@contextmanager
def vllm_server(
    model: str, *args: str, env: dict[str, str] | None = None, wait: float = 240.0
) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on ``model`` (a folder) on a free local port, as the
    tests of the ``openai`` backend start it; yields its base URL (``http://HOST:PORT/v1``).

    Served as ``tiny``, float32, with 20 log-probs of the sampled distribution; ``args`` are
    more server options, ``env`` more environment variables. Stopped on exit."""
    import sys
    import time

    import httpx

    port = _free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
        "--max-logprobs", "20", "--served-model-name", "tiny",
        "--logprobs-mode", "processed_logprobs", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | (env or {}),
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"vLLM server did not answer within {wait:.0f} s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
