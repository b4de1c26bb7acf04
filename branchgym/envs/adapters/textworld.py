"""``branchgym/TextWorld-v0``: games made by ``tw-make``, played in TextWorld's own engine.

``TextWorldEnv(game_file="game.z8")`` or ``TextWorldEnv(games=[...])`` (the task seed picks the
game: ``games[seed % len(games)]``; TextWorld has no splits, so keep held-out games in a
separate instance). The game runs through ``textworld.start`` with ``EnvInfos`` asking for the
objective, admissible commands, the walkthrough (``policy_commands``), score and win/loss;
TextWorld's gym interface adds nothing but a batch layer and a step limit, and budgets belong
in wrappers. Requires ``pip install textworld`` (1.7; .z8 games only: TextWorld 1.7 dropped
Glulx ``.ulx`` games).

- Observations are TextWorld's feedback without the interpreter's trailing ``>`` prompt and
  status line, and without the ASCII-art banner of the opening text (lines without a letter).
- ``info``: ``instruction`` (the objective), ``admissible_commands``, ``expert_plan`` (the
  remaining walkthrough from the current state, re-planned by TextWorld after every command),
  ``won``, ``lost``, ``valid_action``, ``score`` and ``max_score``.
- An action is valid when it is one of the admissible commands of the state it was taken in
  (compared case- and space-insensitively). Any other command still reaches the engine, which
  answers with its own text ("That's not a verb I recognise.").
- Reward: the step's score gain divided by ``max_score``, so a game won with every point
  returns 1, as the other environments do. ``terminated`` when the game is won or lost.
- Snapshots replay (``_replay``): TextWorld's ``copy()`` forks the Jericho interpreter, which
  cannot be pickled and costs about 0.1 s (it reloads the story file), while a replay costs a
  reset plus about 4 ms per action since it. The engine is seeded from the task seed, so
  replays are exact.
"""

from __future__ import annotations

import os
import re
import warnings
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

JERICHO_MAX_BYTES = 190


def clean_feedback(feedback: str) -> str:
    """TextWorld's text without the interpreter's prompt and status line (``>  -= Room =-0/3``),
    without leading lines that hold no letter (the opening's ASCII-art banner), and with the
    engine's layout padding (indents, runs of blank lines) squeezed out: tokens a policy pays for.
    """
    text = feedback.rsplit("\n>", 1)[0] if "\n>" in feedback else feedback
    lines = [line.strip() for line in text.split("\n")]
    while lines and not any(c.isalpha() for c in lines[0]):
        lines.pop(0)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _norm(command: str) -> str:
    return " ".join(command.lower().split())


class TextWorldEnv(ReplaySnapshots, gym.Env[str, str]):
    """Games made by ``tw-make``, played in TextWorld's engine (Jericho)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        game_file: str | None = None,
        games: Sequence[str] = (),
        render_mode: str | None = None,
    ) -> None:
        self._tw = require("textworld", "textworld")
        self.games = (game_file,) if game_file else tuple(games)
        if not self.games:
            raise ValueError("pass game_file= or games=[...]: games made by `tw-make` (.z8)")
        missing = [g for g in self.games if not os.path.isfile(g)]
        if missing:
            raise FileNotFoundError(f"no TextWorld game at {missing}; make one with `tw-make`")
        self.observation_space, self.action_space = OBSERVATIONS, ACTIONS
        self.render_mode = render_mode
        self._engine: Any = None
        self._game: str | None = None
        self._state: Any = None
        self._episode: tuple[str, int] | None = None  # (game file, engine seed)
        self._actions: list[str] = []
        self._obs, self._info, self._score = "", {}, 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        s, _split = episode_seed(self.np_random, seed, options)
        # Jericho reads seed 0 as "no seed" (time-based), hence the + 1.
        self._obs = self._restart((self.games[s % len(self.games)], s % (2**31 - 1) + 1))
        self._score = self._state.score or 0
        self._info = self._read_info(valid=True)
        return self._obs, public_info(self._info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        # Dumb-frotz reads a backslash as the start of an interpreter escape, not game text, and
        # Jericho cuts commands at 197 UTF-8 bytes, with a warning that fails to decode the cut
        # when it splits a character ("é" * 100): cut them shorter here, on a character.
        command = clean_action(action).replace("\\", " ")
        command = command.encode()[:JERICHO_MAX_BYTES].decode(errors="ignore").strip()
        valid = _norm(command) in {_norm(c) for c in self._info["admissible_commands"]}
        before = self._score
        self._obs = self._engine_step(command)
        self._score = self._state.score or 0
        self._info = self._read_info(valid)
        reward = (self._score - before) / max(self._info["max_score"], 1)
        terminated = self._info["won"] or self._info["lost"]
        return self._obs, float(reward), terminated, False, public_info(self._info)

    def _started(self) -> bool:
        return self._state is not None

    def _set_view(self, view: tuple[dict[str, Any], int]) -> None:
        self._info, self._score = view

    def render(self) -> str | None:
        return self._obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._game, self._state = None, None, None

    def _restart(self, episode: tuple[str, int]) -> str:
        game, engine_seed = episode
        with warnings.catch_warnings():
            # Jericho calls every TextWorld game "not fully supported" (it reads the score
            # from a status line they lack); TextWorld reads it itself and mutes the warning
            # at import, a filter that pytest and others reset.
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            if game != self._game:
                self.close()
                self._engine, self._game = self._tw.start(game, self._request_infos()), game
            self._engine.seed(engine_seed)
            self._state = self._engine.reset()
        self._episode, self._actions = episode, []
        return clean_feedback(self._state.feedback)

    def _engine_step(self, command: str) -> str:
        self._state, _, _ = self._engine.step(command)
        self._actions.append(command)
        return clean_feedback(self._state.feedback)

    def _request_infos(self) -> Any:
        return self._tw.EnvInfos(
            objective=True,
            admissible_commands=True,
            policy_commands=True,
            score=True,
            max_score=True,
            won=True,
            lost=True,
        )

    def _read_info(self, valid: bool) -> dict[str, Any]:
        state = self._state
        return {
            "instruction": state.objective or "",
            "admissible_commands": tuple(state.admissible_commands or ()),
            "expert_plan": tuple(state.policy_commands or ()),
            "won": bool(state.won),
            "lost": bool(state.lost),
            "valid_action": valid,
            "score": self._score,
            "max_score": state.max_score or 0,
        }

    def _view(self) -> tuple[dict[str, Any], int]:
        return self._info, self._score
