"""Whether an environment can be branched: the one check the manager and ``SubprocessEnv`` share."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym


class BranchingUnsupported(TypeError):
    """Branching was asked of an environment that cannot snapshot its state."""


def can_snapshot(env: gym.Env) -> bool:
    """``snapshot()`` and ``restore()`` exist somewhere in the wrapper stack, and a proxy that
    answers for another process (``SubprocessEnv``) says the env behind it has them too."""
    try:
        methods = callable(env.get_wrapper_attr("snapshot")) and callable(
            env.get_wrapper_attr("restore")
        )
    except AttributeError:
        return False
    try:
        return methods and bool(env.get_wrapper_attr("supports_snapshot"))
    except AttributeError:
        return methods


def require_snapshots(env_factory: Callable[[], gym.Env], algo: str) -> None:
    """Raise ``BranchingUnsupported`` unless the factory's envs can snapshot and restore."""
    env = env_factory()
    try:
        if not can_snapshot(env):
            name = type(env.unwrapped).__name__
            raise BranchingUnsupported(
                f"{algo} branches paths from environment snapshots, but {name} has no "
                "snapshot()/restore(). Add `def snapshot(self)` returning the episode state "
                "and `def restore(self, snap)` putting it back exactly, or sample with "
                "algo='grpo', which needs neither."
            )
    finally:
        env.close()
