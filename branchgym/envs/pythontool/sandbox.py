"""Run untrusted Python in a child process, with layered containment: ``run_python(code, limits)``.

``PythonTool-v0`` sends every ``<python>`` call here. The code runs in a fresh interpreter
(``python -I -S -B``: no site-packages, no environment variables, no bytecode writes) started
with ``posix_spawn`` in a new session, in an empty temporary folder that is deleted afterwards,
with a scrubbed environment and stdin from ``/dev/null``. This file is also that interpreter's
bootstrap: run as a script, it reads the code from a memfd, sets the layers up, writes which
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
           folders outside; sockets; subprocesses, ``os.system``, ``exec*``, ``fork``,
           ``posix_spawn``; ``os.kill`` of another pid; ctypes; ``gc`` object walks; new
           interpreters; ``setrlimit``; importing ``_posixsubprocess``, ``_xxsubinterpreters``,
           ``ctypes``. It reads no globals or builtins at call time, so the code cannot
           monkeypatch it. It turns attacks into a readable ``PermissionError``.
========== ========================================================================================

What is NOT guaranteed: the audit hook is not a security boundary on its own (CPython says so:
memory corruption via ``/proc/self/mem`` is stopped only by the hook's path check, a race that
swaps a symlink between the check and the ``open``, or an interpreter bug, gets past it). Without
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
import resource
import selectors
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

_CODE_FD, _STATUS_FD = 3, 4  # where the bootstrap finds the code and the status pipe
_UID_BASE, _UID_SPAN = 1_000_000_000, 1_000_000_000  # fresh uids, far from real accounts
_FILENAME = "<sandbox>"
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events the hook refuses outright, by prefix, and modules it will not import: processes,
# other interpreters, raising limits, walking every object (to find the hook's state), sockets.
# fmt: off
_DENIED_EVENTS = frozenset({
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.killpg",
    "subprocess.Popen", "pty.spawn", "cpython.PyInterpreterState_New", "resource.setrlimit",
    "resource.prlimit", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
})
_DENIED_PREFIXES = ("ctypes.", "socket.", "syslog.")
_DENIED_IMPORTS = frozenset({
    "_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels", "ctypes", "_ctypes", "_signal",
})
# Events that change the file at their first path argument: only inside the working folder.
_ONE_PATH = frozenset({
    "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
    "os.setxattr", "os.removexattr", "os.chflags",
})
# fmt: on
_TWO_PATHS = frozenset({"os.rename", "os.link"})
_LISTINGS = frozenset({"os.listdir", "os.scandir", "os.walk", "os.fwalk", "os.listxattr"})
_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})


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
    data = code.encode("utf-8", "surrogateescape")
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
        (os.POSIX_SPAWN_DUP2, code_fd, _CODE_FD),
        (os.POSIX_SPAWN_DUP2, st_w, _STATUS_FD),
    ]
    env = {"PATH": _ENV_PATH, "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
    argv = [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), settings]
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


# ---- the child side: everything below runs inside the sandboxed interpreter ----


def _bootstrap(settings: dict[str, Any]) -> None:
    """Set the layers up in order (each needs what the one before left), then run the code."""
    with open(_CODE_FD, encoding="utf-8", errors="surrogateescape") as source:
        code = source.read()
    os.closerange(_STATUS_FD + 1, 1 << 16)  # anything the parent leaked
    os.chdir(settings["work"])
    roots = _stdlib_roots()  # before the uid layer re-routes sys.path
    _set_limits(settings)
    layers = ["session", "rlimits"]
    if settings["isolate_network"] and _unshare_network():
        layers.append("netns")
    if settings["uid"] is not None and _drop_privileges(settings["uid"]):
        layers.append("uid")
    if _libc(38, 1) == 0 and _libc(1, signal.SIGKILL) == 0:  # NO_NEW_PRIVS, PDEATHSIG
        layers.append("nnp")
    _forget_dangerous_modules()
    if settings["audit_hook"]:
        sys.addaudithook(_make_hook(os.getcwd(), roots))
        layers.append("audit")
    os.write(_STATUS_FD, " ".join(layers).encode())
    os.close(_STATUS_FD)
    _run(code)


def _set_limits(settings: dict[str, Any]) -> None:
    cpu = settings["cpu_seconds"]
    for rlimit, soft, hard in (
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, settings["memory_bytes"], settings["memory_bytes"]),
        (resource.RLIMIT_FSIZE, settings["file_bytes"], settings["file_bytes"]),
        (resource.RLIMIT_NPROC, settings["max_processes"], settings["max_processes"]),
        (resource.RLIMIT_NOFILE, settings["max_open_files"], settings["max_open_files"]),
    ):
        resource.setrlimit(rlimit, (soft, hard))


def _libc(option: int, value: int) -> int:
    """``prctl(option, value)``; -1 when it failed."""
    import ctypes  # here, not at the top: the parent never needs it, and the child drops it

    return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _unshare_network() -> bool:
    """A new network namespace: as root directly, otherwise inside a new user namespace."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    if os.geteuid() == 0 and libc.unshare(clone_newnet) == 0:
        return True
    return libc.unshare(clone_newuser | clone_newnet) == 0


def _drop_privileges(uid: int) -> bool:
    """Become ``uid``/``uid`` with no groups, importing the stdlib through a held directory fd
    (``/proc/self/fd/N`` lets this process follow it though the new uid may not walk there)."""
    prefixes = sorted({sys.prefix, sys.exec_prefix}, key=len, reverse=True)
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in prefixes}
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    except OSError:
        return False
    sys.path[:] = [_via_fd(entry, fds) for entry in sys.path]
    for module in list(sys.modules.values()):  # packages already imported (encodings, ...)
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [_via_fd(entry, fds) for entry in search]
    sys.path_importer_cache.clear()
    return os.getuid() == uid and os.geteuid() == uid


def _via_fd(entry: str, fds: dict[str, int]) -> str:
    for prefix, fd in fds.items():
        if entry == prefix or entry.startswith(prefix + "/"):
            return f"/proc/self/fd/{fd}{entry[len(prefix) :]}"
    return entry


def _forget_dangerous_modules() -> None:
    """Drop ctypes (used above) from ``sys.modules`` and ``pidfd_send_signal`` (no audit event)
    from ``signal``, so the code reaches neither by import; the hook refuses re-imports."""
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    for module in (signal, sys.modules["_signal"]):
        if hasattr(module, "pidfd_send_signal"):
            delattr(module, "pidfd_send_signal")


def _stdlib_roots() -> tuple[str, ...]:
    """Folders the code may read: the import path, as written and with symlinks resolved."""
    paths = [os.path.abspath(p) for p in sys.path if p]
    return tuple(sorted({q for p in paths for q in (p, os.path.realpath(p)) if q != "/"}))


def _run(code: str) -> None:
    """Run ``code`` as ``__main__``; a traceback leaves out this bootstrap's frame."""
    import linecache
    import traceback
    import types

    main = types.ModuleType("__main__")
    sys.modules["__main__"], sys.argv = main, [_FILENAME]
    linecache.cache[_FILENAME] = (len(code), None, code.splitlines(True), _FILENAME)
    try:
        exec(compile(code, _FILENAME, "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:  # the code's own error: report it as Python would
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        sys.exit(1)  # a normal exit, so buffered stdout is still flushed


def _make_hook(work: str, read_roots: tuple[str, ...]) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook. Everything it calls is bound here, as closure cells the code cannot
    reach, because a hook that looked up ``os.readlink`` or ``isinstance`` at call time could be
    monkeypatched by the code it polices. (That is also why this function is longer than the
    house limit: the small checks below must share those cells.)"""
    readlink, getcwd, getpid = os.readlink, os.getcwd, os.getpid
    isa, perm, oserror, text, blob, integer = isinstance, PermissionError, OSError, str, bytes, int
    join, bjoin = "".join, b"".join
    denied, denied_prefixes, denied_imports = _DENIED_EVENTS, _DENIED_PREFIXES, _DENIED_IMPORTS
    one_path, two_paths, listings, devices = _ONE_PATH, _TWO_PATHS, _LISTINGS, _DEVICES
    write_flags, writable, readable = _WRITE_FLAGS, (work,), (work, *read_roots)

    def resolve(path: str) -> str:
        """``realpath`` without the stdlib's Python helpers; "" for a symlink loop."""
        todo = (path if path.startswith("/") else getcwd() + "/" + path).split("/")[::-1]
        out, hops = "", 0
        while todo:
            name = todo.pop()
            if name == "" or name == ".":
                continue
            if name == "..":
                out = out[: out.rfind("/")] if out else out
                continue
            try:
                target = readlink(out + "/" + name)
            except oserror:
                out = out + "/" + name
                continue
            hops += 1
            if hops > 40:
                return ""
            out = "" if target.startswith("/") else out
            todo.extend(target.split("/")[::-1])
        return out or "/"

    def as_text(path: Any) -> str | None:
        """The path as the kernel will see it. CPython audits paths after ``os.fspath``, so
        they arrive as str or bytes; anything else is refused rather than asked again (a
        second ``__fspath__`` call could answer differently from the first)."""
        if isa(path, text):
            return join([path])  # a plain copy: str subclasses cannot answer differently
        if isa(path, blob):
            return bjoin([path]).decode("utf-8", "surrogateescape")
        return None

    def within(path: Any, roots: tuple[str, ...]) -> bool:
        if isa(path, integer):
            return True  # an fd the code already opened
        name = as_text(path)
        real = resolve(name) if name is not None else ""
        if real in devices:
            return True
        for root in roots:  # noqa: SIM110 (any() would be a builtin looked up at call time)
            if real == root or real.startswith(root + "/"):
                return True
        return False

    def refuse(what: str, path: Any = None) -> None:
        where = "" if path is None else f" ({path!r} is outside the working folder)"
        raise perm(f"sandbox: {what} is not allowed{where}")

    def paths_ok(event: str, args: tuple[Any, ...]) -> bool:
        if event == "open":
            path, mode, flags = args
            writing = (flags & write_flags) != 0 or (
                mode is not None and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)
            )
            return within(path, writable if writing else readable)
        if event in one_path:
            return within(args[0], writable)
        if event in two_paths:
            return within(args[0], writable) and within(args[1], writable)
        if event == "os.symlink":  # the link's target is checked when something opens it
            return within(args[1], writable)
        if event in listings:
            return within("." if args[0] is None else args[0], readable)
        return True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in denied or event.startswith(denied_prefixes):
            refuse(event)
        elif not paths_ok(event, args):
            refuse(event, args[0])
        elif event == "os.kill" and args[0] != getpid():
            refuse("signalling another process")
        elif event == "import" and isa(args[0], text) and join([args[0]]) in denied_imports:
            refuse(f"importing {args[0]}")

    return hook


if __name__ == "__main__":
    _bootstrap(json.loads(sys.argv[1]))
