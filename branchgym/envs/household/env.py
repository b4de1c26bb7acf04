"""``branchgym/Household-v0``: an ALFWorld-like household that speaks text.

Observations and actions are strings. ``reset(seed=s)`` or ``reset(options={"task": TaskRef})``
builds the episode from the seed alone: one of ALFWorld's six task types in a kitchen, living
room, bedroom or bathroom. ``info`` carries ALFWorld's ``admissible_commands``, ``expert_plan``
and ``won``, plus ``goal_condition_success_rate``: the share of the goal's ALFRED conditions met
(``world.goal_conditions`` lists them per task type). The env never truncates: wrap it in a turn
limit.

v0's kitchen-only distribution of its two task types, which the quickstart numbers were measured
on: ``task_types=V0_TASK_TYPES, rooms=("kitchen",), max_receptacles=8`` (old seeds, same
episodes). ``engine_texts=True`` prints the real engine's texts where v0's differ: receptacles
and contents listed as ALFWorld's engine lists them (by type, highest number first) and its help
text. Every text then equals the engine's (``benchmarks/alfworld_fidelity.py``).
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

import gymnasium as gym

from branchgym.envs.household.expert import expert_plan
from branchgym.envs.household.generate import GenConfig, generate
from branchgym.envs.household.world import (
    World,
    admissible_commands,
    execute,
    goal_conditions,
    opening_text,
)
from branchgym.tasks.suite import split_of_seed
from branchgym.trajectory import TaskRef

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)


class HouseholdEnv(gym.Env[str, str]):
    """ALFWorld's six task types in seeded kitchens, living rooms, bedrooms and bathrooms."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task_types: tuple[str, ...] = GenConfig.task_types,
        distractors: tuple[int, int] = GenConfig.distractors,
        max_receptacles: int = GenConfig.max_receptacles,
        render_mode: str | None = None,
        rooms: tuple[str, ...] = GenConfig.rooms,
        engine_texts: bool = GenConfig.engine_texts,
        copies: tuple[int, int] = GenConfig.copies,
        holdout: bool = GenConfig.holdout,
    ) -> None:
        self.gen_config = GenConfig(
            task_types=tuple(task_types),
            distractors=tuple(distractors),
            copies=tuple(copies),
            max_receptacles=max_receptacles,
            rooms=tuple(rooms),
            engine_texts=engine_texts,
            holdout=holdout,
        )
        self.observation_space = TEXT
        self.action_space = TEXT
        self.render_mode = render_mode
        self._world: World | None = None
        self._last_obs = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if isinstance(task, TaskRef):
            episode_seed, split = task.seed, task.split
        elif seed is not None:
            episode_seed, split = seed, split_of_seed(seed)
        else:
            episode_seed, split = int(self.np_random.integers(2**31)), "train"
        self._world = generate(episode_seed, self.gen_config, split)
        self._last_obs = opening_text(self._world)
        return self._last_obs, self._info(valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        world = self._require_world()
        if all(goal_conditions(world)):  # won already: no reward twice for one win
            return "The task is done. Call reset().", 0.0, True, False, self._info(valid=False)
        obs, valid = execute(world, action if isinstance(action, str) else "")
        self._last_obs = obs
        info = self._info(valid=valid)
        won = info["won"]
        return obs, float(won), won, False, info

    @property
    def world(self) -> World:
        """A copy of the episode's world (to export it, say); changing it changes nothing."""
        return self._require_world().snapshot()

    def snapshot(self) -> tuple[World, str]:
        """An exact copy of the episode state and its last observation; ``restore`` puts
        them back."""
        return self._require_world().snapshot(), self._last_obs

    def restore(self, snap: tuple[World, str]) -> None:
        world, self._last_obs = snap
        self._world = world.snapshot()

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    def _info(self, valid: bool) -> dict[str, Any]:
        world = self._require_world()
        conditions = goal_conditions(world)
        return {
            "instruction": world.goal.text,
            "task_type": world.goal.task_type,
            "admissible_commands": admissible_commands(world),
            "expert_plan": expert_plan(world),
            "won": all(conditions),
            "goal_condition_success_rate": sum(conditions) / len(conditions),
            "valid_action": valid,
        }

    def _require_world(self) -> World:
        if self._world is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._world
