"""Environment calls run concurrently, each under a timeout, so one bad env ends only its path.

The rollout manager hands every environment call of a turn (resets, steps, snapshots, branch
restores) to ``EnvCalls.run`` at once. Calls run on a small pool of daemon threads, which suits
environments that wait on I/O (HTTP, subprocesses, simulators that release the GIL). A call that
raises comes back as its exception; a call still running after ``timeout`` seconds comes back as
``EnvTimeout`` and its thread is written off and replaced, so a hung environment can neither
stall the batch nor keep the interpreter from exiting.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from branchgym.envs.errors import ToolError
from branchgym.trajectory import EndReason


class EnvTimeout(TimeoutError):
    """An environment call ran past its time limit."""


class EnvCalls:
    """A pool of ``workers`` daemon threads running environment calls with a per-call timeout."""

    def __init__(self, workers: int = 8, timeout: float = 60.0) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError(f"need workers >= 1 and timeout > 0, got {workers} and {timeout}")
        self.timeout = timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._started: dict[Future, float] = {}
        self._lock = threading.Lock()
        self._workers = 0
        for _ in range(workers):
            self._spawn()

    def run(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Each call's return value, or the exception it raised (``EnvTimeout`` if it hung)."""
        futures = [Future() for _ in calls]
        for call, fut in zip(calls, futures, strict=True):
            self._queue.put((call, fut))
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=min(0.5, self.timeout), return_when=FIRST_COMPLETED)
            for fut in self._expire(pending):
                pending.discard(fut)
                self._spawn()  # the stuck thread is lost to the pool; keep its size
        return [f.exception() or f.result() for f in futures]

    def _expire(self, pending: set[Future]) -> list[Future]:
        """Fail the calls that have run too long (under the lock, so no result races in)."""
        now = time.monotonic()
        with self._lock:
            late = [f for f in pending if now - self._started.get(f, now) > self.timeout]
            for fut in late:
                self._started.pop(fut)
                fut.set_exception(EnvTimeout(f"environment call took over {self.timeout:g} s"))
        return late

    def close(self) -> None:
        """Stop the idle workers (a worker stuck in a hung call stays lost, as a daemon)."""
        for _ in range(self._workers):
            self._queue.put(None)

    def __enter__(self) -> EnvCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> None:
        self._workers += 1
        threading.Thread(target=self._work, daemon=True, name="branchgym-env").start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            call, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._started[fut] = time.monotonic()
            try:
                result = call()
            except BaseException as exc:  # an env may raise anything: here it is data
                outcome: tuple[str, Any] = ("error", exc)
            else:
                outcome = ("ok", result)
            with self._lock:
                self._started.pop(fut, None)
                if fut.done():  # timed out while it ran: the batch has moved on
                    continue
                if outcome[0] == "ok":
                    fut.set_result(outcome[1])
                else:
                    fut.set_exception(outcome[1])


def checked_step(outcome: Any) -> tuple[str, float, bool, bool, dict]:
    """``step()``'s 5-tuple, typed, or a ValueError / TypeError that says what was wrong."""
    if not isinstance(outcome, tuple) or len(outcome) != 5:
        raise ValueError(
            f"step() must return (obs, reward, terminated, truncated, info), got {outcome!r:.200}"
        )
    obs, reward, terminated, truncated, info = outcome
    if not isinstance(obs, str):
        raise TypeError(f"step() returned a {type(obs).__name__} observation, not a str")
    reward = float(reward)
    if reward != reward or reward in (float("inf"), float("-inf")):
        raise ValueError(f"step() returned a non-finite reward {reward}")
    if not isinstance(info, dict):
        raise TypeError(f"step() returned a {type(info).__name__} info, not a dict")
    return obs, reward, bool(terminated), bool(truncated), info


def run_work(
    work: Sequence[tuple[Any, Callable[[], Any], Callable[[Any, Any], None]]], calls
) -> None:
    """Run every ``(path, call, handler)``'s call at once on ``calls``, then hand each outcome
    to its path's handler."""
    outcomes = calls.run([call for _, call, _ in work])
    for (path, _, after), outcome in zip(work, outcomes, strict=True):
        after(path, outcome)


def failure_reason(exc: BaseException) -> EndReason:
    """The end reason of a path whose environment call failed: its tool's fault or the env's."""
    return EndReason.TOOL_ERROR if isinstance(exc, ToolError) else EndReason.ENV_ERROR


def snapshot_of(env: Any) -> Any:
    """``env``'s snapshot, wherever in its wrapper stack ``snapshot()`` is defined."""
    assert env is not None
    return env.get_wrapper_attr("snapshot")()
