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


class _Counting(gym.Wrapper[str, str, str, str]):
    """A wrapper with a counter that branches must copy: snapshots carry it with the env's."""

    def __init__(self, env: gym.Env[str, str]) -> None:
        super().__init__(env)
        self.count = 0

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        self.count = 0
        return self.env.reset(**kwargs)

    def snapshot(self) -> tuple[Any, int]:
        return self.env.get_wrapper_attr("snapshot")(), self.count

    def restore(self, snap: tuple[Any, int]) -> None:
        inner, self.count = snap
        self.env.get_wrapper_attr("restore")(inner)


class TurnLimit(_Counting):
    """Truncate after ``max_turns`` steps (ALFWorld's default is 50); budgets live in wrappers,
    never in environments, as with gymnasium's ``TimeLimit``."""

    def __init__(self, env: gym.Env[str, str], max_turns: int = 50) -> None:
        super().__init__(env)
        self.max_turns = max_turns

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        return obs, reward, terminated, truncated or self.count >= self.max_turns, info


class ToolCallLimit(_Counting):
    """Allow ``max_calls`` tool calls (steps whose ``info["tool_call"]`` is true; ARPO's
    scripts allow 3 to 6) and truncate at a call beyond them. The step after the last allowed
    call is the agent's to answer: truncating at that call itself would leave a task that
    needs all of them unwinnable."""

    def __init__(self, env: gym.Env[str, str], max_calls: int = 6) -> None:
        super().__init__(env)
        self.max_calls = max_calls

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += bool(info.get("tool_call", True))
        return obs, reward, terminated, truncated or self.count > self.max_calls, info


class InvalidActionPenalty(gym.Wrapper[str, str, str, str]):
    """Add ``penalty`` (negative) to the reward of every step with ``valid_action`` False."""

    def __init__(self, env: gym.Env[str, str], penalty: float = -0.1) -> None:
        super().__init__(env)
        self.penalty = penalty

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not info.get("valid_action", True):
            reward += self.penalty
        return obs, reward, terminated, truncated, info


class FormatPenalty(gym.Wrapper[str, str, str, str]):
    """ARPO's format term: an episode whose format broke scores ``penalty`` (-1) in all.

    The format broke when any step was not a valid call (``valid_action`` False), or when the
    episode was cut off (``truncated``) before the task ended, i.e. without an answer. The last
    step's reward is set so that the episode's return is exactly ``penalty``; an episode that
    kept the format keeps its rewards. Wrap it inside ``TurnLimit``/``ToolCallLimit``'s view,
    i.e. ``FormatPenalty(TurnLimit(env))``, so it sees their truncation.
    """

    def __init__(self, env: gym.Env[str, str], penalty: float = -1.0) -> None:
        super().__init__(env)
        self.penalty = penalty
        self._broken, self._ret = False, 0.0

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        self._broken, self._ret = False, 0.0
        return self.env.reset(**kwargs)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._broken |= not info.get("valid_action", True) or (truncated and not terminated)
        if (terminated or truncated) and self._broken:
            reward = self.penalty - self._ret
        self._ret += float(reward)
        return obs, reward, terminated, truncated, info

    def snapshot(self) -> tuple[Any, bool, float]:
        return self.env.get_wrapper_attr("snapshot")(), self._broken, self._ret

    def restore(self, snap: tuple[Any, bool, float]) -> None:
        inner, self._broken, self._ret = snap
        self.env.get_wrapper_attr("restore")(inner)


class HistoryWindow(gym.Wrapper[str, str, str, str]):
    """Show the last ``window`` actions and observations with every observation.

    For prompts that re-encode each turn (a chat model queried with a fresh prompt per step,
    as ALFWorld agents and verl-agent do), not for branchgym's own one-sequence episodes, which
    hold the whole history already. The first observation (the task) is always kept:

        <first observation>
        [History]
        > <action t-k>
        <observation t-k>
        ...
        [Now]
        > <action t>
        <observation t>
    """

    def __init__(self, env: gym.Env[str, str], window: int = 3) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        super().__init__(env)
        self.window = window
        self._first, self._turns = "", ()

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._first, self._turns = obs, ()
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        past = self._turns[-self.window :] if self.window else ()
        self._turns = (*past, (str(action), obs))
        return self._render(past, str(action), obs), reward, terminated, truncated, info

    def _render(self, past: tuple[tuple[str, str], ...], action: str, obs: str) -> str:
        parts = [self._first]
        if past:
            parts.append("[History]")
            parts += [f"> {a}\n{o}" for a, o in past]
        parts += ["[Now]", f"> {action}\n{obs}"]
        return "\n".join(parts)

    def snapshot(self) -> tuple[Any, str, tuple[tuple[str, str], ...]]:
        return self.env.get_wrapper_attr("snapshot")(), self._first, self._turns

    def restore(self, snap: tuple[Any, str, tuple[tuple[str, str], ...]]) -> None:
        inner, self._first, self._turns = snap
        self.env.get_wrapper_attr("restore")(inner)
