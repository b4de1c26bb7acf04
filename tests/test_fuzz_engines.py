"""Hypothesis fuzzing of the real engines behind the adapters: 10,000 actions each.

``tests/test_fuzz.py`` gives each branchgym environment 10,000 generated actions; this gives
as many to TextWorld, ScienceWorld and ALFWorld through their adapters (marker ``fuzz``, plus
the engine's own marker; each test is skipped without its engine). Every step must come back
as ``(str, float, bool, False, dict)``: a bad action is an observation, never an exception
(``branchgym.envs.errors``: "Bad calls from the policy are never exceptions").

The actions are drawn one at a time from the state the engine is in (``st.data()``): free
unicode text, control characters and lone surrogates, strings up to 18,000 characters, word
salad from the game's own vocabulary, its admissible commands as they are and mangled (case,
spacing, a cut, a control character inside), digits (ScienceWorld's answer to an ambiguous
request) and, where the engine has one, the expert's next step, so episodes go deep and end.
An example is one reset and 200 actions; an episode that ends is reset with the next seed.
Resets cost up to a tenth of a second, so examples are long; 200 drawn actions still stay well
inside Hypothesis's per-example entropy budget.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import branchgym.envs

pytestmark = pytest.mark.fuzz

ACTIONS_PER_ENGINE = 10_000
STEPS = 200  # actions per example: one reset each, so resets stay rare
# How often each kind of action is drawn, by default; engines change some.
WEIGHTS = {"text": 4, "nasty": 2, "long": 1, "digits": 1, "salad": 4, "mangled": 2}
WEIGHTS |= {"known": 2, "plan": 2}
NASTY = (
    "\x00\t\n\r\x0b\x0c\x1b\x7f\x85\xa0\u2028\u2029\ufeff\u202e\u0301\\\"'`<>[]{}%$;|&*?~#"
    "0123456789 \ud800\udbff\udc00\udfff\U0001f600é€ß"
)
MANGLE: dict[str, Callable[[str, str], str]] = {
    "upper": lambda c, s: c.upper(),
    "spaced": lambda c, s: f"  {c.replace(' ', '   ')}  ",
    "cut": lambda c, s: c[: len(c) // 2],
    "doubled": lambda c, s: f"{c} {c}",
    "suffix": lambda c, s: c + s,
    "prefix": lambda c, s: s + c,
    "inside": lambda c, s: c.replace(" ", s or "\x00", 1),
    "newline": lambda c, s: f"{c}\n{s}",
}


def fill(command: str, objects: Sequence[str]) -> str:
    """A command template (``"open OBJ"``) with its ``OBJ`` slots filled in order."""
    for obj in objects:
        command = command.replace("OBJ", obj, 1)
    return command


def action_strategy(
    weights: dict[str, int],
    commands: Sequence[str],
    objects: Sequence[str],
    words: Sequence[str],
    plan: Sequence[str],
):
    """Actions for one state: ``commands`` the engine would take (or templates whose ``OBJ``
    slots take ``objects``), ``words`` its vocabulary, ``plan`` the expert's remaining steps.
    ``weights`` say how often each kind is drawn: an engine's valid steps can cost many times
    its invalid ones. (Not ``one_of`` with a kind repeated: it drops repeated strategies.)"""
    commands = list(commands) or ["look"]
    words = list(words) or ["look"]
    known = st.sampled_from(commands)
    if objects:
        known = st.builds(
            fill, known, st.lists(st.sampled_from(list(objects)), min_size=2, max_size=2)
        )
    salad = st.lists(st.sampled_from(words), min_size=1, max_size=6).map(" ".join)
    kinds = {
        "text": st.text(max_size=30),  # any unicode but surrogates, control characters too
        "nasty": st.text(st.sampled_from(NASTY), max_size=12),
        "long": st.builds(
            lambda s, n: s * n, st.text(min_size=1, max_size=6) | salad, st.integers(50, 3000)
        ),
        "digits": st.integers(-3, 12).map(str),
        "salad": salad,
        "mangled": st.builds(
            lambda c, how, s: MANGLE[how](c, s),
            known,
            st.sampled_from(sorted(MANGLE)),
            st.text(st.sampled_from(NASTY), max_size=3),
        ),
        "known": known,
        "plan": st.just(plan[0]) if plan else known,
    }
    names = [kind for kind, n in weights.items() for _ in range(n)]
    return st.sampled_from(names).flatmap(kinds.__getitem__)


def check_step(result: Any) -> tuple[str, float, bool, dict[str, Any]]:
    assert isinstance(result, tuple) and len(result) == 5, result
    obs, reward, terminated, truncated, info = result
    assert type(obs) is str, type(obs)
    assert type(reward) is float and math.isfinite(reward) and -1.0 <= reward <= 1.0, reward
    assert type(terminated) is bool and truncated is False
    assert type(info) is dict and type(info["valid_action"]) is bool
    commands = info.get("admissible_commands", [])
    assert isinstance(commands, list) and all(type(c) is str for c in commands)
    return obs, reward, terminated, info


class Fuzzer:
    """Drives one env with ``STEPS`` drawn actions per example and keeps the tally."""

    def __init__(
        self,
        env,
        vocabulary: Callable[[str, dict[str, Any]], tuple[Sequence[str], ...]],
        **weights: int,
    ):
        self.env, self.vocabulary, self.weights = env, vocabulary, {**WEIGHTS, **weights}
        self.tally: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()  # in the env: resets, valid and invalid steps
        self.slowest = (0.0, "")
        self._strategies: dict[tuple, Any] = {}

    def strategy(self, obs: str, info: dict[str, Any]):
        commands, objects, words = self.vocabulary(obs, info)
        plan = tuple(info.get("expert_plan", ())[:1])
        key = (tuple(commands), tuple(objects), tuple(words), plan)
        if key not in self._strategies:
            self._strategies[key] = action_strategy(self.weights, *key)
        return self._strategies[key]

    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        start = time.perf_counter()
        obs, info = self.env.reset(seed=seed)
        self.seconds["reset"] += time.perf_counter() - start
        assert type(obs) is str and type(info) is dict
        self.tally["resets"] += 1
        return obs, info

    def run_example(self, seed: int, data) -> None:
        obs, info = self.reset(seed)
        for _ in range(STEPS):
            action = data.draw(self.strategy(obs, info))
            start = time.perf_counter()
            result = self.env.step(action)
            took = time.perf_counter() - start
            self.slowest = max(self.slowest, (took, action[:80]))
            obs, _, terminated, info = check_step(result)
            self.tally["steps"] += 1
            self.tally["valid"] += info["valid_action"]
            self.seconds["valid" if info["valid_action"] else "invalid"] += took
            if terminated:
                self.tally["ended"] += 1
                seed += 1
                obs, info = self.reset(seed)

    def fuzz(self, examples: Sequence[str] = ()) -> None:
        """``ACTIONS_PER_ENGINE / STEPS`` examples, then checks the count was really stepped.
        ``examples`` are regression actions, taken in turn in one more example (``@example``)."""

        @settings(
            max_examples=ACTIONS_PER_ENGINE // STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(seed=st.integers(0, 2**31 - 2), data=st.data())
        def episode(seed, data):
            self.run_example(seed, data)

        if examples:  # one more example, of these actions in turn
            episode = example(seed=0, data=_Fixed(examples))(episode)
        before = self.tally["steps"]
        episode()
        steps = self.tally["steps"] - before
        seconds = {k: round(v, 1) for k, v in self.seconds.items()}
        print(f"\n{self.env.unwrapped}: {dict(self.tally)}, seconds {seconds}")
        print(f"slowest step {self.slowest[0]:.3f} s: {self.slowest[1]!r}")
        assert steps >= ACTIONS_PER_ENGINE
        assert self.tally["valid"] >= steps // 50  # the fuzz reaches the game, not just its parser


class _Fixed:
    """A stand-in for ``st.data()`` in an ``@example``: it draws its actions over and over."""

    def __init__(self, actions: Sequence[str]):
        self.actions, self.drawn = list(actions), 0

    def draw(self, strategy):
        self.drawn += 1
        return self.actions[(self.drawn - 1) % len(self.actions)]

    def __repr__(self) -> str:
        return f"_Fixed({self.actions!r})"


# ------------------------------------------------------------------ the engines


def words_of(*texts: str) -> list[str]:
    return sorted({w.strip(".,:;!?()'\"") for t in texts for w in t.split()} - {""})[:200]


@pytest.mark.textworld
def test_textworld_fuzzed_actions_are_observations(tmp_path_factory):
    pytest.importorskip("textworld")
    from tests.test_textworld import tw_make

    game = tw_make(tmp_path_factory.mktemp("textworld_fuzz"), 1234)
    env = branchgym.envs.make("branchgym/TextWorld-v0", game_file=game)

    def vocabulary(obs, info):
        commands = info["admissible_commands"]
        return commands, (), words_of(*commands, "go north south east west up down")

    try:
        Fuzzer(env, vocabulary).fuzz(TEXTWORLD_REGRESSIONS)
    finally:
        env.close()


# Crashed inside Jericho before the fix: a cut at 197 UTF-8 bytes inside a character
# (UnicodeDecodeError), and a lone surrogate (UnicodeEncodeError).
TEXTWORLD_REGRESSIONS = ["a" + "é" * 150, "ab" + "€" * 100, "look\ud800", "\udfff"]


@pytest.mark.scienceworld
def test_scienceworld_fuzzed_actions_are_observations():
    pytest.importorskip("scienceworld")
    # Lists of admissible commands cost ten times a step and plans a reset's worth: both off,
    # as for a policy that sees neither. The commands drawn are the simulator's action
    # templates filled with the objects it knows in the agent's room.
    env = branchgym.envs.make(
        "branchgym/ScienceWorld-v0", admissible_commands=False, expert_plan=False
    )
    sw = env.unwrapped._sw
    room: dict[str, Any] = {}

    def vocabulary(obs, info):
        if obs.startswith(("You move to", info["instruction"])):  # a new room or episode
            # The objects the parser knows here. (Before the first reset, the simulator
            # answers these with an error message, hence not at construction.)
            room["objects"] = sorted(sw.get_possible_objects())
            room.setdefault("templates", sorted(sw.get_possible_actions()))
        templates, objects = room["templates"], room["objects"]
        return templates, objects, words_of(*templates, *objects)

    try:
        Fuzzer(env, vocabulary, known=4, plan=0).fuzz(SCIENCEWORLD_REGRESSIONS)
    finally:
        env.close()


# Raised Py4JError from inside py4j before the fix (a lone surrogate cannot be sent as UTF-8).
SCIENCEWORLD_REGRESSIONS = ["\ud800", "look\udfffaround"]


@pytest.mark.alfworld
def test_alfworld_fuzzed_actions_are_observations(tmp_path_factory, monkeypatch):
    pytest.importorskip("textworld")
    if importlib.util.find_spec("alfworld") is None:
        pytest.skip("needs `pip install alfworld`")
    # alfworld creates $ALFWORLD_DATA when imported: keep it in tmp, as test_alfworld does.
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path_factory.getbasetemp() / "alfworld_data"))
    from tests.test_alfworld import write_game

    folder = tmp_path_factory.mktemp("alfworld_fuzz")
    env = branchgym.envs.make("branchgym/ALFWorld-v0", game_file=write_game(folder))
    argv = list(sys.argv)

    def vocabulary(obs, info):
        commands = info["admissible_commands"]
        return commands, (), words_of(*commands, obs)

    try:
        # A valid step costs 20-40 ms (the engine re-derives every admissible command and
        # re-plans), an invalid one next to nothing: about a third as many game commands.
        weights = {kind: 3 * n for kind, n in WEIGHTS.items()} | {"known": 1, "plan": 3}
        Fuzzer(env, vocabulary, **weights).fuzz()
    finally:
        env.close()
    assert sys.argv == argv  # Fast Downward's translator sets its own; the adapter undoes it
