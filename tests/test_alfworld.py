"""ALFWorld-v0 on games written here from ALFWorld's shipped domain and grammar (marker
``alfworld``).

ALFWorld's own games must be downloaded, which this machine cannot do, so the happy path plays
ALFWORLD.md's kitchen (a clean apple goes into the fridge; the apple is in a closed cabinet) as
a hand-written PDDL problem in a ``game.tw-pddl`` file, and a fake ``ALFWORLD_DATA`` tree holds
copies of it. Needs ``pip install alfworld``; without it the module is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
import sys
from pathlib import Path

import pytest
from gymnasium.utils.env_checker import check_env

import branchgym.envs
from branchgym.envs.adapters.alfworld import ALFWorldDataMissing
from branchgym.trajectory import TaskRef

pytest.importorskip("textworld")
if importlib.util.find_spec("alfworld") is None:  # found without importing it: see below
    pytest.skip("needs `pip install alfworld`", allow_module_level=True)
pytestmark = pytest.mark.alfworld

ENV_ID = "branchgym/ALFWorld-v0"
# alfworld creates $ALFWORLD_DATA (else ~/.cache/alfworld) when imported; point it at tmp.
ALFWORLD_DIR = Path(importlib.util.find_spec("alfworld").submodule_search_locations[0])

PROBLEM = """
(define (problem branchgym_kitchen)
  (:domain alfred)
  (:objects
    agent1 - agent
    AppleType - otype
    CabinetType CounterTopType FridgeType SinkBasinType MicrowaveType - rtype
    Apple_bar_a1 - object
    Cabinet_bar_c1 CounterTop_bar_t1 Fridge_bar_f1 Sink_bar_s1_bar_SinkBasin - receptacle
    loc_start loc_cabinet loc_counter loc_fridge loc_sink - location
  )
  (:init
    (atLocation agent1 loc_start)
    (receptacleType Cabinet_bar_c1 CabinetType)
    (receptacleType CounterTop_bar_t1 CounterTopType)
    (receptacleType Fridge_bar_f1 FridgeType)
    (receptacleType Sink_bar_s1_bar_SinkBasin SinkBasinType)
    (receptacleAtLocation Cabinet_bar_c1 loc_cabinet)
    (receptacleAtLocation CounterTop_bar_t1 loc_counter)
    (receptacleAtLocation Fridge_bar_f1 loc_fridge)
    (receptacleAtLocation Sink_bar_s1_bar_SinkBasin loc_sink)
    (openable Cabinet_bar_c1)
    (openable Fridge_bar_f1)
    (objectType Apple_bar_a1 AppleType)
    (pickupable Apple_bar_a1)
    (cleanable Apple_bar_a1)
    (heatable Apple_bar_a1)
    (coolable Apple_bar_a1)
    (inReceptacle Apple_bar_a1 APPLE_IN)
    (objectAtLocation Apple_bar_a1 APPLE_AT)
    (canContain CabinetType AppleType)
    (canContain CounterTopType AppleType)
    (canContain FridgeType AppleType)
    (canContain SinkBasinType AppleType)
  )
  (:goal
    (exists (?r - receptacle)
      (exists (?o - object)
        (and (inReceptacle ?o ?r) (objectType ?o AppleType) (receptacleType ?r FridgeType)
             (isClean ?o))))))
"""
TASK = "put a clean apple in fridge"
TASK_TYPE = "pick_clean_then_place_in_recep"
# ALFWORLD.md's walkthrough: the engine's texts, step by step.
WALKTHROUGH = [
    ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed."),
    ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a apple 1."),
    ("take apple 1 from cabinet 1", "You pick up the apple 1 from the cabinet 1."),
    ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing."),
    ("clean apple 1 with sinkbasin 1", "You clean the apple 1 using the sinkbasin 1."),
    ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
    ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see nothing."),
    ("move apple 1 to fridge 1", "You move the apple 1 to the fridge 1."),
]


def write_game(folder: Path, on_counter: bool = False, solvable: bool = True) -> str:
    """A ``game.tw-pddl`` as ``alfworld-generate`` writes one: the shipped domain, the shipped
    grammar with the task text in place of UNKNOWN GOAL, and the problem."""
    recep, loc = (
        ("CounterTop_bar_t1", "loc_counter") if on_counter else ("Cabinet_bar_c1", "loc_cabinet")
    )
    data = {
        "pddl_domain": (ALFWORLD_DIR / "data" / "alfred.pddl").read_text(),
        "grammar": (ALFWORLD_DIR / "data" / "alfred.twl2")
        .read_text()
        .replace("UNKNOWN GOAL", TASK),
        "pddl_problem": PROBLEM.replace("APPLE_IN", recep).replace("APPLE_AT", loc),
        "solvable": solvable,
        "walkthrough": None,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "game.tw-pddl").write_text(json.dumps(data))
    # ALFWorld reads the task type from the trajectory record beside the game.
    (folder / "traj_data.json").write_text(json.dumps({"task_type": TASK_TYPE}))
    return str(folder / "game.tw-pddl")


@pytest.fixture(autouse=True)
def alfworld_data_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path_factory.getbasetemp() / "alfworld_data"))


@pytest.fixture(scope="module")
def game(tmp_path_factory) -> str:
    return write_game(tmp_path_factory.mktemp("alfworld_game"))


@pytest.fixture
def env(game):
    env = branchgym.envs.make(ENV_ID, game_file=game)
    yield env
    env.close()


# ------------------------------------------------------------------ no data: a clear error


def test_without_alfworld_data_construction_says_what_to_set(monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA")
    with pytest.raises(ALFWorldDataMissing) as exc:
        branchgym.envs.make(ENV_ID)
    message = str(exc.value)
    assert "ALFWORLD_DATA" in message and "alfworld-download" in message
    assert "game_file=" in message
    assert isinstance(exc.value, FileNotFoundError)


def test_a_data_folder_without_games_is_the_same_error(tmp_path):
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(ALFWorldDataMissing, match=r"no game\.tw-pddl under"):
        branchgym.envs.make(ENV_ID, data_dir=str(tmp_path))
    with pytest.raises(ALFWorldDataMissing, match="no ALFWorld game file at"):
        branchgym.envs.make(ENV_ID, game_file=str(tmp_path / "game.tw-pddl"))


# ------------------------------------------------------------------ one game file


def test_check_env(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_planner_expert_wins_with_alfworlds_texts(env):
    obs, info = env.reset(seed=0)
    assert obs == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly"
        " around you, you see a cabinet 1, a countertop 1, a fridge 1, and a sinkbasin 1."
        f"\n\nYour task is to: {TASK}."
    )
    assert info["instruction"] == f"{TASK}."
    assert info["expert_plan"] == [command for command, _ in WALKTHROUGH]
    for i, (command, text) in enumerate(WALKTHROUGH):
        assert info["expert_plan"][0] == command
        obs, reward, terminated, truncated, info = env.step(command)
        last = i == len(WALKTHROUGH) - 1
        assert (obs, info["valid_action"]) == (text, True)
        assert (reward, terminated, truncated, info["won"]) == (float(last), last, False, last)
    assert info["instruction"] == f"{TASK}."


@pytest.mark.parametrize(
    "command", ["go to countertop 2", "Go to cabinet 1", "", None, "\x00", "\ud800"]
)
def test_inadmissible_commands_are_nothing_happens(env, command):
    _, info = env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(command)
    assert (obs, reward, terminated, info["valid_action"]) == (
        "Nothing happens.",
        0.0,
        False,
        False,
    )


def test_the_adapter_answers_inadmissible_commands_as_the_engine_does(env):
    """The adapter keeps inadmissible commands from the engine, which would spend a whole step
    (re-deriving every admissible command, re-planning) to say "Nothing happens."."""
    env.reset(seed=0)
    env.step("go to cabinet 1")
    obs, _, _, _, info = env.step("open the cabinet")
    state, _, _ = env.unwrapped._engine.step("open the cabinet")  # the engine's own answer
    assert (obs, info["valid_action"]) == (state.feedback, False)
    assert info["admissible_commands"] == state.admissible_commands
    assert info["expert_plan"] == state["policy_commands"] and not info["won"]


def test_the_engine_leaves_sys_argv_alone(env, monkeypatch):
    # Fast Downward's translator sets sys.argv = ["translate.py", "domain", "task"].
    monkeypatch.setattr(sys, "argv", ["branchgym", "train"])
    env.reset(seed=0)
    env.step("go to cabinet 1")
    env.reset(seed=1)
    assert sys.argv == ["branchgym", "train"]


def _play(env, actions):
    out = []
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        out.append((obs, reward, terminated, info))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_snapshot_restore_replays_identically(game, env, seed):
    rng = random.Random(seed)
    _, info = env.reset(seed=seed)
    for _ in range(2):
        _, _, _, _, info = env.step(info["expert_plan"][0])
    snap = env.unwrapped.snapshot()
    actions = [rng.choice(info["admissible_commands"]) for _ in range(4)] + ["fly"]
    records = _play(env, actions)
    env.unwrapped.restore(snap)
    assert _play(env, actions) == records
    other = branchgym.envs.make(ENV_ID, game_file=game)
    other.reset(seed=99)
    other.unwrapped.restore(pickle.loads(pickle.dumps(snap)))
    assert _play(other, actions) == records
    other.close()


# ------------------------------------------------------------------ an ALFWORLD_DATA folder


def test_data_folder_uses_alfworlds_game_selection_per_split(tmp_path, monkeypatch):
    trials = tmp_path / "json_2.1.1"
    task = f"{TASK_TYPE}-Apple-None-Fridge-1"
    train = [
        write_game(trials / "train" / task / "trial_A"),
        write_game(trials / "train" / task / "trial_B", on_counter=True),
    ]
    seen = write_game(trials / "valid_seen" / task / "trial_C", on_counter=True)
    write_game(trials / "train" / task / "trial_D", solvable=False)  # ALFWorld skips these
    write_game(trials / "train" / "movable_recep" / "trial_E")  # and movable receptacles
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))

    env = branchgym.envs.make(ENV_ID)
    assert env.unwrapped.split_games("train") == tuple(sorted(train))
    for seed, expected in [(0, train[0]), (1, train[1]), (2, train[0])]:
        assert env.reset(seed=seed)[1]["game_file"] == expected
    _, info = env.reset(options={"task": TaskRef(ENV_ID, seed=5, split="seen")})
    assert info["game_file"] == seen
    with pytest.raises(ALFWorldDataMissing, match="valid_unseen"):
        env.reset(options={"task": TaskRef(ENV_ID, seed=0, split="unseen")})
    # Task type 1 (pick_and_place_simple) has no game here.
    with pytest.raises(ALFWorldDataMissing, match="task types"):
        branchgym.envs.make(ENV_ID, task_types=(1,)).reset(seed=0)
    env.close()
