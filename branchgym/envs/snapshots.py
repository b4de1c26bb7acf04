"""Whether an environment can be branched: the one check the manager and ``SubprocessEnv`` share."""

from __future__ import annotations

import gymnasium as gym


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
