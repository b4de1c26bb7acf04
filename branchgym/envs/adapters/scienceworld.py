"""``branchgym/ScienceWorld-v0``: ScienceWorld's 30 science tasks, in its own simulator.

Requires ``pip install scienceworld`` (1.2.x) and Java 11+ (``apt-get install
default-jre-headless``); each env starts its own JVM (about 1 s), so make one per worker and
``close()`` it.

- **Tasks.** The task seed picks the task, ``task_names[seed % n]`` (all 30 by default), and
  then a variation from the split's list, ``variations[(seed // n) % len(variations)]``.
  ScienceWorld holds out variations in ``dev`` and ``test`` lists; branchgym's splits map onto
  them as ``train`` -> train, ``seen`` -> dev, ``unseen`` -> test (ScienceWorld's own names are
  accepted too). The split is the ``TaskRef``'s, else the constructor's ``split``.
- **Observations.** The opening is the task description, a blank line, then what ``look
  around`` shows (ScienceWorld's own reset observation, which does not state the task).
- **info**: ``instruction`` (the task description), ``task_name``, ``variation``,
  ``expert_plan``, ``won``, ``valid_action``, ``score`` (ScienceWorld's points, 0 to 100, -100
  when the task failed) and, with ``admissible_commands=True``, ``admissible_commands``:
  ScienceWorld's valid action-object combinations (``get_valid_action_object_combinations``),
  sorted. That list runs to 400-3,000 commands and costs 50-150 ms a step, ten times the
  step itself (5-10 ms), so turn it off when the policy does not see it.
- **Validity.** The list is not the grammar: the parser accepts commands it omits (the gold
  path's ``pick up metal pot``), so an action is invalid only when the parser rejects it
  ("No known action matches that input.", "Unknown action.", "Ambiguous request: ..."). An
  ambiguous request waits for a number that picks one reading, as in ScienceWorld.
- **Expert.** ``expert_plan`` is ScienceWorld's gold action sequence
  (``get_gold_action_sequence``) minus the steps already taken, while every action so far
  followed it; once the policy leaves the gold path it is empty, because ScienceWorld cannot
  plan from an arbitrary state. ``expert_plan=False`` skips generating it (0.4 s a reset).
  ScienceWorld's generator is not seeded: where several targets would do (which animal to
  find), two resets of one task may plan for different ones; the world itself is the same.
- **Reward**: the change in ``max(score, 0) / 100``, so an episode returns its final score in
  [0, 1]; a step that loses points has a negative reward. ``terminated`` when ScienceWorld
  marks the task completed (won, or failed: score below 0). ScienceWorld's own step limit is
  set out of reach: budgets belong in wrappers (``TurnLimit``).
- **Steps** go straight to the simulator (``server.step``): the Python ``step`` also fetches
  the look, inventory and valid-action texts on every call, which costs 15 times the step.
- **Snapshots** replay (``_replay``): ScienceWorld cannot save or copy its state. Restore
  reloads the task (about 40 ms) and replays the actions since reset (5-10 ms each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym

from branchgym.envs.adapters._common import (
    ACTIONS,
    OBSERVATIONS,
    clean_action,
    public_info,
    require,
)
from branchgym.envs.adapters._replay import ReplaySnapshots
from branchgym.tasks.suite import episode_seed

SPLITS = {"train": "train", "seen": "dev", "unseen": "test", "dev": "dev", "test": "test"}
PARSER_REJECTS = ("No known action matches that input.", "Unknown action.", "Ambiguous request")
NO_STEP_LIMIT = 2**31 - 1


class ScienceWorldEnv(ReplaySnapshots, gym.Env[str, str]):
    """ScienceWorld's science tasks (boil, grow a plant, test conductivity...), in its JVM."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task_names: Sequence[str] = (),
        split: str = "train",
        simplifications: str = "",
        admissible_commands: bool = True,
        expert_plan: bool = True,
        render_mode: str | None = None,
    ) -> None:
        sw = require("scienceworld", "scienceworld")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
        self._sw = sw.ScienceWorldEnv("", envStepLimit=NO_STEP_LIMIT)
        known = tuple(self._sw.get_task_names())
        unknown = sorted(set(task_names) - set(known))
        if unknown:
            self._sw.close()
            raise ValueError(f"unknown ScienceWorld tasks {unknown}; known: {known}")
        self.task_names = tuple(task_names) or known
        self.split, self.simplifications = split, simplifications
        self.list_admissible, self.make_plan = admissible_commands, expert_plan
        self.observation_space, self.action_space = OBSERVATIONS, ACTIONS
        self.render_mode = render_mode
        self._variations: dict[tuple[str, str], tuple[int, ...]] = {}
        self._episode: tuple[str, int] | None = None  # (task name, variation)
        self._actions: list[str] = []
        self._obs, self._info, self._gold = "", {}, ()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        s, split = episode_seed(self.np_random, seed, options)
        task = self.task_names[s % len(self.task_names)]
        variations = self.variations(task, split or self.split)
        episode = (task, variations[(s // len(self.task_names)) % len(variations)])
        self._obs = self._restart(episode, gold=self.make_plan)
        self._gold = tuple(self._sw.get_gold_action_sequence()) if self.make_plan else ()
        self._info = self._read_info(valid=True)
        return self._obs, public_info(self._info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._episode is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        before = max(self._info["score"], 0)
        self._obs = self._engine_step(clean_action(action))
        self._info = self._read_info(valid=not self._obs.startswith(PARSER_REJECTS))
        score = self._info["score"]
        terminated = bool(self._sw.server.getCompleted()) or score < 0
        return self._obs, (max(score, 0) - before) / 100, terminated, False, public_info(self._info)

    def variations(self, task: str, split: str) -> tuple[int, ...]:
        """The variation ids of ``task`` in ``split`` (a branchgym or ScienceWorld split name)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
        key = (task, SPLITS[split])
        if key not in self._variations:
            self._sw.load(task, 0, self.simplifications)
            self._episode = None  # the engine left the episode it was in
            for name in ("train", "dev", "test"):
                ids = getattr(self._sw, f"get_variations_{name}")()
                self._variations[(task, name)] = tuple(ids)
        if not self._variations[key]:
            raise ValueError(f"ScienceWorld task {task!r} has no {key[1]} variations")
        return self._variations[key]

    def _started(self) -> bool:
        return self._episode is not None

    def _set_view(self, view: tuple[dict[str, Any], tuple[str, ...]]) -> None:
        self._info, self._gold = view

    def render(self) -> str | None:
        return self._obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if getattr(self, "_sw", None) is not None:
            self._sw.close()
            self._sw = None

    def _restart(self, episode: tuple[str, int], gold: bool = False) -> str:
        task, variation = episode
        self._sw.load(task, variation, self.simplifications, generateGoldPath=gold)
        self._episode, self._actions = episode, []
        # ScienceWorld's own reset looks around as its first move; so does this one.
        look = self._sw.server.step("look around")
        return f"{self._sw.get_task_description()}\n\n{look}"

    def _engine_step(self, command: str) -> str:
        self._actions.append(command)
        return str(self._sw.server.step(command))

    def _read_info(self, valid: bool) -> dict[str, Any]:
        task, variation = self._episode or ("", 0)
        info: dict[str, Any] = {
            "instruction": self._sw.get_task_description(),
            "task_name": task,
            "variation": variation,
            "expert_plan": self._remaining_gold(),
            "won": False,
            "valid_action": valid,
            "score": round(100 * float(self._sw.server.getScore())),
        }
        info["won"] = info["score"] >= 100 and bool(self._sw.server.getCompleted())
        if self.list_admissible:
            combos = self._sw.get_valid_action_object_combinations()
            info["admissible_commands"] = tuple(sorted(set(combos)))
        return info

    def _remaining_gold(self) -> tuple[str, ...]:
        done = len(self._actions)
        return self._gold[done:] if tuple(self._actions) == self._gold[:done] else ()

    def _view(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        return self._info, self._gold
