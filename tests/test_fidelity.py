"""Household episodes exported as ALFWorld games, played in the real engine (marker ``alfworld``).

The exporter (``branchgym.envs.household.export``) writes an episode at reset as a
``game.tw-pddl`` for ALFWorld's shipped domain and grammar; ``ALFWorldEnv(game_file=...)``
plays it in TextWorld's PDDL engine. For one episode of each of the six task types the two
engines must agree at every step of the household expert's play: the same admissible commands,
the same texts (with ``engine_texts=True``: the engine's list order and help), both won; and
the engine's own planner's plan must win in the household too. Then both benchmarks that use
the exporter run with tiny budgets. Needs ``pip install alfworld`` (no downloaded data).
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

import branchgym.envs
from branchgym.benchrun import run_benchmark
from branchgym.envs.household.export import (
    entity_id,
    export_game,
    problem_pddl,
    skipped_names,
    write_game,
)
from branchgym.envs.household.generate import GenConfig, generate
from branchgym.envs.household.tables import TASKS
from branchgym.envs.household.world import (
    ENGINE_HELP_TEXT,
    HELP_TEXT,
    Goal,
    World,
    execute,
    listed,
    opening_text,
)

pytest.importorskip("textworld")
pytest.importorskip("alfworld")
pytestmark = pytest.mark.alfworld

from alfworld.agents.utils.misc import Demangler  # noqa: E402  (after the skip)

from branchgym.envs.adapters.alfworld import ALFWorldEnv  # noqa: E402

HOUSEHOLD = "branchgym/Household-v1"


@pytest.fixture(autouse=True)
def alfworld_data_in_tmp(tmp_path_factory, monkeypatch):
    """ALFWorld creates $ALFWORLD_DATA when its environment module is imported: keep it in tmp."""
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path_factory.getbasetemp() / "alfworld_data"))


def first_seed(task_type: str) -> int:
    return next(s for s in range(1000) if generate(s).goal.task_type == task_type)


def drawers_world() -> World:
    """A bedroom cut down by hand: drawer 2 is missing, as the receptacle cap can leave it."""
    receps = ["drawer 1", "drawer 3", "desk 1"]
    contents: dict[str, list[str]] = {"drawer 1": ["pen 1"], "drawer 3": [], "desk 1": []}
    contents["desk 1"] += ["desklamp 1"]
    return World(
        receptacles=receps,
        openable={"drawer 1", "drawer 3"},
        contents=contents,
        can_contain={"drawer": frozenset({"pen"}), "desk": frozenset({"pen"})},
        affordances={"pen": frozenset(), "desklamp": frozenset({"toggle"})},
        goal=Goal("pick_and_place_simple", "pen", "desk", text="put a pen in desk."),
    )


# ------------------------------------------------------------------ ids and names


def test_entity_ids_are_chosen_so_the_demangler_gives_back_the_names():
    # "<type> n" gets key 999 - n: cabinet 2 -> 997 sorts before cabinet 1 -> 998, and the
    # demangler gives the first sorted id the highest number. Basins are written as ALFRED
    # writes sinks ("sink" + "basin" appended by the demangler).
    assert entity_id("cabinet 2") == "Cabinet_bar_997"
    assert entity_id("sinkbasin 1") == "Sink_bar_998_bar_SinkBasin"
    assert entity_id("bathtubbasin 1") == "Bathtub_bar_998_bar_BathtubBasin"
    assert entity_id("tvstand 1") == "TVStand_bar_998"
    names = ["cabinet 3", "cabinet 1", "cabinet 2", "sinkbasin 1", "sinkbasin 2", "cd 1"]
    infos = {n: SimpleNamespace(id=entity_id(n).lower()) for n in names}  # Fast Downward lowers
    demangler = Demangler(game_infos=infos)
    assert [demangler.demangle_alfred_name(i.id) for i in infos.values()] == names
    with pytest.raises(ValueError, match="instance numbers"):
        entity_id("cabinet 999")


def test_skipped_numbers_are_declared_placeless_and_the_rest_keep_their_names(tmp_path):
    world = drawers_world()
    assert skipped_names(world) == ["drawer 2"]
    world.contents["drawer 1"] = ["pen 2"]  # and an object numbered past a missing one
    assert skipped_names(world) == ["drawer 2", "pen 1"]
    problem = problem_pddl(world)
    assert "(receptacleType Drawer_bar_997 DrawerType)" in problem
    assert "(objectType Pen_bar_998 PenType)" in problem
    assert "Drawer_bar_997 loc_" not in problem  # no location: nothing lists it
    assert "Pen_bar_998 loc_" not in problem and "Pen_bar_998 Drawer" not in problem
    env = ALFWorldEnv(game_file=write_game(world, tmp_path), expert_plan=False)
    obs, info = env.reset(seed=0)
    assert "you see a desk 1, a drawer 3, and a drawer 1." in obs and "drawer 2" not in obs
    assert "go to drawer 3" in info["admissible_commands"]
    env.step("go to drawer 1")
    obs, _, _, _, info = env.step("open drawer 1")
    assert obs == "You open the drawer 1. The drawer 1 is open. In it, you see a pen 2."
    assert "take pen 2 from drawer 1" in info["admissible_commands"]
    env.close()


def test_problem_facts_for_a_hand_built_world():
    problem = problem_pddl(drawers_world())
    for fact in [
        "(atLocation agent1 loc_start)",
        "(receptacleAtLocation Drawer_bar_998 loc_0)",
        "(openable Drawer_bar_996)",
        "(inReceptacle Pen_bar_998 Drawer_bar_998)",
        "(objectAtLocation Pen_bar_998 loc_0)",
        "(pickupable Pen_bar_998)",
        "(toggleable DeskLamp_bar_998)",
        "(canContain DeskType PenType)",
        # the domain's clean/heat/cool actions name these: declared even where absent
        "DeskType DrawerType FridgeType MicrowaveType SinkBasinType - rtype",
    ]:
        assert fact in problem, fact
    assert "(pickupable DeskLamp_bar_998)" not in problem  # lamps are fixtures
    assert "(canContain DeskType DeskLampType)" not in problem


def test_only_a_world_at_reset_exports():
    world = drawers_world()
    execute(world, "go to drawer 1")
    with pytest.raises(ValueError, match="at reset"):
        export_game(world)


def test_engine_texts_list_by_type_highest_number_first_and_help_as_the_engine():
    world = drawers_world()
    names = ["cabinet 1", "countertop 1", "cabinet 2", "apple 1", "cabinet 10"]
    assert listed(world, names) == names  # the household's own order by default
    world.engine_texts = True
    expected = ["apple 1", "cabinet 10", "cabinet 2", "cabinet 1", "countertop 1"]
    assert listed(world, names) == expected
    assert "you see a desk 1, a drawer 3, and a drawer 1." in opening_text(world)
    assert execute(world, "help") == (ENGINE_HELP_TEXT, True)
    world.engine_texts = False
    assert execute(world, "help") == (HELP_TEXT, True)  # v0's, pinned by its tokenizers


def test_copies_places_several_instances_of_each_distractor_type():
    one, two = generate(5), generate(5, GenConfig(copies=(2, 2)))
    assert one.goal == two.goal and one.receptacles == two.receptacles
    objects = [o for objs in two.contents.values() for o in objs]
    goal_prefix = two.goal.obj_type + " "
    distractors = {o.rsplit(" ", 1)[0] for o in objects if not o.startswith(goal_prefix)}
    lamps = {t for t in distractors if "toggle" in two.affordances[t]}
    for kind in distractors - lamps:
        assert {o for o in objects if o.rsplit(" ", 1)[0] == kind} == {f"{kind} 1", f"{kind} 2"}
    with pytest.raises(ValueError, match="copies"):
        GenConfig(copies=(0, 1))


# ------------------------------------------------------------------ round trip per task type


def _same(household_step, engine_step) -> None:
    (h_obs, h_info), (e_obs, e_info) = household_step, engine_step
    assert h_obs == e_obs
    assert list(h_info["admissible_commands"]) == list(e_info["admissible_commands"])


@pytest.mark.parametrize("task_type", list(TASKS))
def test_expert_play_is_identical_in_the_real_engine(task_type, tmp_path):
    seed = first_seed(task_type)
    household = branchgym.envs.make(HOUSEHOLD, engine_texts=True).unwrapped
    h_obs, h_info = household.reset(seed=seed)
    game = write_game(household.world, tmp_path)
    engine = ALFWorldEnv(game_file=game, expert_plan=True)
    e_obs, e_info = engine.reset(seed=0)
    _same((h_obs, h_info), (e_obs, e_info))
    planner_plan = list(e_info["expert_plan"])  # the engine's own planner, from reset
    assert planner_plan, "the engine found no plan: the exported goal is unreachable"
    while not h_info["won"]:
        command = h_info["expert_plan"][0]
        h_obs, _, _, _, h_info = household.step(command)
        e_obs, _, _, _, e_info = engine.step(command)
        _same((h_obs, h_info), (e_obs, e_info))
    assert e_info["won"]
    engine.close()
    # ... and the planner's plan wins in the household as well.
    household.reset(seed=seed)
    for command in planner_plan:
        _, _, terminated, _, info = household.step(command)
        assert info["valid_action"], command
    assert terminated


@pytest.mark.parametrize("seed", [2, 7])
def test_random_walks_are_identical_in_the_real_engine(seed, tmp_path):
    """Off the expert's path too: closing, examining, help, inventory, look, and commands that
    are not admissible ("Nothing happens." in both)."""
    rng = random.Random(seed)
    household = branchgym.envs.make(HOUSEHOLD, engine_texts=True).unwrapped
    h_step = household.reset(seed=seed)
    engine = ALFWorldEnv(game_file=write_game(household.world, tmp_path), expert_plan=False)
    _same(h_step, engine.reset(seed=0))
    first = ["help", "look", "inventory"]
    for i in range(30):
        choices = [*h_step[1]["admissible_commands"], "examine apple 9", "go to bed 9"]
        command = first[i] if i < len(first) else rng.choice(choices)
        h_obs, _, _, _, h_info = household.step(command)
        e_obs, _, _, _, e_info = engine.step(command)
        _same((h_obs, h_info), (e_obs, e_info))
        assert (h_info["won"], h_info["valid_action"]) == (e_info["won"], e_info["valid_action"])
        h_step = (h_obs, h_info)
    engine.close()


def test_export_reads_the_goal_text_into_the_grammar(tmp_path):
    world = generate(first_seed("pick_two_obj_and_place"))
    game = export_game(world)
    assert f"Your task is to: {world.goal.text}" in game["grammar"]
    assert world.goal.text.endswith(".") and "UNKNOWN GOAL" not in game["grammar"]
    assert (Path(write_game(world, tmp_path)).parent / "traj_data.json").is_file()


# ------------------------------------------------------------------ the benchmarks, tiny


def test_alfworld_fidelity_benchmark_smoke():
    result = run_benchmark("alfworld-fidelity", ["episodes=6"])
    assert result["episodes"] == 6 and set(result["task_types"]) == set(TASKS)
    for key in ("admissible_match_rate", "both_won_rate", "observation_match_rate"):
        assert 0.0 <= result[key] <= 1.0
    assert result["admissible_match_rate"] == result["both_won_rate"] == 1.0
    assert result["observation_match_rate_engine_texts"] == 1.0
    # Household-v1's own list order is the one remaining difference.
    assert set(result["mismatches"]) <= {"opening_list_order", "contents_list_order"}
    assert all(m["example"]["household"] for m in result["mismatches"].values())


def test_env_step_benchmark_smoke():
    result = run_benchmark("env-step", ["episodes=1", "household_repeats=3", "tw_games=1"])
    for key in ("household_steps_per_s", "alfworld_engine_steps_per_s", "textworld_steps_per_s"):
        assert result[key] > 0
    expected = result["household_steps_per_s"] / result["alfworld_engine_steps_per_s"]
    assert result["speedup"] == pytest.approx(expected)
    assert result["sizes"]["receptacles_mean"] >= 17
    assert result["household_won"] == result["alfworld_engine_won"] == 1
