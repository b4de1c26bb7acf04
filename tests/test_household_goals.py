"""The household world's stations (heat, cool, use a lamp) and goal conditions, on hand-built
worlds. The texts come from ALFWorld's own grammar, ``alfworld/data/alfred.twl2``; goal
conditions from ALFWorld's ``env/tasks.py`` (``goal_conditions_met``).
"""

from __future__ import annotations

import branchgym.envs
from branchgym.envs.household.generate import V0_TASK_TYPES
from branchgym.envs.household.tables import TASKS
from branchgym.envs.household.world import (
    NOTHING_HAPPENS,
    Goal,
    execute,
    goal_conditions,
)
from tests.household_worlds import (
    bedroom,
    env_with,
    full_kitchen,
    steps,
    two_shelves,
)

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
