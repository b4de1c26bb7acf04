"""Hypothesis fuzzing: every environment's step() and the tool-call parser on arbitrary text.

Each branchgym environment takes 10,000 generated actions (500 episodes of 20): free text,
its own command grammar with random arguments, and tool tags around random text. Every action
must come back as an observation (a str), never as an exception. The real engines behind the
adapters (TextWorld, ScienceWorld, ALFWorld) take their 10,000 in ``test_fuzz_engines.py``.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import branchgym.envs
from branchgym.envs.searchqa.env import parse_call

pytestmark = pytest.mark.fuzz
EPISODES, STEPS = 500, 20
VERBS = [
    "look",
    "inventory",
    "go to",
    "open",
    "close",
    "take",
    "move",
    "examine",
    "use",
    "heat",
    "clean",
    "cool",
    "put",
]
WORDS = ["cabinet 1", "fridge 1", "from", "to", "with", "apple 1", "sinkbasin 1", "", "  "]

household_actions = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda v, a, b: " ".join(x for x in (v, a, b)),
        st.sampled_from(VERBS),
        st.sampled_from(WORDS) | st.text(max_size=12),
        st.sampled_from(WORDS),
    ),
)
tool_actions = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda t, body, close: f"<{t}>{body}</{close}>",
        st.sampled_from(["search", "answer", "python", "x", ""]),
        st.text(max_size=30),
        st.sampled_from(["search", "answer", "python", "x", ""]),
    ),
)


shop_actions = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda verb, arg: f"{verb}[{arg}]",
        st.sampled_from(["search", "click", "Search", "buy", ""]),
        st.sampled_from(["Buy Now", "Next >", "< Prev", "Back to Search", "red", "large"])
        | st.text(max_size=20),
    ),
)


def fuzz_env(env_id: str, actions, episodes: int = EPISODES, **kwargs) -> None:
    env = branchgym.envs.make(env_id, **kwargs)

    @settings(max_examples=episodes, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**31 - 1), script=st.lists(actions, min_size=STEPS, max_size=STEPS))
    def episode(seed, script):
        obs, _ = env.reset(seed=seed)
        assert isinstance(obs, str)
        for action in script:
            obs, reward, terminated, truncated, info = env.step(action)
            assert isinstance(obs, str) and isinstance(info["valid_action"], bool)
            assert 0.0 <= reward <= 1.0 and not truncated
            if terminated:
                obs, _ = env.reset(seed=seed)

    episode()


def test_household_step_never_raises():
    fuzz_env("branchgym/Household-v0", household_actions)


def test_searchqa_step_never_raises():
    fuzz_env("branchgym/SearchQA-v0", tool_actions)


def test_household_v1_step_never_raises():
    fuzz_env("branchgym/Household-v1", household_actions)


def test_pythontool_step_never_raises():
    fuzz_env("branchgym/PythonTool-v0", tool_actions)


def test_webshop_step_never_raises():
    fuzz_env("branchgym/WebShop-v0", shop_actions)


@settings(max_examples=3000, deadline=None)
@given(st.text() | tool_actions)
def test_tool_call_parser_is_total(text):
    parsed = parse_call(text)
    assert isinstance(parsed, str) or (
        parsed.tool in ("search", "answer")
        and parsed.argument.strip() == parsed.argument != ""
        and not re.search(r"</?(search|answer|result)>", parsed.argument)
    )
