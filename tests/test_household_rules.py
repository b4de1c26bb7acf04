"""The household world's rules and ALFWorld's exact texts, on hand-built worlds.

The reference texts are what the real ALFWorld engine prints (the project's ALFWORLD.md walks one
game step by step); the walkthrough test below replays that very game in a hand-built world.
Texts ALFWORLD.md does not record (heat, cool, use, examining a hot or cooled object) come from
ALFWorld's own grammar, ``alfworld/data/alfred.twl2``; goal conditions from ALFWorld's
``env/tasks.py`` (``goal_conditions_met``).
"""

from __future__ import annotations

import random

import branchgym.envs
from branchgym.envs.household.generate import V0_TASK_TYPES
from branchgym.envs.household.tables import CAN_CONTAIN, TASKS
from branchgym.envs.household.world import (
    NOTHING_HAPPENS,
    Goal,
    World,
    a_list,
    admissible_commands,
    execute,
    goal_conditions,
)

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
    env.restore(world)
    return env


def others(here: str) -> list[str]:
    return [
        f"go to {r}" for r in ("cabinet 1", "countertop 1", "fridge 1", "sinkbasin 1") if r != here
    ]


# ------------------------------------------------------------------------------ ALFWorld texts


def test_a_list_phrasing():
    assert a_list(["apple 1"]) == "a apple 1"
    assert a_list(["apple 2", "apple 1"]) == "a apple 2, and a apple 1"
    assert a_list(["x", "y", "z"]) == "a x, a y, and a z"
    assert a_list([]) == "nothing"


def test_opening_text_format():
    env = make()
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        head = (
            "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. "
            "Looking quickly around you, you see "
        )
        assert obs.startswith(head)
        assert "\n\nYour task is to: " in obs
        assert obs.endswith("\n\nYour task is to: " + info["instruction"])
        assert env.render() is None


def test_opening_text_of_hand_built_world():
    from branchgym.envs.household.world import opening_text

    assert opening_text(kitchen()) == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly"
        " around you, you see a cabinet 1, a countertop 1, a fridge 1, and a sinkbasin 1."
        "\n\nYour task is to: put a clean apple in fridge."
    )


# ALFWORLD.md's table: command -> (observation, admissible besides help/inventory/look).
WALKTHROUGH = [
    (
        "go to cabinet 1",
        "You arrive at cabinet 1. The cabinet 1 is closed.",
        ["examine cabinet 1", *others("cabinet 1"), "open cabinet 1"],
    ),
    (
        "open cabinet 1",
        "You open the cabinet 1. The cabinet 1 is open. In it, you see a apple 1.",
        [
            "close cabinet 1",
            "examine cabinet 1",
            *others("cabinet 1"),
            "take apple 1 from cabinet 1",
        ],
    ),
    (
        "take apple 1 from cabinet 1",
        "You pick up the apple 1 from the cabinet 1.",
        [
            "close cabinet 1",
            "examine apple 1",
            "examine cabinet 1",
            *others("cabinet 1"),
            "move apple 1 to cabinet 1",
        ],
    ),
    (
        "go to sinkbasin 1",
        "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.",
        [
            "clean apple 1 with sinkbasin 1",
            "examine apple 1",
            "examine sinkbasin 1",
            *others("sinkbasin 1"),
            "move apple 1 to sinkbasin 1",
        ],
    ),
    (
        "clean apple 1 with sinkbasin 1",
        "You clean the apple 1 using the sinkbasin 1.",
        [
            "clean apple 1 with sinkbasin 1",
            "examine apple 1",
            "examine sinkbasin 1",
            *others("sinkbasin 1"),
            "move apple 1 to sinkbasin 1",
        ],
    ),
    (
        "go to fridge 1",
        "You arrive at fridge 1. The fridge 1 is closed.",
        [
            "cool apple 1 with fridge 1",
            "examine apple 1",
            "examine fridge 1",
            *others("fridge 1"),
            "open fridge 1",
        ],
    ),
    (
        "open fridge 1",
        "You open the fridge 1. The fridge 1 is open. In it, you see nothing.",
        [
            "close fridge 1",
            "cool apple 1 with fridge 1",
            "examine apple 1",
            "examine fridge 1",
            *others("fridge 1"),
            "move apple 1 to fridge 1",
        ],
    ),
    (
        "move apple 1 to fridge 1",
        "You move the apple 1 to the fridge 1.",
        ["close fridge 1", "examine fridge 1", *others("fridge 1"), "take apple 1 from fridge 1"],
    ),
]


def test_alfworld_walkthrough_texts_and_admissible_commands():
    env = env_with(kitchen())
    assert env.step("look")[4]["admissible_commands"] == sorted([*ALWAYS, *others("")])
    for i, (command, text, admissible) in enumerate(WALKTHROUGH):
        obs, reward, terminated, truncated, info = env.step(command)
        last = i == len(WALKTHROUGH) - 1
        assert obs == text, command
        assert info["admissible_commands"] == sorted([*ALWAYS, *admissible]), command
        assert info["valid_action"]
        assert (reward, terminated, truncated, info["won"]) == (float(last), last, False, last)


def test_admissible_commands_are_sorted_unique_and_always_include_basics():
    env = make()
    rng = random.Random(0)
    for seed in range(30):
        _, info = env.reset(seed=seed)
        for _ in range(15):
            cmds = info["admissible_commands"]
            assert cmds == sorted(set(cmds))
            assert set(ALWAYS) <= set(cmds)
            _, _, terminated, _, info = env.step(rng.choice(cmds))
            if terminated:
                break


def test_impossible_command_is_nothing_happens_and_changes_nothing():
    env = env_with(kitchen())
    env.step("go to countertop 1")
    for command in (
        "go to countertop 1",  # already here
        "open countertop 1",  # not openable
        "take apple 1 from cabinet 1",  # not here, and the cabinet is closed
        "close cabinet 1",
        "examine apple 1",  # not held
        "move apple 1 to countertop 1",
        "fly to the moon",
    ):
        before = env.snapshot()
        obs, reward, terminated, truncated, info = env.step(command)
        assert obs == NOTHING_HAPPENS == "Nothing happens."
        assert info["valid_action"] is False
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert env.snapshot() == before


def test_inventory_texts():
    env = env_with(kitchen(apple_in="countertop 1"))
    assert env.step("inventory")[0] == "You are not carrying anything."
    env.step("go to countertop 1")
    env.step("take apple 1 from countertop 1")
    assert env.step("inventory")[0] == "You are carrying: a apple 1."


def test_examine_only_while_held_and_reports_state():
    env = env_with(kitchen(apple_in="countertop 1"))
    _, _, _, _, info = env.step("go to countertop 1")
    assert "examine apple 1" not in info["admissible_commands"]
    assert env.step("examine apple 1")[0] == NOTHING_HAPPENS
    assert env.step("examine countertop 1")[0] == "On the countertop 1, you see a apple 1."
    _, _, _, _, info = env.step("take apple 1 from countertop 1")
    assert "examine apple 1" in info["admissible_commands"]
    assert env.step("examine apple 1")[0] == "There's nothing special about apple 1."
    env.step("go to sinkbasin 1")
    env.step("clean apple 1 with sinkbasin 1")
    assert env.step("examine apple 1")[0] == "This is a clean apple 1."
    _, _, _, _, info = env.step("move apple 1 to sinkbasin 1")
    assert "examine apple 1" not in info["admissible_commands"]


def test_look_texts():
    env = env_with(kitchen())
    assert env.step("look")[0] == (
        "You are in the middle of a room. Looking quickly around you, you see nothing."
    )
    env.step("go to countertop 1")
    assert env.step("look")[0] == "You are facing the countertop 1. Next to it, you see nothing."


def test_two_items_listed_newest_first_with_oxford_and():
    world = kitchen(apple_in="countertop 1")
    world.contents["countertop 1"] = ["apple 2", "apple 1"]
    env = env_with(world)
    assert env.step("go to countertop 1")[0] == (
        "You arrive at countertop 1. On the countertop 1, you see a apple 2, and a apple 1."
    )


def test_clean_stays_admissible_after_cleaning():
    world = kitchen(apple_in="sinkbasin 1")
    for command in ("go to sinkbasin 1", "take apple 1 from sinkbasin 1"):
        assert execute(world, command)[1]
    for _ in range(3):
        assert "clean apple 1 with sinkbasin 1" in admissible_commands(world)
        assert execute(world, "clean apple 1 with sinkbasin 1") == (
            "You clean the apple 1 using the sinkbasin 1.",
            True,
        )


def test_commands_are_case_and_space_insensitive():
    env = env_with(kitchen())
    obs, _, _, _, info = env.step("  Go   TO Cabinet 1 ")
    assert obs == "You arrive at cabinet 1. The cabinet 1 is closed."
    assert info["valid_action"]


# ------------------------------------------------------------------------------ hand-built worlds


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


# ------------------------------------------------------------------------------ heat / cool / use


def test_heat_text_and_preconditions():
    env = env_with(full_kitchen())
    _, info = steps(env, "go to microwave 1")[0]
    assert not [c for c in info["admissible_commands"] if c.startswith("heat")]  # hands empty
    steps(env, "go to countertop 1", "take apple 1 from countertop 1")
    assert env.step("heat apple 1 with countertop 1")[0] == NOTHING_HAPPENS  # not a microwave
    assert env.step("heat apple 1 with microwave 1")[0] == NOTHING_HAPPENS  # not there
    _, info = steps(env, "go to sinkbasin 1")[0]
    assert "heat apple 1 with sinkbasin 1" not in info["admissible_commands"]
    obs, info = steps(env, "go to microwave 1")[0]
    assert obs == "You arrive at microwave 1. The microwave 1 is closed."
    assert "heat apple 1 with microwave 1" in info["admissible_commands"]  # closed is fine
    obs, info = steps(env, "heat apple 1 with microwave 1")[0]
    assert obs == "You heat the apple 1 using the microwave 1."
    assert "heat apple 1 with microwave 1" in info["admissible_commands"]  # it can repeat
    assert env.step("examine apple 1")[0] == "This is a hot apple 1."


def test_lettuce_cannot_be_heated_but_can_be_cooled():
    env = env_with(full_kitchen())
    steps(env, "go to countertop 1", "take lettuce 1 from countertop 1", "go to microwave 1")
    assert env.step("heat lettuce 1 with microwave 1")[0] == NOTHING_HAPPENS
    _, info = steps(env, "go to fridge 1")[0]
    assert "cool lettuce 1 with fridge 1" in info["admissible_commands"]
    assert (
        env.step("cool lettuce 1 with fridge 1")[0] == "You cool the lettuce 1 using the fridge 1."
    )


def test_examine_texts_follow_alfworlds_grammar_for_every_state():
    # alfred.twl2, examineObject.feedback: a cooled object is "cold"; hot and cool exclude each
    # other (HeatObject deletes isCool, CoolObject deletes isHot); clean combines with either.
    env = env_with(full_kitchen())
    steps(env, "go to countertop 1", "take apple 1 from countertop 1", "go to fridge 1")
    assert env.step("examine apple 1")[0] == "There's nothing special about apple 1."
    steps(env, "cool apple 1 with fridge 1")
    assert env.step("examine apple 1")[0] == "This is a cold apple 1."
    steps(env, "go to microwave 1", "heat apple 1 with microwave 1")
    assert env.step("examine apple 1")[0] == "This is a hot apple 1."
    steps(env, "go to sinkbasin 1", "clean apple 1 with sinkbasin 1")
    assert env.step("examine apple 1")[0] == "This is a hot and clean apple 1."
    steps(env, "go to fridge 1", "cool apple 1 with fridge 1")
    assert env.step("examine apple 1")[0] == "This is a cool and clean apple 1."


def test_use_texts_and_preconditions():
    env = env_with(bedroom())
    assert env.step("use desklamp 1")[0] == NOTHING_HAPPENS  # not at the desk
    obs, info = steps(env, "go to desk 1")[0]
    assert obs == "You arrive at desk 1. On the desk 1, you see a desklamp 1."
    assert "use desklamp 1" in info["admissible_commands"]  # empty hands are fine
    assert "take desklamp 1 from desk 1" not in info["admissible_commands"]  # a fixture
    # ALFWorld's ToggleObject feedback reads isToggled, which stays true: always "turn on".
    for _ in range(2):
        obs, info = steps(env, "use desklamp 1")[0]
        assert obs == "You turn on the desklamp 1."
        assert "use desklamp 1" in info["admissible_commands"]
    assert env.step("examine desklamp 1")[0] == NOTHING_HAPPENS  # not held
    _, info = steps(env, "go to bed 1")[0]
    assert "use desklamp 1" not in info["admissible_commands"]


def test_look_at_in_light_is_won_holding_the_object_at_a_lamp_that_is_on():
    env = env_with(bedroom())
    _, info = steps(env, "go to desk 1", "use desklamp 1")[-1]
    assert (info["won"], info["goal_condition_success_rate"]) == (False, 0.5)  # lamp only
    _, info = steps(env, "go to drawer 1", "open drawer 1", "take book 1 from drawer 1")[-1]
    assert (info["won"], info["goal_condition_success_rate"]) == (False, 0.5)  # book only
    _, reward, terminated, _, info = env.step("go to desk 1")  # lamp already on
    assert (reward, terminated, info["won"], info["goal_condition_success_rate"]) == (
        1.0,
        True,
        True,
        1.0,
    )


def test_the_expert_turns_the_lamp_on_after_fetching_the_object():
    env = env_with(bedroom())
    _, info = steps(env, "go to shelf 1", "take pen 1 from shelf 1")[-1]
    assert info["expert_plan"] == [  # the wrong object goes to the first surface that takes it
        "go to desk 1",
        "move pen 1 to desk 1",
        "go to drawer 1",
        "open drawer 1",
        "take book 1 from drawer 1",
        "go to desk 1",
        "use desklamp 1",
    ]
    for command in info["expert_plan"]:
        _, reward, terminated, _, info = env.step(command)
    assert (reward, terminated, info["expert_plan"]) == (1.0, True, [])


# ------------------------------------------------------------------------------ goal conditions


def test_pick_two_needs_both_objects_in_one_receptacle():
    env = env_with(two_shelves())
    rates = [
        info["goal_condition_success_rate"]
        for _, info in steps(
            env,
            "go to countertop 1",
            "take mug 2 from countertop 1",
            "go to shelf 1",
            "move mug 2 to shelf 1",
            "go to countertop 1",
            "take mug 1 from countertop 1",
            "go to shelf 2",
            "move mug 1 to shelf 2",  # one per shelf: still half done
        )
    ]
    assert rates == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert env.step("look")[4]["expert_plan"] == [
        "take mug 1 from shelf 2",
        "go to shelf 1",
        "move mug 1 to shelf 1",
    ]
    _, info = steps(env, "take mug 1 from shelf 2", "go to shelf 1", "move mug 1 to shelf 1")[-1]
    assert (info["won"], info["goal_condition_success_rate"]) == (True, 1.0)


def test_state_goals_count_in_place_done_and_both():
    # ALFWorld's PickHeatThenPlaceInRecepTask: (one in place, one heated, one heated in place).
    world = full_kitchen()
    assert goal_conditions(world) == (False, False, False)
    for command in ("go to countertop 1", "take apple 1 from countertop 1", "go to cabinet 1"):
        execute(world, command)
    execute(world, "open cabinet 1")
    execute(world, "move apple 1 to cabinet 1")
    assert goal_conditions(world) == (True, False, False)  # in place, cold from the shop
    for command in ("take apple 1 from cabinet 1", "go to microwave 1"):
        execute(world, command)
    execute(world, "heat apple 1 with microwave 1")
    assert goal_conditions(world) == (False, True, False)
    execute(world, "go to fridge 1")
    execute(world, "cool apple 1 with fridge 1")  # cooling undoes the heat (ALFWorld's PDDL)
    assert goal_conditions(world) == (False, False, False)


def test_simple_goal_has_one_condition():
    world = two_shelves()
    world.goal = Goal("pick_and_place_simple", "mug", "shelf", text="put a mug in shelf.")
    assert goal_conditions(world) == (False,)
    for command in ("go to countertop 1", "take mug 1 from countertop 1", "go to shelf 2"):
        execute(world, command)
    execute(world, "move mug 1 to shelf 2")
    assert goal_conditions(world) == (True,)


def test_v0_is_the_two_type_kitchen_and_v1_the_full_world():
    v0 = branchgym.envs.make("branchgym/Household-v0").unwrapped.gen_config
    assert v0.task_types == V0_TASK_TYPES and v0.rooms == ("kitchen",)
    v1 = branchgym.envs.make("branchgym/Household-v1").unwrapped.gen_config
    assert set(v1.task_types) == set(TASKS) and len(v1.rooms) == 4 and v1.engine_texts


def test_unseen_holds_out_goal_pairs_and_layouts_that_train_never_shows():
    from branchgym.envs.household.splits import goal_pair, is_unseen, layout
    from branchgym.tasks.suite import task_refs

    env = branchgym.envs.make("branchgym/Household-v1").unwrapped

    def worlds(split, n=300):
        for task in task_refs("branchgym/Household-v1", split, n):
            env.reset(options={"task": task})
            yield env._world

    train = list(worlds("train")) + list(worlds("seen"))
    unseen = list(worlds("unseen"))
    assert not any(is_unseen(w) for w in train) and all(is_unseen(w) for w in unseen)
    train_pairs, train_layouts = {goal_pair(w) for w in train}, {layout(w) for w in train}
    novel = [w for w in unseen if goal_pair(w) not in train_pairs or layout(w) not in train_layouts]
    assert len(novel) == len(unseen)  # every unseen episode shows something train never did
    # and the bare-seed reset finds the split from the seed range
    env.reset(seed=task_refs("x", "unseen", 1)[0].seed)
    assert is_unseen(env._world)
