"""Text environments and their registry.

Every environment is registered with gymnasium under ``branchgym/<Name>-v<N>`` with a lazy
``"module:Class"`` entry point, so importing branchgym stays cheap. Third-party packages add
environments without editing branchgym: they declare an entry point in the ``branchgym.envs``
group whose object is a zero-argument function that calls ``gymnasium.register``.

    [project.entry-points."branchgym.envs"]
    myenv = "my_package.envs:register"
"""

from __future__ import annotations

import threading
import warnings
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from branchgym.envs.household import HouseholdEnv

ENTRY_POINT_GROUP = "branchgym.envs"

# id -> (entry point, kwargs). A new behaviour gets a new version id: Household-v0 keeps the
# kitchen with two task types (and v0's texts) that the README's results were measured on; v1 is
# the full world, printing exactly what ALFWorld's engine prints.
_V0_HOUSEHOLD = {
    "task_types": ("pick_and_place_simple", "pick_clean_then_place_in_recep"),
    "rooms": ("kitchen",),
}
_BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "branchgym/Household-v0": ("branchgym.envs.household.env:HouseholdEnv", _V0_HOUSEHOLD),
    "branchgym/Household-v1": (
        "branchgym.envs.household.env:HouseholdEnv",
        # lists in the real engine's order, its help text; unseen holds out pairs and layouts
        {"engine_texts": True, "holdout": True},
    ),
    "branchgym/SearchQA-v0": ("branchgym.envs.searchqa.env:SearchQAEnv", {}),
    "branchgym/PythonTool-v0": ("branchgym.envs.pythontool.env:PythonToolEnv", {}),
    "branchgym/WebShop-v0": ("branchgym.envs.webshop.env:WebShopEnv", {}),
    "branchgym/TextWorld-v0": ("branchgym.envs.adapters.textworld:TextWorldEnv", {}),
    "branchgym/ScienceWorld-v0": ("branchgym.envs.adapters.scienceworld:ScienceWorldEnv", {}),
    "branchgym/ALFWorld-v0": ("branchgym.envs.adapters.alfworld:ALFWorldEnv", {}),
}
# one line for `branchgym envs` where the class docstring would not tell two ids apart
_NOTES = {
    "branchgym/Household-v0": "The household world's first version: a kitchen, pick-and-place "
    "and pick-clean-then-place only (the quickstart's world).",
}
_plugins_loaded = False
_plugin_ids: dict[str, str] = {}  # env id -> the entry point that registered it
_broken: dict[str, str] = {}  # entry point -> why it failed to load
_plugins_lock = threading.RLock()  # env-call threads may make the first envs at once


def register_builtin() -> None:
    for env_id, (entry, kwargs) in _BUILTIN.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs)


def load_plugins() -> list[str]:
    """Call every ``branchgym.envs`` entry point once. Returns the names that were loaded.

    A plugin that fails (its module does not import, its ``register`` raises) is skipped with a
    warning, with any ids it registered before failing, so one broken package cannot take
    every other environment down with it; ``broken_plugins()`` says why, and ``make`` names
    it when an id is not found."""
    with _plugins_lock:  # re-entrant: a plugin's register() may itself call make()
        return _load_plugins()


def _load_plugins() -> list[str]:
    global _plugins_loaded
    names: list[str] = []
    if _plugins_loaded:
        return names
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        before = set(gym.registry)
        try:
            ep.load()()
        except Exception as exc:
            for half in set(gym.registry) - before:  # skipped whole: no ids it had registered
                del gym.registry[half]
            _broken[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"the branchgym.envs plugin {ep.name!r} ({ep.value}) failed to load and is "
                f"skipped: {_broken[ep.name]}",
                stacklevel=3,
            )
            continue
        names.append(ep.name)
        _plugin_ids.update(dict.fromkeys(set(gym.registry) - before, ep.name))
    return names


def broken_plugins() -> dict[str, str]:
    """The ``branchgym.envs`` entry points that failed to load, each with why."""
    load_plugins()
    return dict(_broken)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` after the built-in and third-party environments are registered."""
    register_builtin()
    load_plugins()
    if env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("branchgym/")))
        broken = "".join(f"; plugin {n!r} failed to load: {why}" for n, why in _broken.items())
        raise gym.error.NameNotFound(f"no environment {env_id!r}; branchgym knows: {known}{broken}")
    return gym.make(env_id, **kwargs)


def env_ids() -> list[str]:
    """Every environment id branchgym can make: built-in and from plugins."""
    register_builtin()
    load_plugins()
    return sorted(set(_BUILTIN) | set(_plugin_ids))


def registered() -> dict[str, str]:
    """Every environment id, each with one line on it: the first line of its class docstring,
    or why it cannot be loaded here."""
    return {env_id: _summary(env_id) for env_id in env_ids()}


def _summary(env_id: str) -> str:
    if env_id in _NOTES:
        return _NOTES[env_id]
    entry = gym.registry[env_id].entry_point
    try:
        cls = load_env_creator(entry) if isinstance(entry, str) else entry
    except Exception as exc:  # an adapter whose engine is not installed, a broken plugin
        return f"(unavailable here: {type(exc).__name__}: {exc})"
    doc = (getattr(cls, "__doc__", None) or "").strip()
    line = doc.splitlines()[0] if doc else getattr(cls, "__name__", str(entry))
    plugin = _plugin_ids.get(env_id)
    return f"{line} [plugin: {plugin}]" if plugin else line


register_builtin()

__all__ = [
    "ENTRY_POINT_GROUP",
    "HouseholdEnv",
    "broken_plugins",
    "env_ids",
    "load_plugins",
    "make",
    "register_builtin",
    "registered",
]
