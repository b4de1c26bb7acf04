"""The sandboxed interpreter's bootstrap (run as a script by ``sandbox.run_python``).

``python -I -S -B _bootstrap.py SETTINGS`` reads the code from fd ``CODE_FD``, sets the
containment layers up in order, writes which it reached to fd ``STATUS_FD``, then runs the code
as ``__main__``. It imports only the standard library: with ``-I -S`` nothing else is on the
path. ``sandbox.py``'s docstring says what each layer stops.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any

CODE_FD, STATUS_FD = 3, 4  # where the bootstrap finds the code and the status pipe
_FILENAME = "<sandbox>"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events the hook refuses outright, by prefix, and modules it will not import: processes,
# other interpreters, raising limits, walking every object (to find the hook's state), sockets.
# fmt: off
# os.chdir (also fchdir's event): the hook resolves relative paths against the working
# folder, so the working directory must stay there.
_DENIED_EVENTS = frozenset({
    "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "os.killpg",
    "subprocess.Popen", "pty.spawn", "cpython.PyInterpreterState_New", "resource.setrlimit",
    "resource.prlimit", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.chdir",
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


def _bootstrap(settings: dict[str, Any]) -> None:
    """Set the layers up in order (each needs what the one before left), then run the code."""
    with open(CODE_FD, encoding="utf-8", errors="surrogatepass") as source:
        code = source.read()
    os.closerange(STATUS_FD + 1, 1 << 16)  # anything the parent leaked
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
    os.write(STATUS_FD, " ".join(layers).encode())
    os.close(STATUS_FD)
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
    readlink, getcwd, getpid, stat = os.readlink, os.getcwd, os.getpid, os.stat
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

    def directory(path: Any) -> bool:
        """Whether ``path`` names a directory now (an fd on one would let ``dir_fd`` resolve
        relative paths somewhere this hook, which never sees ``dir_fd``, does not look)."""
        name = as_text(path)
        try:
            return name is None or (stat(name).st_mode & 0o170000) == 0o040000
        except oserror:
            return False

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
        elif (
            event == "open" and args[1] is None and not isa(args[0], integer) and directory(args[0])
        ):  # os.open of a directory: a dir_fd would resolve relative paths out of the folder
            refuse("opening a directory as a file descriptor")
        elif not paths_ok(event, args):
            refuse(event, args[0])
        elif event == "os.kill" and args[0] != getpid():
            refuse("signalling another process")
        elif event == "import" and isa(args[0], text) and join([args[0]]) in denied_imports:
            refuse(f"importing {args[0]}")

    return hook


if __name__ == "__main__":
    _bootstrap(json.loads(sys.argv[1]))
