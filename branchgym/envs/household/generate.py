"""Seeded generation of household episodes: a room, its objects and one of ALFWorld's goals.

The seed fully determines the episode. A draw picks the room archetype and the task type so
that every requested task type is equally likely (heat and cool only exist in kitchens, so
kitchens are drawn more often when those are requested); the room's receptacles, the goal
object, target and template, and the objects follow. Objects spawn only in receptacle types where
ALFWorld puts them, so a policy can learn where to look first, but the exact receptacle is random
and often closed: without privileged knowledge it has to search. Every world passes a bounded
breadth-first search (``search.solvable``) before it is returned; a world that fails is drawn
again from the same random stream, so the seed still decides everything.

With ``rooms=("kitchen",)`` and v0's two task types the draws are v0's, one for one: old seeds
give the same episodes (``tests/test_household.py`` pins this).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

from branchgym.envs.household.search import solvable
from branchgym.envs.household.splits import fits
from branchgym.envs.household.tables import CAN_CONTAIN, OBJECTS, ROOMS, TASKS, RoomKind, supports
from branchgym.envs.household.world import STATION, Goal, World, goal_satisfied, type_of

MAX_DRAWS = 100  # draws before giving up; none of 5,000 default seeds needed a second one


@dataclass(frozen=True)
class GenConfig:
    """Knobs of the generator. Defaults: all six task types in all four room types, 8 to 16
    receptacles. v0's distribution: ``task_types=V0_TASK_TYPES, rooms=("kitchen",)``."""

    task_types: tuple[str, ...] = tuple(TASKS)
    distractors: tuple[int, int] = (2, 5)  # how many other object types to scatter (min, max)
    copies: tuple[int, int] = (1, 1)  # instances of each distractor type (min, max)
    max_receptacles: int = 16
    rooms: tuple[str, ...] = tuple(ROOMS)
    # Print the real engine's texts where v0's differ: lists in the engine's order and its help
    # text (``World.engine_texts``). Off by default: Household-v0's pinned episodes show v0's.
    engine_texts: bool = False
    # Keep held-out goal pairs and layouts out of train/seen and in unseen (``splits.py``).
    # Off by default: Household-v0's pinned episodes predate the splits.
    holdout: bool = False

    def __post_init__(self) -> None:
        unknown = [t for t in self.task_types if t not in TASKS]
        unknown += [r for r in self.rooms if r not in ROOMS]
        if not 1 <= self.copies[0] <= self.copies[1]:
            raise ValueError(f"copies must be 1 <= min <= max, not {self.copies}")
        if unknown or not self.task_types or not self.rooms:
            msg = f"unknown or empty: {unknown}; task types: {list(TASKS)}; rooms: {list(ROOMS)}"
            raise ValueError(msg)
        for task in self.task_types:
            if not any(supports(ROOMS[r], TASKS[task]) for r in self.rooms):
                raise ValueError(f"no room in {self.rooms} can host {task}")


V0_TASK_TYPES = ("pick_and_place_simple", "pick_clean_then_place_in_recep")


@functools.cache
def _weights(cfg: GenConfig) -> dict[str, dict[str, int]]:
    """room -> task -> integer weight, so that every task type is equally likely overall.

    A task hosted by k of the rooms gets weight L/k in each (L: the lcm of all the k), and a
    room is drawn with its total weight, then a task with its weight in that room.
    """
    hosts = {t: [r for r in cfg.rooms if supports(ROOMS[r], TASKS[t])] for t in cfg.task_types}
    lcm = math.lcm(*(len(h) for h in hosts.values()))
    table = {
        r: {t: lcm // len(hosts[t]) for t in cfg.task_types if r in hosts[t]} for r in cfg.rooms
    }
    return {r: w for r, w in table.items() if w}


def _expand(weights: dict[str, int]) -> list[str]:
    """Each key repeated by its weight over the weights' gcd: ``rng.choice`` of it draws exactly
    that distribution, and equal weights give the plain list (v0's ``rng.choice``)."""
    unit = math.gcd(*weights.values())
    return [key for key, w in weights.items() for _ in range(w // unit)]


def _room(rng: random.Random, table: dict[str, dict[str, int]]) -> str:
    if len(table) == 1:  # no draw: a single-room configuration consumes no randomness here
        return next(iter(table))
    return rng.choice(_expand({r: sum(w.values()) for r, w in table.items()}))


def _receptacles(rng: random.Random, room: RoomKind, max_receptacles: int) -> list[str]:
    names: list[str] = []
    for kind, spec in room.receptacles.items():
        names += [f"{kind} {i}" for i in range(1, rng.randint(*spec.count) + 1)]
    essential = [n for n in names if room.receptacles[type_of(n)].count[0] > 0 and n.endswith(" 1")]
    extra = [n for n in names if n not in essential]
    rng.shuffle(extra)
    keep = set(essential + extra[: max(0, max_receptacles - len(essential))])
    return [n for n in names if n in keep]


def _targets(room_name: str, task: str, obj: str, types_here: set[str]) -> list[str]:
    """Receptacle types the goal may name for ``obj``: present, accepting it, not the station,
    and not the only place here where ``obj`` can start (the task would start solved)."""
    station = STATION.get(TASKS[task].state or "")
    accepts = CAN_CONTAIN[room_name]
    starts = ROOMS[room_name].objects[obj] & types_here
    return sorted(
        t
        for t in ROOMS[room_name].targets
        if t in types_here and obj in accepts[t] and t != station and starts - {t}
    )


def _candidates(room_name: str, task: str, types_here: set[str]) -> list[str]:
    """Object types that can be the goal's: present, movable, with the affordance and a target."""
    room, kind = ROOMS[room_name], TASKS[task]
    return sorted(
        o
        for o, where in room.objects.items()
        if where & types_here
        and "toggle" not in OBJECTS[o].affordances
        and (kind.state is None or kind.state in OBJECTS[o].affordances)
        and (kind.lamp or _targets(room_name, task, o, types_here))
    )


def _goal(
    rng: random.Random, room_name: str, weights: dict[str, int], types_here: set[str]
) -> Goal:
    task = rng.choice(_expand(weights))
    kind = TASKS[task]
    obj = rng.choice(_candidates(room_name, task, types_here))
    if kind.lamp:
        lamp = rng.choice(sorted(ROOMS[room_name].lamps))
        text = rng.choice(kind.templates).format(obj=obj, lamp=lamp)
        return Goal(task, obj, None, text=text, lamp_type=lamp)
    recep = rng.choice(_targets(room_name, task, obj, types_here))
    text = rng.choice(kind.templates).format(obj=obj, recep=recep)
    return Goal(task, obj, recep, kind.state, text, count=kind.count)


def _place(
    rng: random.Random, world: World, spawn: frozenset[str], obj_type: str, avoid: str | None
) -> None:
    spots = [r for r in world.receptacles if type_of(r) in spawn and type_of(r) != avoid]
    if not spots:
        spots = [r for r in world.receptacles if type_of(r) in spawn]
    count = 1 + sum(type_of(o) == obj_type for objs in world.contents.values() for o in objs)
    world.contents[rng.choice(spots)].append(f"{obj_type} {count}")


def _draw(rng: random.Random, cfg: GenConfig, table: dict[str, dict[str, int]]) -> World:
    """One draw of a whole episode (v0's order of draws, with the room and lamps added)."""
    room_name = _room(rng, table)
    room = ROOMS[room_name]
    receps = _receptacles(rng, room, cfg.max_receptacles)
    types_here = {type_of(r) for r in receps}
    goal = _goal(rng, room_name, table[room_name], types_here)
    world = World(
        receptacles=receps,
        openable={r for r in receps if room.receptacles[type_of(r)].openable},
        contents={r: [] for r in receps},
        can_contain=dict(CAN_CONTAIN[room_name]),
        affordances={o: OBJECTS[o].affordances for o in room.objects},
        goal=goal,
        engine_texts=cfg.engine_texts,
    )
    # The goal objects never start where they have to go, or the task would be trivial.
    for _ in range(goal.count):
        _place(rng, world, room.objects[goal.obj_type], goal.obj_type, avoid=goal.recep_type)
    for lamp in room.lamps:
        _place(rng, world, room.objects[lamp], lamp, avoid=None)
    pool = sorted(
        o
        for o, where in room.objects.items()
        if o != goal.obj_type and o not in room.lamps and where & types_here
    )
    for obj_type in rng.sample(pool, min(len(pool), rng.randint(*cfg.distractors))):
        # One copy draws nothing, so the default keeps v0's random stream (and episodes).
        copies = rng.randint(*cfg.copies) if cfg.copies != (1, 1) else 1
        for _ in range(copies):
            _place(rng, world, room.objects[obj_type], obj_type, avoid=None)
    return world


def generate(seed: int, cfg: GenConfig | None = None, split: str = "train") -> World:
    """Build the episode for ``seed`` in ``split``. The same seed, config and split always give
    the same world; with ``cfg.holdout`` it also fits its split (``splits.fits``)."""
    cfg = cfg or GenConfig()
    rng = random.Random(seed)
    table = _weights(cfg)
    for _ in range(MAX_DRAWS):
        world = _draw(rng, cfg, table)
        if cfg.holdout and not fits(world, split):
            continue
        if not goal_satisfied(world) and solvable(world):
            return world
    raise RuntimeError(f"no solvable household task in {MAX_DRAWS} draws for seed {seed}: {cfg}")
