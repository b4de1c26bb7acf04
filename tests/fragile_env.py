"""A test environment that dies on "die" and hangs on "hang" (imported by child processes)."""

from __future__ import annotations

import os
import string
import time

import gymnasium as gym

TEXT = gym.spaces.Text(max_length=400, charset=string.printable)


class Fragile(gym.Env[str, str]):
    observation_space = action_space = TEXT

    def reset(self, *, seed=None, options=None):
        return "ready", {}

    def step(self, action):
        if action == "die":
            os._exit(3)
        if action == "hang":
            time.sleep(600)
        if action == "unpicklable":
            return "x", 0.0, False, False, {"f": lambda: 0}
        return f"you said {action}", 0.0, False, False, {}

    def snapshot(self):
        return None

    def restore(self, snap):
        pass


class Plain(Fragile):
    """The same, without snapshot() / restore()."""

    snapshot = None  # type: ignore[assignment]
    restore = None  # type: ignore[assignment]


class SlowStart(Fragile):
    """Its constructor hangs: a simulator that never comes up."""

    def __init__(self) -> None:
        time.sleep(600)


if "test/Fragile-v0" not in gym.registry:
    gym.register("test/Fragile-v0", entry_point=Fragile)
    gym.register("test/Plain-v0", entry_point=Plain)
    gym.register("test/SlowStart-v0", entry_point=SlowStart)
