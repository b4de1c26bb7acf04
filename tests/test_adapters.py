"""What the engine adapters share, tested without any engine: replay snapshots, actions, imports.

The engines themselves are tested in test_textworld.py, test_scienceworld.py and
test_alfworld.py, behind their markers.
"""

from __future__ import annotations

import pickle

import pytest

from branchgym.envs.adapters._common import MAX_ACTION_CHARS, clean_action, require
from branchgym.envs.adapters._replay import (
    ReplayDivergence,
    ReplaySnapshot,
    restore_by_replay,
)
from branchgym.envs.adapters.textworld import clean_feedback


class CountingEngine:
    """A deterministic engine whose observation is the episode and the commands so far, and
    which counts the restarts and steps a restore costs."""

    def __init__(self) -> None:
        self.episode, self.actions, self.restarts, self.steps = None, [], 0, 0

    def restart(self, episode):
        self.episode, self.actions = episode, []
        self.restarts += 1
        return self.obs()

    def step(self, action: str) -> str:
        self.actions.append(action)
        self.steps += 1
        return self.obs()

    def obs(self) -> str:
        return f"{self.episode}:{','.join(self.actions)}"

    def snap(self) -> ReplaySnapshot:
        return ReplaySnapshot(self.episode, tuple(self.actions), self.obs())


def test_restore_replays_from_a_restart_when_the_target_is_not_ahead():
    engine = CountingEngine()
    engine.restart("g")
    target = ReplaySnapshot("g", ("a", "b"), "g:a,b")
    for action in ("a", "c", "d"):  # went past the branch point along another path
        engine.step(action)
    engine.restarts = engine.steps = 0
    restore_by_replay(engine.snap(), target, engine.restart, engine.step)
    # current ("a","c","d") is not a prefix of ("a","b"): 1 restart, then both actions again.
    assert (engine.restarts, engine.steps, engine.obs()) == (1, 2, "g:a,b")


def test_restore_forward_replays_only_the_missing_actions():
    engine = CountingEngine()
    engine.restart("g")
    engine.step("a")
    engine.restarts = engine.steps = 0
    target = ReplaySnapshot("g", ("a", "b", "c"), "g:a,b,c")
    restore_by_replay(engine.snap(), target, engine.restart, engine.step)
    # current ("a",) is a prefix of ("a","b","c"): no restart, 3 - 1 = 2 steps.
    assert (engine.restarts, engine.steps, engine.obs()) == (0, 2, "g:a,b,c")


def test_restore_into_another_episode_or_a_fresh_engine_restarts():
    engine = CountingEngine()
    engine.restart("other")
    restore_by_replay(engine.snap(), ReplaySnapshot("g", (), "g:"), engine.restart, engine.step)
    assert engine.obs() == "g:" and engine.restarts == 2
    fresh = CountingEngine()
    restore_by_replay(None, ReplaySnapshot("g", ("x",), "g:x"), fresh.restart, fresh.step)
    assert (fresh.restarts, fresh.steps, fresh.obs()) == (1, 1, "g:x")


def test_a_replay_that_ends_elsewhere_raises_divergence():
    engine = CountingEngine()
    with pytest.raises(ReplayDivergence, match="not on the snapshot's"):
        restore_by_replay(None, ReplaySnapshot("g", ("a",), "g:b"), engine.restart, engine.step)


def test_snapshots_pickle_for_subprocess_envs():
    snap = ReplaySnapshot(("game.z8", 3), ("look",), "obs", ({"won": False}, 0))
    assert pickle.loads(pickle.dumps(snap)) == snap


@pytest.mark.parametrize(
    ("action", "command"),
    [
        (None, ""),
        (42, ""),
        (b"look", ""),
        ("  look  ", "look"),
        ("open\ndoor", "open door"),
        ("a\x00\x01b\tc", "a b c"),
        ("take \ud800 key", "take \ufffd key"),  # a lone surrogate cannot be UTF-8 encoded
    ],
)
def test_clean_action_makes_one_printable_line(action, command):
    assert clean_action(action) == command


def test_clean_action_bounds_length():
    assert len(clean_action("look" * 25_000)) == MAX_ACTION_CHARS


def test_missing_engine_names_the_pip_package():
    with pytest.raises(ImportError, match=r"pip install no-such-engine-pkg"):
        require("no_such_engine_module.sub", "no-such-engine-pkg")
    with pytest.raises(ImportError, match=r"pip install no-such-engine-pkg"):
        require("no_such_engine_module", "no-such-engine-pkg", load=False)


def test_textworld_feedback_loses_prompt_status_line_banner_and_padding():
    raw = (
        "\n\n\n   ________  __\n  |  \\$$  |\n\nHey, do this.\n\n-= Scullery =-\n"
        "A room.\n\n\n\n>                                  -= Scullery =-0/1"
    )
    assert clean_feedback(raw) == "Hey, do this.\n\n-= Scullery =-\nA room."
    won = "\nYou win.\n\n\n        *** The End ***\n\n>         -= Attic =-0/5"
    assert clean_feedback(won) == "You win.\n\n*** The End ***"
    assert clean_feedback("\nI beg your pardon?\n") == "I beg your pardon?"
