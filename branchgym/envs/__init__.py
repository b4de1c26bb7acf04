"""Text environments and their registry.

Every environment is registered with gymnasium under ``branchgym/<Name>-v<N>`` with a lazy
``"module:Class"`` entry point, so importing branchgym stays cheap. Third-party packages add
environments without editing branchgym: they declare an entry point in the ``branchgym.envs``
group whose object is a zero-argument function that calls ``gymnasium.register``.

    [project.entry-points."branchgym.envs"]
    myenv = "my_package.envs:register"
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

from branchgym.envs.household import HouseholdEnv

ENTRY_POINT_GROUP = "branchgym.envs"

_BUILTIN = {
    "branchgym/Household-v0": "branchgym.envs.household.env:HouseholdEnv",
    "branchgym/SearchQA-v0": "branchgym.envs.searchqa.env:SearchQAEnv",
}
_plugins_loaded = False


def register_builtin() -> None:
    for env_id, entry in _BUILTIN.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry)


def load_plugins() -> list[str]:
    """Call every ``branchgym.envs`` entry point once. Returns the names that were loaded."""
    global _plugins_loaded
    names: list[str] = []
    if _plugins_loaded:
        return names
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()()
        names.append(ep.name)
    _plugins_loaded = True
    return names


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` after the built-in and third-party environments are registered."""
    register_builtin()
    load_plugins()
    if env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("branchgym/")))
        raise gym.error.NameNotFound(f"no environment {env_id!r}; branchgym knows: {known}")
    return gym.make(env_id, **kwargs)


register_builtin()

__all__ = ["ENTRY_POINT_GROUP", "HouseholdEnv", "load_plugins", "make", "register_builtin"]
