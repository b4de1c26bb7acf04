"""Run untrusted Python in a child process, with layered containment: ``run_python(code, limits)``.

``PythonTool-v0`` sends every ``<python>`` call here. The code runs in a fresh interpreter
(``python -I -S -B``: no site-packages, no environment variables, no bytecode writes) started
with ``posix_spawn`` in a new session, in an empty temporary folder that is deleted afterwards,
with a scrubbed environment and stdin from ``/dev/null``. That interpreter runs
``_bootstrap.py`` as a script: it reads the code from a memfd, sets the layers up, writes which
layers it reached to a status pipe, then runs the code as ``__main__``. The parent reads stdout
and stderr incrementally up to ``output_bytes`` and kills the whole run at the wall-clock limit.

Layers, and what each one stops (``RunResult.layers`` says which were in effect):

========== ========================================================================================
session    New session / process group, SIGKILLed at the wall-clock limit, on too much output,
           and when the main process exits (so no child outlives the call).
rlimits    RLIMIT_CPU (endless loops), RLIMIT_AS (memory bombs: MemoryError), RLIMIT_FSIZE (file
           bombs: EFBIG), RLIMIT_NPROC (fork bombs: EAGAIN), RLIMIT_NOFILE, RLIMIT_CORE=0. Hard
           limits equal soft ones, so the code cannot raise them.
uid        Only when the parent is root: a fresh random uid/gid (no supplementary groups) per
           run, so the code cannot signal the parent or any other process (EPERM), cannot read or
           write files private to other users (0600/0700), cannot write root-owned files, and
           RLIMIT_NPROC counts this run alone. Every process of that uid is killed afterwards
           (``kill(-1)`` from a helper with that uid), which also catches ``setsid`` escapes. The
           stdlib is imported through a directory fd opened before the drop, because the
           interpreter may live where the new uid cannot walk (``/root`` is 0700).
netns      A new, empty network namespace (``unshare(CLONE_NEWNET)``; needs root or user
           namespaces): no interface is up, not even loopback, so no TCP/UDP/abstract-socket
           connection reaches the host.
nnp        ``PR_SET_NO_NEW_PRIVS`` (setuid binaries gain nothing), ``PR_SET_PDEATHSIG`` (the run
           dies with the thread that started it).
audit      A ``sys.addaudithook`` hook, installed before the code runs, that refuses: opening a
           path outside the working folder for writing, or outside it and the stdlib for reading
           (symlinks resolved); renaming, linking, removing, chmod... outside the folder; listing
           folders outside; ``os.chdir`` and opening a directory as a descriptor (its audit
           events carry no ``dir_fd``, so relative paths must resolve from the folder); sockets;
           subprocesses, ``os.system``, ``exec*``, ``fork``, ``posix_spawn``; ``os.kill`` of
           another pid; ctypes; ``gc`` object walks; new interpreters; ``setrlimit``; importing
           ``_posixsubprocess``, ``_xxsubinterpreters``, ``ctypes``. It reads no globals or
           builtins at call time, so the code cannot monkeypatch it. It turns attacks into a
           readable ``PermissionError``.
========== ========================================================================================

What is NOT guaranteed: the audit hook is not a security boundary on its own (CPython says so:
memory corruption via ``/proc/self/mem`` is stopped only by the hook's path check, a race that
swaps a symlink, or a file for a directory, between the check and the ``open``, or an
interpreter bug, gets past it). Without
it, a sandboxed run can still read world-readable files (``/etc/passwd``), create files in
world-writable folders (``/tmp``), and walk the process list. Without root (no uid layer), the
OS layers do not stop reading or writing the parent user's files, signalling the parent, or a
``setsid`` child surviving the process-group kill; without the netns layer, only the hook stops
network access. There is no seccomp filter, no mount namespace and no cgroup, so a kernel bug is
out of scope. Linux only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from branchgym.envs.pythontool import _bootstrap

_UID_BASE, _UID_SPAN = 1_000_000_000, 1_000_000_000  # fresh uids, far from real accounts
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxError(RuntimeError):
    """The sandbox itself could not start (not: the code failed). Environments turn this into
    ``ToolError``."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use, and which containment layers to set up.

    The layer switches exist so the tests can show each layer holding on its own; leave them on.
    """

    wall_seconds: float = 5.0
    """Wall-clock limit; the whole process group (and uid) is SIGKILLed when it passes."""
    cpu_seconds: int = 5
    """RLIMIT_CPU: SIGXCPU, then SIGKILL one second later."""
    memory_bytes: int = 512 * 2**20
    """RLIMIT_AS (address space): allocations past it raise MemoryError."""
    file_bytes: int = 16 * 2**20
    """RLIMIT_FSIZE: the largest file the code may write (EFBIG past it)."""
    max_processes: int = 16
    """RLIMIT_NPROC: processes and threads of the sandbox uid (per run when the uid layer is on)."""
    max_open_files: int = 64
    """RLIMIT_NOFILE."""
    output_bytes: int = 64 * 1024
    """Bytes of stdout plus stderr kept; the run is killed once it writes more."""
    drop_privileges: bool = True
    """When root: run as a fresh unprivileged uid/gid."""
    isolate_network: bool = True
    """Run in a new, empty network namespace where the kernel allows it."""
    audit_hook: bool = True
    """Install the audit hook that refuses files, sockets, processes and signals."""


@dataclass(frozen=True)
class RunResult:
    """What one run did. ``exit_code`` is negative for a signal (``-9``: SIGKILL).

    There is no peak-memory field: ``posix_spawn`` starts the child in the parent's address
    space (vfork), so the kernel's ``ru_maxrss`` for it includes the parent's resident size.
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    truncated: bool
    wall_seconds: float
    cpu_seconds: float
    layers: tuple[str, ...]
    uid: int | None
    limits: SandboxLimits = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.truncated

    @property
    def error(self) -> str | None:
        """One line on what went wrong, for the policy to read; None when the run was clean."""
        lim = self.limits
        if self.timed_out:
            return f"Timed out after {lim.wall_seconds:g} s."
        if self.truncated:
            return f"Output exceeded {lim.output_bytes} bytes; the program was stopped."
        if self.exit_code in (-signal.SIGXCPU, -signal.SIGKILL) and (
            self.cpu_seconds >= lim.cpu_seconds - 0.05
        ):
            return f"CPU time limit of {lim.cpu_seconds} s exceeded."
        if self.exit_code < 0:
            return f"Killed by {signal.Signals(-self.exit_code).name}."
        if self.exit_code > 0:
            return _last_line(self.stderr, lim) or f"Exited with status {self.exit_code}."
        return None


def _last_line(stderr: str, limits: SandboxLimits) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    if last.startswith("MemoryError"):
        return f"{last} (memory limit {limits.memory_bytes // 2**20} MiB)"
    return last


@dataclass(frozen=True)
class _Child:
    """A started run: its pid, a pidfd that becomes readable when it exits, and our pipe ends."""

    pid: int
    pidfd: int
    stdout: int
    stderr: int
    status: int
    uid: int | None
    started: float


DEFAULT_LIMITS = SandboxLimits()


def run_python(code: str, limits: SandboxLimits = DEFAULT_LIMITS) -> RunResult:
    """Run ``code`` under ``limits`` and return what happened; errors in the code are results,
    not exceptions. Raises ``SandboxError`` only when the sandbox itself cannot start."""
    with tempfile.TemporaryDirectory(prefix="sandbox-", ignore_cleanup_errors=True) as work:
        uid = _fresh_uid() if limits.drop_privileges and os.geteuid() == 0 else None
        if uid is not None:
            os.chown(work, uid, uid)
        child = _spawn(code, work, uid, limits)
        try:
            out, err, timed_out, truncated = _collect(child, limits)
        finally:
            _kill_all(child)
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.monotonic() - child.started
            layers = _read_status(child)
    if not layers:
        raise SandboxError(f"the sandbox did not start: {_decode(err)[-2000:]}")
    return RunResult(
        stdout=_decode(out),
        stderr=_decode(err),
        exit_code=os.waitstatus_to_exitcode(status),
        timed_out=timed_out,
        truncated=truncated,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        layers=layers,
        uid=uid if "uid" in layers else None,
        limits=limits,
    )


def _fresh_uid() -> int:
    return _UID_BASE + int.from_bytes(os.urandom(4), "big") % _UID_SPAN


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _high_fd(fd: int) -> int:
    """A close-on-exec copy at 10 or above, so ``dup2`` onto 1-4 in the child cannot clobber a
    source fd that happens to be 3 or 4."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def _spawn(code: str, work: str, uid: int | None, limits: SandboxLimits) -> _Child:
    """Start the bootstrap (this file) in a new session with the code on fd 3."""
    code_fd = _high_fd(os.memfd_create("sandbox-code"))
    data = code.encode("utf-8", "surrogatepass")  # any str, lone surrogates too, round-trips
    while data:
        data = data[os.write(code_fd, data) :]
    os.lseek(code_fd, 0, os.SEEK_SET)
    (out_r, out_w), (err_r, err_w), (st_r, st_w) = os.pipe(), os.pipe(), os.pipe()
    out_w, err_w, st_w = _high_fd(out_w), _high_fd(err_w), _high_fd(st_w)
    settings = json.dumps({"work": work, "uid": uid, **asdict(limits)})
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
        (os.POSIX_SPAWN_DUP2, code_fd, _bootstrap.CODE_FD),
        (os.POSIX_SPAWN_DUP2, st_w, _bootstrap.STATUS_FD),
    ]
    env = {"PATH": _ENV_PATH, "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
    argv = [sys.executable, "-I", "-S", "-B", os.path.abspath(_bootstrap.__file__), settings]
    try:
        pid = os.posix_spawn(
            sys.executable, argv, env, file_actions=actions, setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )  # fmt: skip
    except OSError as exc:
        for fd in (out_r, err_r, st_r):
            os.close(fd)
        raise SandboxError(f"cannot start {sys.executable}: {exc}") from exc
    finally:
        for fd in (code_fd, out_w, err_w, st_w):
            os.close(fd)
    return _Child(pid, os.pidfd_open(pid), out_r, err_r, st_r, uid, time.monotonic())


def _collect(child: _Child, limits: SandboxLimits) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout and stderr until the process exits and the pipes close, the wall clock runs
    out (``timed_out``), or the output passes its cap (``truncated``). Never holds more than
    ``output_bytes``, however much the code writes."""
    bufs = {child.stdout: bytearray(), child.stderr: bytearray()}
    deadline, room = child.started + limits.wall_seconds, limits.output_bytes
    timed_out = truncated = False
    with selectors.DefaultSelector() as sel:
        for fd in (child.stdout, child.stderr, child.pidfd):
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and not (timed_out or truncated):
            remaining = deadline - time.monotonic()
            timed_out = remaining <= 0
            for key, _ in [] if timed_out else sel.select(remaining):
                if key.fd == child.pidfd:
                    _kill_all(child)  # the main process ended: stragglers would hold the pipes
                    sel.unregister(key.fd)
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                bufs[key.fd] += chunk[:room]
                truncated, room = truncated or len(chunk) > room, max(0, room - len(chunk))
    return bytes(bufs[child.stdout]), bytes(bufs[child.stderr]), timed_out, truncated


def _kill_all(child: _Child) -> None:
    """SIGKILL the run's process group, then (uid layer) every process left with its uid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    if child.uid is not None and _uid_processes(child.uid):
        _kill_uid(child.uid)


def _uid_processes(uid: int) -> list[int]:
    """Live (not zombie) pids whose real uid is ``uid``. (``/proc/<pid>`` is owned by root once
    a process drops its uid, so the ``Uid:`` line is read instead of ``stat``; zombies are
    dead already and wait for init to reap them.)"""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:  # the process ended meanwhile
            continue
        live = fields["State"].split()[0] not in ("Z", "X")
        if live and int(fields["Uid"].split()[0]) == uid:
            pids.append(int(name))
    return pids


def _kill_uid(uid: int) -> None:
    """``kill(-1, SIGKILL)`` as ``uid``: the kernel signals every process of that uid in one
    pass under the tasklist lock, so a fork bomb cannot outrun it."""
    script = f"import os; os.setgid({uid}); os.setuid({uid}); os.kill(-1, 9)"
    for _ in range(5):
        pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", script], {})
        os.waitpid(pid, 0)
        if not _uid_processes(uid):
            return


def _read_status(child: _Child) -> tuple[str, ...]:
    """The layers the bootstrap reported; empty when it died before user code."""
    try:
        return tuple(os.read(child.status, 4096).decode().split())
    finally:
        for fd in (child.stdout, child.stderr, child.status, child.pidfd):
            os.close(fd)
