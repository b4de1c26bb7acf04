"""Hand-built household worlds and the helpers the household tests share.

The kitchen is ALFWORLD.md's game (a clean apple must go into the fridge); the others exercise
the heat / cool / use stations, the light goal and the two-object goal.
"""

from __future__ import annotations

import branchgym.envs
from branchgym.envs.household.tables import CAN_CONTAIN
from branchgym.envs.household.world import Goal, World, opening_text

ENV_ID = "branchgym/Household-v1"  # the full world; v0 is its two-type kitchen
ALWAYS = ["help", "inventory", "look"]


def make(**kwargs):
    return branchgym.envs.make(ENV_ID, **kwargs).unwrapped


def kitchen(apple_in: str = "cabinet 1") -> World:
    """ALFWORLD.md's game: a clean apple must go into the fridge; the apple is in a cabinet."""
    receps = ["cabinet 1", "countertop 1", "fridge 1", "sinkbasin 1"]
    contents: dict[str, list[str]] = {r: [] for r in receps}
    contents[apple_in].append("apple 1")
    return World(
        receptacles=receps,
        openable={"cabinet 1", "fridge 1"},
        contents=contents,
        can_contain=dict(CAN_CONTAIN["kitchen"]),
        affordances={"apple": frozenset({"clean", "heat", "cool"})},
        goal=Goal(
            "pick_clean_then_place_in_recep",
            "apple",
            "fridge",
            "clean",
            "put a clean apple in fridge.",
        ),
    )


def env_with(world: World):
    env = make()
    env.reset(seed=0)
    env.restore((world, opening_text(world)))  # a snapshot: the world and what was last seen
    return env


def others(here: str) -> list[str]:
    return [
        f"go to {r}" for r in ("cabinet 1", "countertop 1", "fridge 1", "sinkbasin 1") if r != here
    ]


def full_kitchen() -> World:
    """A kitchen with every station; an apple and a lettuce on the countertop."""
    receps = ["cabinet 1", "countertop 1", "fridge 1", "microwave 1", "sinkbasin 1"]
    contents: dict[str, list[str]] = {r: [] for r in receps}
    contents["countertop 1"] += ["apple 1", "lettuce 1"]
    return World(
        receptacles=receps,
        openable={"cabinet 1", "fridge 1", "microwave 1"},
        contents=contents,
        can_contain=dict(CAN_CONTAIN["kitchen"]),
        affordances={
            "apple": frozenset({"clean", "heat", "cool"}),
            "lettuce": frozenset({"clean", "cool"}),
        },
        goal=Goal(
            "pick_heat_then_place_in_recep",
            "apple",
            "cabinet",
            "heat",
            "put a hot apple in cabinet.",
        ),
    )


def bedroom() -> World:
    """look_at_obj_in_light: a book in a closed drawer, a desklamp on the desk."""
    receps = ["bed 1", "desk 1", "drawer 1", "shelf 1"]
    contents: dict[str, list[str]] = {r: [] for r in receps}
    contents["desk 1"].append("desklamp 1")
    contents["drawer 1"].append("book 1")
    contents["shelf 1"].append("pen 1")
    return World(
        receptacles=receps,
        openable={"drawer 1"},
        contents=contents,
        can_contain=dict(CAN_CONTAIN["bedroom"]),
        affordances={"book": frozenset(), "pen": frozenset(), "desklamp": frozenset({"toggle"})},
        goal=Goal(
            "look_at_obj_in_light",
            "book",
            None,
            text="look at book under the desklamp.",
            lamp_type="desklamp",
        ),
    )


def two_shelves() -> World:
    """pick_two_obj_and_place: two mugs on the countertop, two shelves."""
    receps = ["countertop 1", "shelf 1", "shelf 2"]
    contents: dict[str, list[str]] = {r: [] for r in receps}
    contents["countertop 1"] += ["mug 2", "mug 1"]
    return World(
        receptacles=receps,
        openable=set(),
        contents=contents,
        can_contain=dict(CAN_CONTAIN["kitchen"]),
        affordances={"mug": frozenset({"clean", "heat", "cool"})},
        goal=Goal("pick_two_obj_and_place", "mug", "shelf", text="put two mug in shelf.", count=2),
    )


def steps(env, *commands: str) -> list[tuple[str, dict]]:
    out = []
    for command in commands:
        obs, _, _, _, info = env.step(command)
        assert info["valid_action"], (command, obs)
        out.append((obs, info))
    return out
