"""Wrappers that change what a text environment shows the policy, never what it does.

Like gymnasium's own wrappers they compose around any ``branchgym`` environment, so a recipe
can change the prompt without touching the environment's rules or its checker.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class RestateInstruction(gym.Wrapper[str, str, str, str]):
    """Append the task to every observation after the first: ``"<obs> Your task is to: <task>"``.

    The whole episode is one token sequence, so the instruction, which the household world
    states once at the end of its opening text, drifts further back with every turn. A small
    policy then forgets where the object must go. Agent prompts for ALFWorld restate the task at
    every step for the same reason. Needs ``info["instruction"]`` from ``reset``.
    """

    def __init__(self, env: gym.Env[str, str], prefix: str = "Your task is to: ") -> None:
        super().__init__(env)
        self.prefix = prefix
        self._instruction = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._instruction = info.get("instruction", "")
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._instruction:
            obs = f"{obs} {self.prefix}{self._instruction}"
        return obs, reward, terminated, truncated, info
