"""The ALFWorld-like household world: rules (``world``), generation, expert and gym env."""

from branchgym.envs.household.env import HouseholdEnv

__all__ = ["HouseholdEnv"]
