"""Adapters that run the real engines behind branchgym's text-environment contract.

``branchgym/TextWorld-v0``, ``branchgym/ScienceWorld-v0`` and ``branchgym/ALFWorld-v0``: one
small file and one class each. The engines are optional installs, imported only when an
adapter is constructed, so importing this package never needs them. None of the engines can
copy its state as a value, so their snapshots replay the episode (``_replay``).
"""

from branchgym.envs.adapters._replay import ReplayDivergence, ReplaySnapshot
from branchgym.envs.adapters.alfworld import ALFWorldDataMissing, ALFWorldEnv
from branchgym.envs.adapters.scienceworld import ScienceWorldEnv
from branchgym.envs.adapters.textworld import TextWorldEnv

__all__ = [
    "ALFWorldDataMissing",
    "ALFWorldEnv",
    "ReplayDivergence",
    "ReplaySnapshot",
    "ScienceWorldEnv",
    "TextWorldEnv",
]
