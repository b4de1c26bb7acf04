"""The Python sandbox under escape attempts: each test asserts the attack itself failed.

Every attack runs twice: with all layers on, and with the audit hook off (``os-layers``), which
shows the OS layers (uid, network namespace, rlimits, process-group and uid kill) holding on
their own. Attacks that only the audit hook stops (reading world-readable files, creating files
in world-writable folders) run with all layers only; the module docstring of ``sandbox.py``
lists them as not guaranteed without it.
"""

from __future__ import annotations

import dis
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from branchgym.envs.pythontool import _bootstrap
from branchgym.envs.pythontool.sandbox import RunResult, SandboxError, SandboxLimits, run_python

pytestmark = pytest.mark.security

LIMITS = SandboxLimits(wall_seconds=3.0, cpu_seconds=2, memory_bytes=256 * 2**20)
OS_ONLY = replace(LIMITS, audit_hook=False)
BOTH = pytest.mark.parametrize("limits", [LIMITS, OS_ONLY], ids=["all-layers", "os-layers"])
SLACK_S = 3.0  # start-up and kill time allowed past the wall-clock limit
ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Outside:
    """Files outside the sandbox: a world-readable secret, a 0600 secret, a root-owned target
    file, and a world-writable folder."""

    public: Path
    private: Path
    target: Path
    drop: Path


@pytest.fixture
def outside() -> Iterator[Outside]:
    # Not pytest's tmp_path: its parent is 0700, which would hide the files from the sandbox's
    # uid whatever the sandbox did. This folder is 0755, as /etc or a home folder might be.
    base = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    base.chmod(0o755)
    files = Outside(base / "public.txt", base / "private.txt", base / "target.txt", base / "drop")
    for path, text, mode in (
        (files.public, "PUBLIC-SECRET-1234", 0o644),
        (files.private, "PRIVATE-SECRET-5678", 0o600),
        (files.target, "original", 0o644),
    ):
        path.write_text(text)
        path.chmod(mode)
    files.drop.mkdir()
    files.drop.chmod(0o1777)
    yield files
    subprocess.run(["rm", "-rf", str(base)], check=True)


def run(code: str, limits: SandboxLimits) -> tuple[RunResult, float]:
    start = time.monotonic()
    result = run_python(code, limits)
    return result, time.monotonic() - start


def uid_processes(uid: int | None) -> list[int]:
    """Live pids still running as the sandbox's uid (none, if the run was contained). Zombies
    do not count: they are dead, waiting for init to reap them."""
    if uid is None:
        return []
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines = Path(f"/proc/{name}/status").read_text().splitlines()
        except OSError:
            continue
        fields = {k: v.split() for k, _, v in (x.partition(":") for x in lines)}
        if fields["State"][0] not in ("Z", "X") and int(fields["Uid"][0]) == uid:
            found.append(int(name))
    return found


def test_every_layer_is_in_effect_on_this_machine():
    result, _ = run("print('hello')", LIMITS)
    assert result.ok and result.stdout == "hello\n"
    expected = {"session", "rlimits", "nnp", "audit"} | ({"uid", "netns"} if ROOT else set())
    assert expected <= set(result.layers)
    assert run("pass", OS_ONLY)[0].layers == tuple(x for x in result.layers if x != "audit")


def test_the_folder_is_empty_private_and_removed_and_the_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("BRANCHGYM_PARENT_SECRET", "env-secret-42")
    code = (
        "import os, json, math, decimal, fractions, itertools, pathlib\n"
        "pathlib.Path('notes.txt').write_text('kept')\n"
        "print(json.dumps({'cwd': os.getcwd(), 'files': sorted(os.listdir('.')), "
        "'env': dict(os.environ), 'uid': os.getuid(), 'read': open('notes.txt').read()}))"
    )
    result, _ = run(code, LIMITS)
    seen = json.loads(result.stdout)
    assert seen["files"] == ["notes.txt"] and seen["read"] == "kept"
    assert "env-secret-42" not in result.stdout and set(seen["env"]) <= {
        "PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE",
    }  # fmt: skip
    assert not os.path.exists(seen["cwd"])  # removed afterwards
    assert not ROOT or seen["uid"] == result.uid != 0
    assert run("print(input())", LIMITS)[0].error == "EOFError: EOF when reading a line"


# ---- reading files outside the folder ----

READ_PRIVATE = [
    "print(open(PATH).read())",
    "import os\nprint(os.read(os.open(PATH, os.O_RDONLY), 100))",
    "import os\nos.symlink(PATH, 'link')\nprint(open('link').read())",
    "import os\nos.link(PATH, 'hard')\nprint(open('hard').read())",
    "import pathlib\nprint(pathlib.Path(PATH).read_text())",
    "import shutil\nshutil.copy(PATH, 'copy')\nprint(open('copy').read())",
    "import io\nprint(io.FileIO(PATH).read())",
    # patch what a naive hook would look up at call time, then read
    "import builtins, sys\nbuiltins.isinstance = lambda *a: True\n"
    "sys._getframe(1).f_globals['_DEVICES'] = frozenset([PATH])\nprint(open(PATH).read())",
]


@BOTH
@pytest.mark.parametrize("attack", READ_PRIVATE)
def test_reading_a_private_file_outside_fails(outside, limits, attack):
    result, _ = run(attack.replace("PATH", repr(str(outside.private))), limits)
    assert "PRIVATE-SECRET" not in result.stdout + result.stderr
    assert not result.ok and "Error" in (result.error or "")


DIR_FD = (  # a descriptor on the working folder, then a working directory d levels below it
    "import os\nfd = os.open('.', os.O_RDONLY)\n"
    "d = len([c for c in os.getcwd().split('/') if c])\n"
    "for _ in range(d):\n    os.mkdir('n')\n    os.chdir('n')\n"
)


@pytest.mark.parametrize(
    "attack",
    [
        "print(open(PATH).read())",
        "import os\nos.symlink(PATH, 'link')\nprint(open('link').read())",
        "print(open('/proc/self/cwd/' + '../' * 20 + PATH[1:]).read())",
        "print(open('/etc/passwd').read())",
        "import os\nprint(os.listdir('/'))",
        # a str subclass whose methods would fool a hook that called them
        "class S(str):\n    def startswith(self, *a):\n        return True\n"
        "    def split(self, *a):\n        return ['']\nprint(open(S(PATH)).read())",
        # a path object that names '/' to os.listdir and '.' to a hook that asks again
        "import os\nclass P:\n    calls = 0\n    def __fspath__(self):\n        P.calls += 1\n"
        "        return '/' if P.calls == 1 else '.'\nprint(os.listdir(P()))",
        # the hook never sees dir_fd: a path that stays inside from a deeper working folder
        # climbs to / from a descriptor on the top one
        DIR_FD + "print(os.read(os.open('../' * d + PATH[1:], os.O_RDONLY, dir_fd=fd), 100))",
        # the same from the folder as it stands, once a directory descriptor is held
        "import os\nfd = os.open('.', os.O_RDONLY | os.O_DIRECTORY)\n"
        "print(os.read(os.open('../' * 30 + PATH[1:], os.O_RDONLY, dir_fd=fd), 100))",
    ],
)
def test_reading_a_world_readable_file_outside_fails(outside, attack):
    """Only the audit hook stops these (the uid may read world-readable files)."""
    result, _ = run(attack.replace("PATH", repr(str(outside.public))), LIMITS)
    out = result.stdout + result.stderr
    assert "PUBLIC-SECRET" not in out and "root:x:0" not in out and "'proc'" not in out
    assert "PermissionError: sandbox:" in (result.error or "")


# ---- writing outside the folder ----

WRITE_TARGET = [
    "open(PATH, 'w').write('pwned')",
    "open(PATH, 'a').write('pwned')",
    "import os\nos.write(os.open(PATH, os.O_WRONLY | os.O_TRUNC), b'pwned')",
    "import os\nos.symlink(PATH, 'link')\nopen('link', 'w').write('pwned')",
    "import os\nos.link(PATH, 'hard')\nopen('hard', 'w').write('pwned')",
    "import shutil\nopen('mine', 'w').write('pwned')\nshutil.copy('mine', PATH)",
    "import os\nos.rename(PATH, 'moved')",
    "import os\nos.remove(PATH)",
    "import os\nos.chmod(PATH, 0o777)",
    "import os\nos.truncate(PATH, 0)",
]


@BOTH
@pytest.mark.parametrize("attack", WRITE_TARGET)
def test_writing_a_file_outside_fails(outside, limits, attack):
    before = outside.target.stat()
    result, _ = run(attack.replace("PATH", repr(str(outside.target))), limits)
    assert outside.target.read_text() == "original"
    after = outside.target.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_ino) == (
        before.st_mode, before.st_mtime_ns, before.st_ino,
    )  # fmt: skip
    assert not result.ok


@pytest.mark.parametrize(
    "attack",
    [
        "open(DROP + '/new.txt', 'w').write('x')",
        "import os\nos.mkdir(DROP + '/newdir')",
        "import os\nopen('mine', 'w').write('x')\nos.rename('mine', DROP + '/new.txt')",
        DIR_FD + "os.open('../' * d + DROP[1:] + '/new.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
    ],
)
def test_creating_files_in_a_world_writable_folder_fails(outside, attack):
    """Only the audit hook stops these (the uid may write to a 1777 folder such as /tmp)."""
    result, _ = run(f"DROP = {str(outside.drop)!r}\n{attack}", LIMITS)
    assert list(outside.drop.iterdir()) == []
    assert "PermissionError: sandbox:" in (result.error or "")


# ---- the network ----


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1).sendall(b'hi')",
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', PORT))",
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('localhost', PORT))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/', timeout=1)",
    ],
)
def test_reaching_a_loopback_server_fails(tcp_server, limits, attack):
    port = tcp_server.getsockname()[1]
    result, _ = run(attack.replace("PORT", str(port)), limits)
    readable, _, _ = select.select([tcp_server], [], [], 0.2)
    assert readable == []  # no connection ever reached the listening socket
    with pytest.raises(BlockingIOError):
        tcp_server.accept()
    assert not result.ok


@BOTH
def test_udp_to_a_loopback_socket_fails(limits):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))"
        )
        result, _ = run(code, limits)
        assert select.select([server], [], [], 0.2)[0] == [] and not result.ok


# ---- processes, memory, time, output ----


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "import os\nwhile True:\n    os.fork()",
        "import os\nwhile True:\n    if os.fork() == 0:\n        os.setsid()",
        "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '600'])",
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(600,)).start()",
    ],
    ids=["fork", "fork-setsid", "popen", "threads"],
)
def test_a_fork_bomb_is_contained(limits, attack):
    result, elapsed = run(attack, limits)
    assert elapsed < limits.wall_seconds + SLACK_S
    assert not result.ok
    assert uid_processes(result.uid) == []  # nothing outlived the call, setsid or not
    assert subprocess.run(["true"]).returncode == 0  # this machine can still start processes


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "x = bytearray(8 * 1024**3)",
        "x = 'a' * (4 * 1024**3)",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))",
        "import mmap\nm = mmap.mmap(-1, 4 * 1024**3)\nm[::4096] = b'x' * (1024**2)",
    ],
)
def test_a_memory_bomb_is_contained(limits, attack):
    result, elapsed = run(attack, limits)
    assert elapsed < limits.wall_seconds + SLACK_S
    assert "MemoryError" in (result.error or "") or "Cannot allocate memory" in result.stderr


@BOTH
def test_the_memory_limit_sits_where_it_is_set(limits):
    # 256 MiB of address space: 160 MiB more fits beside the interpreter, 300 MiB does not.
    fits, _ = run(
        "x = bytearray(160 * 2**20)\nx[::4096] = b'y' * len(x[::4096])\nprint('ok')", limits
    )
    too_big, _ = run("x = bytearray(300 * 2**20)", limits)
    assert fits.stdout == "ok\n" and "MemoryError" in (too_big.error or "")


LOOP_LIMITS = replace(LIMITS, wall_seconds=1.5, cpu_seconds=1)


@pytest.mark.parametrize(
    "limits", [LOOP_LIMITS, replace(LOOP_LIMITS, audit_hook=False)], ids=["all-layers", "os-layers"]
)
@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ("while True:\n    pass", "CPU time limit of 1 s"),
        ("import time\ntime.sleep(3600)", "Timed out after 1.5 s"),
        (
            "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
            "while True:\n    try:\n        pass\n    except BaseException:\n        pass",
            "",
        ),
    ],
    ids=["busy", "sleep", "ignore-sigxcpu"],
)
def test_an_endless_loop_is_stopped(limits, attack, message):
    result, elapsed = run(attack, limits)
    assert elapsed < limits.wall_seconds + SLACK_S
    assert result.exit_code < 0 and message in (result.error or "")
    assert result.cpu_seconds < limits.cpu_seconds + 1.5


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "import sys\nwhile True:\n    sys.stdout.write('x' * 10**6)",
        "import sys\nwhile True:\n    sys.stderr.write('x' * 10**6)",
        "import os\nwhile True:\n    os.write(1, b'x' * 10**6)",
        "print('x' * (3 * 1024**3))",
    ],
)
def test_gigabytes_of_output_are_cut_off(limits, attack):
    result, elapsed = run(attack, limits)
    assert elapsed < limits.wall_seconds + SLACK_S
    assert len(result.stdout) + len(result.stderr) <= limits.output_bytes
    assert not result.ok


@BOTH
def test_a_gigabyte_file_is_cut_off(limits):
    code = "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 10**6)\n    f.flush()"
    result, elapsed = run(code, limits)
    assert "File too large" in (result.error or "") and elapsed < limits.wall_seconds + SLACK_S


@BOTH
def test_a_ctypes_crash_is_a_result(limits):
    """The audit hook refuses ctypes; without it the segfault kills only the child, and comes
    back as an exit by signal."""
    result, elapsed = run("import ctypes\nctypes.string_at(0)", limits)
    assert not result.ok
    if limits.audit_hook:
        assert result.exit_code == 1 and "ctypes" in result.stderr
    else:
        assert result.exit_code == -signal.SIGSEGV
    assert elapsed < limits.wall_seconds + SLACK_S


@BOTH
def test_too_many_open_files_is_an_error_in_the_child(limits):
    code = "fs = [open(f'f{i}', 'w') for i in range(100_000)]"
    result, _ = run(code, limits)
    assert not result.ok and "Too many open files" in result.stderr


# ---- signals to the parent and to other processes ----

MIDDLE = """
import json, sys
from branchgym.envs.pythontool.sandbox import SandboxLimits, run_python
limits = SandboxLimits(**json.loads(sys.argv[1]))
result = run_python(sys.argv[2], limits)
print(json.dumps({"error": result.error, "ok": result.ok}))
"""


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
        "import os, signal, sys\nsys.modules.pop('_signal', None)\nimport _signal\n"
        "_signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)",
    ],
    ids=["kill", "killpg", "pidfd"],
)
def test_killing_the_parent_fails(limits, attack):
    # The sandbox's parent here is a disposable middle process, so a failure shows up as a
    # dead middle process instead of a dead test run.
    middle = subprocess.run(
        [sys.executable, "-c", MIDDLE, json.dumps(limits.__dict__), attack],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert middle.returncode == 0, middle.stderr  # the parent survived and reported
    report = json.loads(middle.stdout)
    assert not report["ok"] and "Error" in report["error"]


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


@BOTH
@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal\nos.kill(PID, signal.SIGKILL)",
        "import os, signal\nos.killpg(os.getpgid(PID), signal.SIGKILL)",
        "import os, signal\nos.kill(-1, signal.SIGKILL)",
        "import os, signal, sys\nsys.modules.pop('_signal', None)\nimport _signal\n"
        "_signal.pidfd_send_signal(os.pidfd_open(PID), signal.SIGKILL)",
    ],
    ids=["kill", "killpg", "kill-everything", "pidfd"],
)
def test_killing_the_test_process_or_another_process_fails(victim, limits, attack):
    # The test process's own pid goes in as well when the uid layer is on (as root); without
    # it, an os-layers failure would take the whole test run down with it.
    targets = [victim.pid] + ([os.getpid()] if ROOT or limits.audit_hook else [])
    for pid in targets:
        result, _ = run(attack.replace("PID", str(pid)), limits)
        # kill(-1) as the sandbox's own uid is allowed, and kills only the sandbox itself
        assert "kill(-1" in attack or (not result.ok and "Error" in (result.error or ""))
    time.sleep(0.1)
    assert victim.poll() is None  # still running
    os.kill(os.getpid(), 0)  # and so is this process


# ---- the hook itself, and start-up failures ----


def test_the_hook_reads_no_globals_or_builtins_at_call_time():
    # A hook that looked up os.readlink or isinstance when called could be monkeypatched by the
    # code it polices; every name must be a closure cell bound when the hook was made.
    inner = [c for c in _bootstrap._make_hook.__code__.co_consts if hasattr(c, "co_code")]
    assert {c.co_name for c in inner} >= {"hook", "resolve", "within", "as_text", "paths_ok"}
    for code in inner:
        loads = {i.opname for i in dis.get_instructions(code)}
        assert not loads & {"LOAD_GLOBAL", "LOAD_NAME"}, code.co_name


def test_a_sandbox_that_cannot_start_raises(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(SandboxError):
        run_python("print(1)")


def test_code_errors_are_results_not_exceptions():
    result, _ = run("def f():\n    return 1 / 0\nprint('before')\nf()", LIMITS)
    assert result.stdout == "before\n" and result.exit_code == 1
    assert result.error == "ZeroDivisionError: division by zero"
    assert 'File "<sandbox>", line 2, in f' in result.stderr and "sandbox.py" not in result.stderr
    assert "_bootstrap.py" not in result.stderr  # the bootstrap's frames are not the agent's
