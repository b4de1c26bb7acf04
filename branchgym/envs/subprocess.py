"""An environment in its own process: for CPU-heavy simulators and environments that may crash.

``SubprocessEnv("branchgym/Household-v0")`` behaves like the environment itself (``reset``,
``step``, ``snapshot``, ``restore``, ``close``), but the environment lives in a child process
started from a fork server, and every call is a message over a pipe. Calls from several
threads then run in parallel (the parent only waits on pipes), a segfault or ``os._exit`` in the
environment becomes an ``EnvProcessError`` on that one environment, and ``close`` kills a
process that does not answer. Use it through the rollout manager's env factory:

    RolloutManager(lambda: SubprocessEnv(env_id), policy, codec, cfg)

Snapshots cross the pipe, so they must be picklable.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import string
import threading
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym

from branchgym.envs.snapshots import can_snapshot
from branchgym.envs.toolcall import stop_strings

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)
_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


class EnvProcessError(RuntimeError):
    """The environment's process died or stopped answering."""


def _context():
    """One fork server for all of them: it imports branchgym.envs once, so starts are cheap."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            _CONTEXT = mp.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(["branchgym.envs"])
        return _CONTEXT


def _serve(conn: Connection, env_id: str, kwargs: dict, imports: tuple[str, ...]) -> None:
    from branchgym import envs

    for name in imports:
        importlib.import_module(name)
    try:
        env = envs.make(env_id, **kwargs)
    except Exception as exc:
        conn.send((False, _portable(exc)))
        return
    conn.send((True, (can_snapshot(env), stop_strings(env))))
    while True:
        method, args, kwargs = conn.recv()
        try:
            if method in ("snapshot", "restore"):  # may be defined below gymnasium's wrappers
                result = env.get_wrapper_attr(method)(*args)
            else:
                result = getattr(env, method)(*args, **kwargs)
            conn.send((True, result))
        except Exception as exc:  # raised by the env, or a result that does not pickle
            conn.send((False, _portable(exc)))
        if method == "close":
            return


def _portable(exc: Exception) -> Exception:
    """The exception itself when it pickles, else a RuntimeError with its repr."""
    import pickle

    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(repr(exc))


class ProxyEnv(gym.Env[str, str]):
    """A text environment that lives elsewhere: every method is one ``_call``."""

    observation_space = TEXT
    action_space = TEXT

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self._call("reset", seed=seed, options=options)

    def step(self, action: str):
        return self._call("step", action)

    def snapshot(self) -> Any:
        return self._call("snapshot")

    def restore(self, snap: Any) -> None:
        self._call("restore", snap)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class SubprocessEnv(ProxyEnv):
    """A text environment served by a child process; see the module docstring."""

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict | None = None,
        imports: tuple[str, ...] = (),
        start_timeout: float = 120.0,
    ) -> None:
        """``start_timeout``: seconds the child gets to make its env; past them it is killed
        and ``EnvProcessError`` raised (a hung start would otherwise hold the process, and
        the thread waiting on it, for the rest of training)."""
        ctx = _context()
        self.env_id = env_id
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(child, env_id, env_kwargs or {}, tuple(imports)), daemon=True
        )
        self._proc.start()
        child.close()
        self._closed = False
        # raises here if the environment could not be made; else: can it snapshot, and where
        # should generation stop?
        self.supports_snapshot: bool
        self.stop_strings: tuple[str, ...]
        if not self._conn.poll(start_timeout):
            self._closed = True
            self._proc.kill()
            self._proc.join()
            self._conn.close()
            raise EnvProcessError(f"{env_id}: the environment did not start in {start_timeout} s")
        self.supports_snapshot, self.stop_strings = self._receive()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc.is_alive():
                self._conn.send(("close", (), {}))
        except (OSError, ValueError):
            pass
        self._proc.join(timeout=1.0)
        if self._proc.is_alive():  # hung or busy: it does not get a say
            self._proc.kill()
            self._proc.join()
        self._conn.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.is_alive():
            proc.kill()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise EnvProcessError(f"{self.env_id}: the environment's process was closed")
        try:
            self._conn.send((method, args, kwargs))
        except (OSError, ValueError) as exc:
            raise self._died() from exc
        return self._receive()

    def _receive(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc
        if not ok:
            raise value
        return value

    def _died(self) -> EnvProcessError:
        self._proc.join(timeout=1.0)
        code = self._proc.exitcode
        return EnvProcessError(f"{self.env_id}: the environment's process died (exit code {code})")
