"""Steps per second of the household world, ALFWorld's real engine and TextWorld, in one run.

    branchgym bench env-step        # episodes=16 household_repeats=100 tw_games=3; ~45 s

All three play along an expert's plan, in one process:

- ``household_steps_per_s``: Household-v1 (``HouseholdEnv``) on the very episodes the ALFWorld
  engine plays, each played ``household_repeats`` times for a stable clock. A household step
  includes what its ``info`` carries: the admissible commands and the expert's re-plan.
- ``alfworld_engine_steps_per_s``: the same episodes exported as ALFWorld games
  (``branchgym.envs.household.export``) and played in TextWorld's PDDL engine through
  ``ALFWorldEnv(game_file=..., expert_plan=False)`` along the household expert's commands. A
  step includes the admissible commands (ALFWorld's agents read them every turn), not the
  planner (``expert_plan=False``; ALFWorld's training uses its hand-coded expert).
- ``textworld_steps_per_s``: ``tw-make custom --world-size 5 --nb-objects 10 --quest-length 5``
  games played through ``branchgym/TextWorld-v0`` along its walkthrough (``info["expert_plan"]``,
  which TextWorld re-plans after every command: part of each step, as in the adapter).
- ``speedup``: household over the ALFWorld engine, on the same episodes. Goal: >= 500.

The episodes are ALFWorld's typical size (about 18 receptacles and 30 objects; ALFWORLD.md
measured the engine at 82 ms a step there): Household-v1 generated with ``max_receptacles=20``,
``distractors=(10, 14)`` object types of ``copies=(2, 3)`` instances each, and the first seeds
whose room has at least ``min_receptacles`` receptacles. Big rooms are mostly living rooms and
bedrooms, so look-at-in-light tasks are over-represented; ``sizes`` reports what was played.
Loading and resetting are timed apart from steps (``*_load_s``, ``*_reset_s``): the engine
pays about two seconds per episode for both, the household under a millisecond.

Measured on the 2-core machine (16 episodes: 17.75 receptacles and 31.1 objects on average, 23.4
admissible commands per engine step): household 30,340 steps/s (39,670 at Household-v1's default
size), ALFWorld's engine 20.3 steps/s (1.21 s to load, 0.60 s to reset), TextWorld 327 steps/s:
a speedup of 1,493 over the engine (1,980 in an earlier run of the same code: the shared machine
moves both sides by 10 to 20%). Every episode was won, in all three.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import branchgym.envs
from branchgym.envs.adapters.alfworld import ALFWorldEnv
from branchgym.envs.household.export import write_game
from branchgym.envs.household.generate import GenConfig, generate

HOUSEHOLD = "branchgym/Household-v1"
# ALFWorld-sized rooms: see the module docstring.
BIG = {"max_receptacles": 20, "distractors": (10, 14), "copies": (2, 3)}
MAX_STEPS = 60  # a guard: expert plans are about 10 to 25 commands
TW_MAKE = ["custom", "--world-size", "5", "--nb-objects", "10", "--quest-length", "5"]


def sized_seeds(episodes: int, min_receptacles: int) -> list[int]:
    """The first seeds whose ALFWorld-sized episode has at least ``min_receptacles``."""
    cfg, seeds, seed = GenConfig(**BIG), [], 0
    while len(seeds) < episodes:
        if len(generate(seed, cfg).receptacles) >= min_receptacles:
            seeds.append(seed)
        seed += 1
    return seeds


class Run(NamedTuple):
    """One timed episode."""

    reset_s: float
    step_s: float
    commands: list[str]  # what was played
    won: bool
    admissible: int  # admissible commands summed over the states stepped into


def play(env: Any, seed: int, commands: list[str] | None = None) -> Run:
    """Reset, then play ``commands`` (default: the env's own expert plan, re-read after every
    step) until the episode is won or the commands run out."""
    t0 = time.perf_counter()
    _, info = env.reset(seed=seed)
    t1 = time.perf_counter()
    played: list[str] = []
    admissible = 0
    while not info["won"] and len(played) < MAX_STEPS:
        todo = commands[len(played) :] if commands is not None else info["expert_plan"]
        if not todo:
            break
        played.append(todo[0])
        _, _, _, _, info = env.step(todo[0])
        admissible += len(info["admissible_commands"])
    return Run(t1 - t0, time.perf_counter() - t1, played, bool(info["won"]), admissible)


def _rate(runs: list[Run]) -> float:
    return sum(len(r.commands) for r in runs) / sum(r.step_s for r in runs)


def bench_household(seeds: list[int], repeats: int) -> tuple[dict[str, Any], dict[int, Run]]:
    """Household-v1 on the sized episodes (and, for reference, at its default size, on as
    many steps); also returns each sized episode's first run, whose commands the engine plays."""
    env = branchgym.envs.make(HOUSEHOLD, **BIG).unwrapped
    runs = {s: play(env, s) for s in seeds}
    timed = [play(env, s) for _ in range(repeats) for s in seeds]
    default = branchgym.envs.make(HOUSEHOLD).unwrapped
    default_runs = [play(default, s) for s in range(repeats * len(seeds))]
    result = {
        "household_steps_per_s": _rate(timed),
        "household_reset_s": statistics.fmean(r.reset_s for r in timed),
        "household_won": sum(r.won for r in runs.values()),
        "household_default_size_steps_per_s": _rate(default_runs),
    }
    return result, runs


def _sizes(seeds: list[int]) -> dict[str, Any]:
    worlds = [generate(s, GenConfig(**BIG)) for s in seeds]
    receptacles = [len(w.receptacles) for w in worlds]
    objects = [sum(len(objs) for objs in w.contents.values()) for w in worlds]
    return {
        "receptacles_mean": statistics.fmean(receptacles),
        "receptacles_range": [min(receptacles), max(receptacles)],
        "objects_mean": statistics.fmean(objects),
        "objects_range": [min(objects), max(objects)],
        "task_types": dict(Counter(w.goal.task_type for w in worlds)),
    }


def bench_alfworld(seeds: list[int], plans: dict[int, Run], folder: Path) -> dict[str, Any]:
    """The same episodes in ALFWorld's engine, along the household expert's commands."""
    loads, runs = [], []
    for seed in seeds:
        game = write_game(generate(seed, GenConfig(**BIG)), folder / f"alfworld{seed}")
        env = ALFWorldEnv(game_file=game, expert_plan=False)
        t0 = time.perf_counter()
        env.reset(seed=0)  # the first reset loads the game as well
        loads.append(time.perf_counter() - t0)
        runs.append(play(env, 0, plans[seed].commands))
        env.close()
    return {
        "alfworld_engine_steps_per_s": _rate(runs),
        "alfworld_engine_load_s": statistics.fmean(loads),
        "alfworld_engine_reset_s": statistics.fmean(r.reset_s for r in runs),
        "alfworld_engine_steps": sum(len(r.commands) for r in runs),
        "alfworld_engine_admissible_mean": sum(r.admissible for r in runs)
        / sum(len(r.commands) for r in runs),
        "alfworld_engine_won": sum(r.won for r in runs),
    }


def tw_make(folder: Path, seed: int) -> str:
    """One ``tw-make custom`` game (5 rooms, 10 objects, a 5-step quest)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("tw-make", path=path)
    if exe is None:
        raise FileNotFoundError("tw-make not found next to this Python: pip install textworld")
    game = folder / f"tw{seed}" / "game.z8"
    args = [exe, *TW_MAKE, "--seed", str(seed), "--output", str(game), "--silent"]
    subprocess.run(args, check=True, capture_output=True)
    return str(game)


def bench_textworld(games: int, folder: Path) -> dict[str, Any]:
    """TextWorld-v0 on ``tw-make`` games, along its walkthrough."""
    files = [tw_make(folder, 1000 + i) for i in range(games)]
    env = branchgym.envs.make("branchgym/TextWorld-v0", games=files).unwrapped
    runs = [play(env, seed) for seed in range(games)]  # the seed picks games[seed % games]
    env.close()
    return {
        "textworld_steps_per_s": _rate(runs),
        "textworld_reset_s": statistics.fmean(r.reset_s for r in runs),
        "textworld_steps": sum(len(r.commands) for r in runs),
        "textworld_won": sum(r.won for r in runs),
    }


def main(
    episodes: int = 16, household_repeats: int = 100, tw_games: int = 3, min_receptacles: int = 17
) -> dict:
    seeds = sized_seeds(episodes, min_receptacles)
    household, plans = bench_household(seeds, household_repeats)
    with tempfile.TemporaryDirectory(prefix="env_step_") as tmp:
        alfworld = bench_alfworld(seeds, plans, Path(tmp))
        textworld = bench_textworld(tw_games, Path(tmp))
    speedup = household["household_steps_per_s"] / alfworld["alfworld_engine_steps_per_s"]
    return {
        "benchmark": "env-step",
        "config": {
            "episodes": episodes,
            "household_repeats": household_repeats,
            "tw_games": tw_games,
            "min_receptacles": min_receptacles,
            "household": {"env": HOUSEHOLD, **BIG},
        },
        "sizes": _sizes(seeds),
        **household,
        **alfworld,
        **textworld,
        "speedup": speedup,
        "goals": {"speedup_at_least_500": speedup >= 500},
    }
