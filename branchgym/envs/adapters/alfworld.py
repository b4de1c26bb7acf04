"""``branchgym/ALFWorld-v0``: ALFWorld's household games, in ALFWorld's TextWorld engine.

Requires ``pip install alfworld`` (0.4.2, which brings TextWorld and Fast Downward). Games are
PDDL problems in ``game.tw-pddl`` files (JSON: ``pddl_domain``, ``grammar`` with the task text,
``pddl_problem``, ``solvable``), played as ALFWorld's ``AlfredTWEnv`` plays them:
``textworld.start`` with ``AlfredDemangler(shuffle=False)`` and ``AlfredInfos``, the planner as
expert, without its batch processes and step limit (budgets belong in wrappers).

Where the games come from, first match wins:

- ``game_file=`` one ``game.tw-pddl`` (for instance a household episode exported as PDDL with
  ALFWorld's shipped ``alfred.pddl`` and ``alfred.twl2``), or ``games=[...]``: the task seed
  picks ``games[seed % len(games)]``;
- ``data_dir=``, else ``$ALFWORLD_DATA``: ALFWorld's data (``alfworld-download`` fetches it;
  where that cannot reach the internet, copy the folder from a machine where it can). The
  split picks a folder, ``train`` -> ``json_2.1.1/train``, ``seen`` -> ``valid_seen``,
  ``unseen`` -> ``valid_unseen``, whose games are ALFWorld's own selection (solvable, of the
  ``task_types``, no movable or sliced objects), sorted; the seed picks one.

Without either, the constructor raises ``ALFWorldDataMissing`` saying what to set. Importing
alfworld creates ``$ALFWORLD_DATA`` (``~/.cache/alfworld`` when unset): alfworld does it.

- ``info``: ``instruction`` (the text after "Your task is to: "), ``admissible_commands``,
  ``expert_plan`` (the planner's plan from the current state, re-planned every step;
  ``expert_plan=False`` skips it), ``won``, ``valid_action``, ``game_file``.
- An action is valid when it is exactly one of the admissible commands, which is the engine's
  own rule: anything else is "Nothing happens." and changes nothing. The adapter answers those
  itself, with the engine's text and the state's own lists: sent to the engine, each would
  cost a full step (20 to 80 ms of re-deriving every admissible command and re-planning) to
  change nothing. So an invalid action costs microseconds, a valid one the engine's step.
- Reward 1 on the step that wins (the engine's score), else 0; ``terminated`` on the win.
- Snapshots replay (``_replay``): the PDDL state lives in Fast Downward's library and the
  engine has no ``copy()``. A restore costs a reset (0.1 to 1.2 s, by world size) plus one
  engine step per valid action since it (20 to 80 ms, most of it listing admissible commands).
- Fast Downward's translator replaces ``sys.argv`` with its own each time a game loads or
  resets; the adapter puts the process's back.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from functools import lru_cache
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

SPLIT_DIRS = {
    "train": "train",
    "seen": "valid_seen",
    "unseen": "valid_unseen",
    "valid_seen": "valid_seen",
    "valid_unseen": "valid_unseen",
}
TASK_PREFIX = "Your task is to: "
NOTHING_HAPPENS = "Nothing happens."  # the engine's text for a command that is not admissible
ALL_TASK_TYPES = (1, 2, 3, 4, 5, 6)  # ALFWorld's TASK_TYPES ids: pick_and_place_simple ...


class ALFWorldDataMissing(FileNotFoundError):
    """ALFWorld's game files are not on this machine (and no game file was given)."""


class ALFWorldEnv(ReplaySnapshots, gym.Env[str, str]):
    """ALFWorld's text household games (ALFRED scenes as PDDL), in its TextWorld engine."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        game_file: str | None = None,
        games: Sequence[str] = (),
        data_dir: str | None = None,
        split: str = "train",
        task_types: Sequence[int] = ALL_TASK_TYPES,
        expert_plan: bool = True,
        render_mode: str | None = None,
    ) -> None:
        require("alfworld", "alfworld", load=False)
        if split not in SPLIT_DIRS:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_DIRS)}")
        self.games = (game_file,) if game_file else tuple(games)
        missing = [g for g in self.games if not os.path.isfile(g)]
        if missing:
            raise ALFWorldDataMissing(f"no ALFWorld game file at {missing}")
        self.root = None if self.games else _data_root(data_dir)
        self.split, self.task_types, self.make_plan = split, tuple(task_types), expert_plan
        self._tw = require("textworld", "alfworld")
        self._alfred = require("alfworld.agents.environment.alfred_tw_env", "alfworld")
        self.observation_space, self.action_space = OBSERVATIONS, ACTIONS
        self.render_mode = render_mode
        self._engine: Any = None
        self._game: str | None = None
        self._state: Any = None
        self._episode: str | None = None  # the game file
        self._actions: list[str] = []
        self._obs, self._info = "", {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        s, split = episode_seed(self.np_random, seed, options)
        games = self.split_games(split or self.split)
        self._obs = self._restart(games[s % len(games)])
        self._info = self._read_info(valid=True)
        return self._obs, public_info(self._info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        command = clean_action(action)
        valid = command in self._info["admissible_commands"]
        self._obs = self._engine_step(command)
        won_before = self._info["won"]
        # An invalid command left the state, so its admissible commands and plan, as they were.
        self._info = self._read_info(valid) if valid else {**self._info, "valid_action": False}
        reward = float(self._info["won"] and not won_before)
        return self._obs, reward, self._info["won"], False, public_info(self._info)

    def split_games(self, split: str) -> tuple[str, ...]:
        """The game files a split draws from (every given game when games were given)."""
        if self.games:
            return self.games
        if split not in SPLIT_DIRS:
            raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_DIRS)}")
        found = _collect(os.path.join(self.root, SPLIT_DIRS[split]), self.task_types)
        if not found:
            raise ALFWorldDataMissing(
                f"no playable ALFWorld game in {self.root}/{SPLIT_DIRS[split]} for task types "
                f"{self.task_types}: {_HOW_TO_GET_DATA}"
            )
        return found

    def _started(self) -> bool:
        return self._state is not None

    def _view(self) -> dict[str, Any]:
        return self._info

    def _set_view(self, view: dict[str, Any]) -> None:
        self._info = view

    def render(self) -> str | None:
        return self._obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._game, self._state = None, None, None

    def _restart(self, game: str) -> str:
        if game != self._game:
            self.close()
            wrappers = [self._alfred.AlfredDemangler(shuffle=False), self._alfred.AlfredInfos]
            with _keep_argv():
                self._engine = self._tw.start(game, self._request_infos(), wrappers=wrappers)
            self._game = game
        with _keep_argv():
            self._state = self._engine.reset()
        self._episode, self._actions = game, []
        return str(self._state.feedback)

    def _engine_step(self, command: str) -> str:
        self._actions.append(command)
        if command not in self._state.admissible_commands:
            # What PddlEnv.step answers when no action's command matches, state unchanged.
            return NOTHING_HAPPENS
        self._state, _, _ = self._engine.step(command)
        return str(self._state.feedback)

    def _request_infos(self) -> Any:
        infos = self._tw.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
        infos.policy_commands = self.make_plan
        return infos

    def _read_info(self, valid: bool) -> dict[str, Any]:
        state = self._state
        return {
            "instruction": self._info["instruction"] if self._actions else _task(self._obs),
            "admissible_commands": tuple(state.admissible_commands or ()),
            "expert_plan": tuple(state.get("policy_commands") or ()),
            "won": bool(state.won),
            "valid_action": valid,
            "game_file": self._episode,
        }


@contextmanager
def _keep_argv() -> Iterator[None]:
    """Undo Fast Downward's ``pddl2sas``, which sets ``sys.argv = ["translate.py", ...]`` for
    its option parser whenever a game's PDDL is translated (each load and reset)."""
    argv = sys.argv
    try:
        yield
    finally:
        sys.argv = argv


def _task(intro: str) -> str:
    """The task in ALFWorld's opening text ("... Your task is to: put a clean apple in fridge.")."""
    return intro.rpartition(TASK_PREFIX)[2] if TASK_PREFIX in intro else ""


_HOW_TO_GET_DATA = (
    "set ALFWORLD_DATA (or pass data_dir=) to the folder `alfworld-download` fills, which holds "
    "json_2.1.1/{train,valid_seen,valid_unseen}/**/game.tw-pddl; where that download cannot "
    "reach the internet, run it elsewhere and copy the folder here. Or pass game_file= (one "
    "game.tw-pddl) or games=[...]."
)


def _data_root(data_dir: str | None) -> str:
    """``json_2.1.1`` under the data folder, checked now so a missing download fails at
    construction, not at the first reset of a training run."""
    base = data_dir or os.environ.get("ALFWORLD_DATA")
    if not base:
        raise ALFWorldDataMissing(f"ALFWorld's games were not found: {_HOW_TO_GET_DATA}")
    root = os.path.join(os.path.expanduser(base), "json_2.1.1")
    if not any("game.tw-pddl" in files for _, _, files in os.walk(root)):
        raise ALFWorldDataMissing(f"no game.tw-pddl under {root}: {_HOW_TO_GET_DATA}")
    return root


@lru_cache(maxsize=16)
def _collect(path: str, task_types: tuple[int, ...]) -> tuple[str, ...]:
    """ALFWorld's own game selection (``AlfredTWEnv.collect_game_files``), sorted: the order of
    ``os.walk`` differs between file systems, and the seed must pick the same game anywhere.
    Reads every game file of the split once per process (seconds for the 3,553 train games)."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {
        "env": {"goal_desc_human_anns_prob": 0.0, "task_types": list(task_types)},
        "dataset": {"data_path": path, "num_train_games": -1},
    }
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):  # its prints, tqdm
        return tuple(sorted(AlfredTWEnv(config, train_eval="train").game_files))
