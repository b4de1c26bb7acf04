"""Seeded generation of household episodes: a kitchen, its objects and a goal.

The seed fully determines the episode. Objects spawn only in receptacle types where ALFWorld
puts them (the ``spawn`` column), so a policy can learn where to look first, but the exact
receptacle is random and often closed: without privileged knowledge it has to search.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from branchgym.envs.household.world import Goal, World, type_of

# receptacle type -> (openable, how many of them a kitchen has: (min, max))
RECEPTACLES: dict[str, tuple[bool, tuple[int, int]]] = {
    "cabinet": (True, (2, 4)),
    "drawer": (True, (1, 3)),
    "countertop": (False, (1, 2)),
    "diningtable": (False, (0, 1)),
    "shelf": (False, (0, 2)),
    "fridge": (True, (1, 1)),
    "microwave": (True, (1, 1)),
    "sinkbasin": (False, (1, 1)),
    "garbagecan": (False, (1, 1)),
    "stoveburner": (False, (0, 2)),
}


@dataclass(frozen=True)
class ObjectKind:
    """An object type: where it spawns, where it may be put, what can be done to it."""

    spawn: frozenset[str]
    affordances: frozenset[str]


def _kind(spawn: str, afford: str = "") -> ObjectKind:
    return ObjectKind(frozenset(spawn.split()), frozenset(afford.split()))


OBJECTS: dict[str, ObjectKind] = {
    "apple": _kind("countertop diningtable fridge garbagecan", "clean heat cool"),
    "tomato": _kind("countertop diningtable fridge garbagecan", "clean heat cool"),
    "potato": _kind("countertop diningtable fridge sinkbasin", "clean heat cool"),
    "lettuce": _kind("countertop diningtable fridge", "clean cool"),
    "egg": _kind("countertop diningtable fridge garbagecan", "clean heat cool"),
    "bread": _kind("countertop diningtable cabinet", "heat cool"),
    "mug": _kind("cabinet countertop diningtable shelf sinkbasin", "clean heat cool"),
    "cup": _kind("cabinet countertop fridge shelf", "clean heat cool"),
    "bowl": _kind("cabinet countertop diningtable shelf fridge", "clean cool"),
    "plate": _kind("cabinet countertop diningtable shelf", "clean cool"),
    "pan": _kind("stoveburner cabinet countertop", "clean cool"),
    "pot": _kind("stoveburner cabinet countertop", "clean cool"),
    "knife": _kind("countertop diningtable drawer sinkbasin", "clean"),
    "fork": _kind("countertop diningtable drawer", "clean"),
    "spoon": _kind("countertop diningtable drawer sinkbasin", "clean"),
    "spatula": _kind("countertop diningtable drawer", "clean"),
    "ladle": _kind("countertop diningtable drawer", "clean"),
    "saltshaker": _kind("cabinet countertop diningtable shelf drawer"),
    "peppershaker": _kind("cabinet countertop diningtable shelf drawer"),
    "dishsponge": _kind("cabinet countertop drawer sinkbasin"),
    "soapbottle": _kind("cabinet countertop shelf"),
}

# Where each task type may ask an object to go (beyond where it can spawn).
PLACE_TARGETS = ("cabinet", "countertop", "diningtable", "drawer", "fridge", "shelf")

# ALFWorld's goal templates for the task types this world has.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick_and_place": ("put a {obj} in {recep}.", "put some {obj} on {recep}."),
    "pick_clean_then_place": (
        "put a clean {obj} in {recep}.",
        "clean some {obj} and put it in {recep}.",
    ),
}
TASK_STATE = {"pick_and_place": None, "pick_clean_then_place": "clean"}


@dataclass(frozen=True)
class GenConfig:
    """Knobs of the generator. Defaults give ALFWorld-like kitchens of 8 to 16 receptacles."""

    task_types: tuple[str, ...] = ("pick_and_place", "pick_clean_then_place")
    distractors: tuple[int, int] = (2, 5)
    max_receptacles: int = 16


def _receptacles(rng: random.Random, cfg: GenConfig) -> list[str]:
    names: list[str] = []
    for kind, (_, (lo, hi)) in RECEPTACLES.items():
        names += [f"{kind} {i}" for i in range(1, rng.randint(lo, hi) + 1)]
    essential = [n for n in names if RECEPTACLES[type_of(n)][1][0] > 0 and n.endswith(" 1")]
    extra = [n for n in names if n not in essential]
    rng.shuffle(extra)
    keep = set(essential + extra[: max(0, cfg.max_receptacles - len(essential))])
    return [n for n in names if n in keep]


def _can_contain() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {kind: set() for kind in RECEPTACLES}
    for obj, kind in OBJECTS.items():
        for recep in kind.spawn | set(PLACE_TARGETS):
            table[recep].add(obj)
    table["sinkbasin"] = {o for o, k in OBJECTS.items() if "clean" in k.affordances}
    table["microwave"] = {o for o, k in OBJECTS.items() if "heat" in k.affordances}
    return table


def _goal(rng: random.Random, cfg: GenConfig, types_here: set[str]) -> Goal:
    task_type = rng.choice(cfg.task_types)
    state = TASK_STATE[task_type]
    candidates = [
        o
        for o, k in OBJECTS.items()
        if (state is None or state in k.affordances) and k.spawn & types_here
    ]
    obj = rng.choice(sorted(candidates))
    targets = sorted((set(PLACE_TARGETS) & types_here) - {"sinkbasin"})
    recep = rng.choice(targets)
    text = rng.choice(TEMPLATES[task_type]).format(obj=obj, recep=recep)
    return Goal(task_type=task_type, obj_type=obj, recep_type=recep, state=state, text=text)


def _place(rng: random.Random, world: World, obj_type: str, avoid: str | None) -> None:
    spots = [
        r
        for r in world.receptacles
        if type_of(r) in OBJECTS[obj_type].spawn and type_of(r) != avoid
    ]
    if not spots:
        spots = [r for r in world.receptacles if type_of(r) in OBJECTS[obj_type].spawn]
    count = 1 + sum(type_of(o) == obj_type for objs in world.contents.values() for o in objs)
    world.contents[rng.choice(spots)].append(f"{obj_type} {count}")


def generate(seed: int, cfg: GenConfig | None = None) -> World:
    """Build the episode for ``seed``. The same seed and config always give the same world."""
    cfg = cfg or GenConfig()
    rng = random.Random(seed)
    receps = _receptacles(rng, cfg)
    types_here = {type_of(r) for r in receps}
    goal = _goal(rng, cfg, types_here)
    world = World(
        receptacles=receps,
        openable={r for r in receps if RECEPTACLES[type_of(r)][0]},
        contents={r: [] for r in receps},
        can_contain=_can_contain(),
        affordances={o: set(k.affordances) for o, k in OBJECTS.items()},
        goal=goal,
    )
    # The goal object never starts where it has to go, or the task would be trivial.
    _place(rng, world, goal.obj_type, avoid=goal.recep_type)
    pool = sorted(o for o, k in OBJECTS.items() if o != goal.obj_type and k.spawn & types_here)
    for obj_type in rng.sample(pool, rng.randint(*cfg.distractors)):
        _place(rng, world, obj_type, avoid=None)
    return world
