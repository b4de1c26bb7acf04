"""The ALFWorld-like household world: rules (``world``), data (``tables``), seeded generation with
a solvability search (``generate``, ``search``), the expert and the gym env."""

from branchgym.envs.household.env import HouseholdEnv

__all__ = ["HouseholdEnv"]
