"""A generation server that dies in the middle of an answer (``pytest -m chaos``).

A real HTTP server process accepts the completion request, sends half of its answer and is
killed. The client must notice at once, retry with backoff, and either succeed against the
restarted server or, if it stays dead, fail with one clear error within its time bound.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from branchgym.agents.openai import OpenAIPolicy, ServerConfig, ServerError
from tests.test_openai import REQ, completion

pytestmark = pytest.mark.chaos

SERVER = r"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, mode, answer = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if mode == "die":  # half an answer, then the process is gone
            self.wfile.write(answer[: len(answer) // 2])
            self.wfile.flush()
            os._exit(1)
        self.wfile.write(answer)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
"""

ANSWER = json.dumps(completion([7], [-0.2], [{7: -0.2}]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), mode, ANSWER], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_server_killed_mid_answer_is_retried_after_it_restarts():
    port = free_port()
    dying = serve(port, "die")
    restarted: list[subprocess.Popen] = []

    def supervisor():  # what a process manager does: start it again once it died
        dying.wait()
        restarted.append(serve(port, "ok"))

    threading.Thread(target=supervisor, daemon=True).start()
    cfg = ServerConfig(f"http://127.0.0.1:{port}/v1", "tiny", retries=4, backoff=0.3, timeout=5)
    start = time.monotonic()
    try:
        (gen,) = OpenAIPolicy(cfg).generate([REQ])
    finally:
        for proc in restarted:
            proc.kill()
    assert dying.returncode == 1  # it really died mid-answer
    assert gen.token_ids == (7,) and gen.logprobs == pytest.approx((-0.2,))
    assert time.monotonic() - start >= 0.3  # the retry waited its backoff


def test_a_server_that_stays_dead_fails_clearly_within_its_bound():
    port = free_port()
    dying = serve(port, "die")
    cfg = ServerConfig(f"http://127.0.0.1:{port}/v1", "tiny", retries=2, backoff=0.1, timeout=2)
    start = time.monotonic()
    with pytest.raises(ServerError) as err:
        OpenAIPolicy(cfg).generate([REQ])
    elapsed = time.monotonic() - start
    dying.wait(timeout=5)
    assert f"127.0.0.1:{port}/v1 failed after 3 tries: cannot connect" in str(err.value)
    assert elapsed < 3 * (2 + 5) + 0.3  # retries x (read + connect timeouts) + backoff: no hang
