"""Export a household episode as an ALFWorld game, to play it in the real TextWorld PDDL engine.

The household world (``world.py``) reimplements ALFWorld's text engine in pure Python; this
module is how its fidelity is measured. ``export_game`` turns a ``World`` at reset into the
``game.tw-pddl`` JSON that ``alfworld-generate`` writes: ALFWorld's shipped ``alfred.pddl``
domain, its shipped ``alfred.twl2`` grammar with the goal text in place of UNKNOWN GOAL, and a
PDDL problem written here. ``ALFWorldEnv(game_file=...)`` plays the file, and
``benchmarks/alfworld_fidelity.py`` steps both engines side by side along the household expert's
plan.

How the problem reproduces the household's names ("cabinet 2", "sinkbasin 1") in the engine,
which demangles PDDL ids (``alfworld.agents.utils.misc.Demangler``):

- an id is ``<Type>_bar_<key>``: the demangled name is the text before the first ``_bar_``,
  lower-cased by Fast Downward's parser, plus a number;
- numbers go by the ids' string order, the first id of a type getting the HIGHEST number, so
  "<type> n" gets the key ``999 - n`` (zero-padded): "cabinet 3" sorts first and is numbered 3;
- an id containing "basin" gets "basin" appended to its prefix, so a basin type is written as
  ALFRED writes it, ``Sink_bar_<key>_bar_SinkBasin`` ("sink" + "basin");
- the engine numbers a type 1..count, so numbers the episode skips ("drawer 4" beside "drawer 5")
  are declared too, at no location (``skipped_names``).

Each receptacle has its own location (receptacles sharing one merge into one place), the agent
starts at a location with none, and every object is both ``inReceptacle`` and
``objectAtLocation`` its receptacle's. The goals are ALFWorld's templates
(``alfworld/gen/goal_library.py``) for its six task types. The domain and grammar are read from
the installed ``alfworld`` package, so ``export_game`` needs it; ``problem_pddl`` does not.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from branchgym.envs.household.generate import GenConfig, generate
from branchgym.envs.household.world import World, is_lamp, type_of

MAX_INDEX = 999  # instance numbers up to this; the id key of "<type> n" is MAX_INDEX - n
AGENT, START = "agent1", "loc_start"
# The domain's own constants: its clean/heat/cool actions name these types, so they are
# declared even in a room without a sink, microwave or fridge.
DOMAIN_RTYPES = ("SinkBasinType", "MicrowaveType", "FridgeType")
_AFFORDANCE_FACTS = {"clean": "cleanable", "heat": "heatable", "cool": "coolable"}


def _names(text: str) -> list[str]:
    return text.split()


# ALFRED's spelling of every household type (ALFWorld's gen/constants.py OBJECTS list).
_ALFRED_NAMES = _names(
    "AlarmClock Apple ArmChair BaseballBat BasketBall BathtubBasin Bed Book Bowl Box Bread "
    "Cabinet Candle CD CellPhone Cloth CoffeeTable CounterTop CreditCard Cup Desk DeskLamp "
    "DiningTable DishSponge Drawer Dresser Egg FloorLamp Fork Fridge GarbageCan HandTowel "
    "HandTowelHolder KeyChain Knife Ladle Laptop LaundryHamper Lettuce Microwave Mug Newspaper "
    "Pan Pen Pencil PepperShaker Pillow Plate Plunger Pot Potato RemoteControl Safe SaltShaker "
    "Shelf SideTable SinkBasin SoapBar SoapBottle Sofa Spatula Spoon SprayBottle Statue "
    "StoveBurner TennisRacket TissueBox Toilet ToiletPaper ToiletPaperHanger Tomato Towel "
    "TowelHolder TVStand Vase Watch WateringCan"
)
ALFRED_NAME = {name.lower(): name for name in _ALFRED_NAMES}


def alfred_type(kind: str) -> str:
    """ "countertop" -> "CounterTopType", the PDDL constant of a household type."""
    return f"{ALFRED_NAME.get(kind, kind.capitalize())}Type"


def entity_id(name: str) -> str:
    """The PDDL id the engine demangles back to ``name`` ("sinkbasin 1" ->
    "Sink_bar_998_bar_SinkBasin"); see the module docstring for why it looks like this."""
    kind, number = type_of(name), int(name.rsplit(" ", 1)[1])
    if not 0 < number < MAX_INDEX:
        raise ValueError(f"{name!r}: instance numbers must be in 1..{MAX_INDEX - 1}")
    key = f"{MAX_INDEX - number:03d}"
    alfred = ALFRED_NAME.get(kind, kind.capitalize())
    if kind.endswith("basin"):
        return f"{alfred[: -len('basin')]}_bar_{key}_bar_{alfred}"
    return f"{alfred}_bar_{key}"


def _objects(world: World) -> list[str]:
    return [o for r in world.receptacles for o in world.contents[r]]


def _skipped(names: list[str]) -> list[str]:
    """The numbers ``names`` skip, per type: ["drawer 1", "drawer 3"] -> ["drawer 2"]."""
    top: dict[str, int] = {}
    for name in names:
        kind, number = type_of(name), int(name.rsplit(" ", 1)[1])
        top[kind] = max(top.get(kind, 0), number)
    every = {f"{kind} {n}" for kind, last in top.items() for n in range(1, last + 1)}
    return sorted(every - set(names))


def skipped_names(world: World) -> list[str]:
    """Receptacles and objects the episode's numbering skips ("drawer 4" when the generator's
    receptacle cap dropped it but kept "drawer 5"). The engine numbers a type 1..count, so the
    export declares these too, typed but nowhere: nothing lists them and nobody can reach them,
    yet "drawer 5" keeps its name."""
    return _skipped(world.receptacles) + _skipped(_objects(world))


def _declarations(world: World) -> str:
    receptacles = world.receptacles + _skipped(world.receptacles)
    objects = _objects(world) + _skipped(_objects(world))
    groups = {
        "agent": [AGENT],
        "otype": sorted({alfred_type(type_of(o)) for o in objects}),
        "rtype": sorted({alfred_type(type_of(r)) for r in receptacles} | set(DOMAIN_RTYPES)),
        "object": [entity_id(o) for o in objects],
        "receptacle": [entity_id(r) for r in receptacles],
        "location": [START] + [f"loc_{i}" for i in range(len(world.receptacles))],
    }
    return "\n    ".join(f"{' '.join(names)} - {kind}" for kind, names in groups.items())


def _receptacle_facts(world: World) -> list[str]:
    facts = [f"(atLocation {AGENT} {START})"]
    for i, recep in enumerate(world.receptacles):
        rid = entity_id(recep)
        facts += [
            f"(receptacleType {rid} {alfred_type(type_of(recep))})",
            f"(receptacleAtLocation {rid} loc_{i})",
        ]
        if recep in world.openable:
            facts.append(f"(openable {rid})")
    for recep in _skipped(world.receptacles):
        facts.append(f"(receptacleType {entity_id(recep)} {alfred_type(type_of(recep))})")
    return facts


def _object_facts(world: World) -> list[str]:
    facts = []
    for i, recep in enumerate(world.receptacles):
        for obj in world.contents[recep]:
            oid = entity_id(obj)
            facts += [
                f"(objectType {oid} {alfred_type(type_of(obj))})",
                f"(inReceptacle {oid} {entity_id(recep)})",
                f"(objectAtLocation {oid} loc_{i})",
            ]
            if is_lamp(world, obj):
                facts.append(f"(toggleable {oid})")
                continue
            facts.append(f"(pickupable {oid})")
            afford = world.affordances[type_of(obj)]
            facts += [f"({fact} {oid})" for a, fact in _AFFORDANCE_FACTS.items() if a in afford]
    for obj in _skipped(_objects(world)):
        facts.append(f"(objectType {entity_id(obj)} {alfred_type(type_of(obj))})")
    return facts


def _can_contain_facts(world: World) -> list[str]:
    """``canContain`` for the types present: what ``move`` offers, and what makes the goal
    reachable (without it the engine's planner finds no plan and loading fails)."""
    otypes = sorted({type_of(o) for o in _objects(world)})
    rtypes = sorted({type_of(r) for r in world.receptacles})
    return [
        f"(canContain {alfred_type(r)} {alfred_type(o)})"
        for r in rtypes
        for o in otypes
        if o in world.can_contain[r]
    ]


_GOAL_PLACE = """(exists (?r - receptacle) (exists (?o - object) (and
      (inReceptacle ?o ?r) (objectType ?o {obj}) (receptacleType ?r {recep}){state})))"""
_GOAL_TWO = """(exists (?r - receptacle) (exists (?o1 - object) (and
      (objectType ?o1 {obj}) (receptacleType ?r {recep}) (inReceptacle ?o1 ?r)
      (exists (?o2 - object) (and (not (= ?o1 ?o2)) (objectType ?o2 {obj})
        (inReceptacle ?o2 ?r))))))"""
_GOAL_LOOK = """(and
      (exists (?ot - object ?r - receptacle ?a - agent ?l - location) (and
        (objectType ?ot {lamp}) (toggleable ?ot) (isToggled ?ot) (receptacleAtLocation ?r ?l)
        (atLocation ?a ?l) (inReceptacle ?ot ?r)))
      (exists (?o - object ?a - agent) (and (objectType ?o {obj}) (holds ?a ?o))))"""
# goal state -> (the object's affordance fact, the fact the action sets)
_STATE_FACTS = {
    "clean": ("cleanable", "isClean"),
    "heat": ("heatable", "isHot"),
    "cool": ("coolable", "isCool"),
}


def goal_pddl(world: World) -> str:
    """ALFWorld's goal for the episode's task type (``goal_library.gdict``), as PDDL."""
    goal = world.goal
    obj = alfred_type(goal.obj_type)
    if goal.lamp_type is not None:
        return _GOAL_LOOK.format(obj=obj, lamp=alfred_type(goal.lamp_type))
    assert goal.recep_type is not None
    recep = alfred_type(goal.recep_type)
    if goal.count > 1:
        return _GOAL_TWO.format(obj=obj, recep=recep)
    state = ""
    if goal.state is not None:
        able, done = _STATE_FACTS[goal.state]
        state = f" ({able} ?o) ({done} ?o)"
    return _GOAL_PLACE.format(obj=obj, recep=recep, state=state)


def problem_pddl(world: World, name: str = "household") -> str:
    """The PDDL problem of ``world`` at reset, for ALFWorld's ``alfred`` domain."""
    done = world.opened | world.toggled | world.cleaned | world.heated | world.cooled
    if world.location or world.held or done:
        raise ValueError("export a world at reset: the problem starts from nothing done")
    facts = _receptacle_facts(world) + _object_facts(world) + _can_contain_facts(world)
    init = "\n    ".join(facts)
    return (
        f"(define (problem {name})\n  (:domain alfred)\n  (:objects\n    "
        f"{_declarations(world)}\n  )\n  (:init\n    {init}\n  )\n"
        f"  (:goal\n    {goal_pddl(world)})\n)\n"
    )


@functools.cache
def shipped_domain_and_grammar() -> tuple[str, str]:
    """ALFWorld's ``alfred.pddl`` and ``alfred.twl2``, from the installed package."""
    spec = importlib.util.find_spec("alfworld")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("exporting a game needs `pip install alfworld` (its domain)")
    data = Path(spec.submodule_search_locations[0]) / "data"
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


def export_game(world: World) -> dict[str, Any]:
    """The ``game.tw-pddl`` record of ``world``, as ``alfworld-generate`` writes one."""
    domain, grammar = shipped_domain_and_grammar()
    task = world.goal.text.removesuffix(".")  # the grammar adds the full stop
    return {
        "pddl_domain": domain,
        "grammar": grammar.replace("UNKNOWN GOAL", task),
        "pddl_problem": problem_pddl(world),
        "solvable": True,
        "walkthrough": None,
    }


def write_game(world: World, folder: str | Path) -> str:
    """Write ``folder/game.tw-pddl`` (and ALFWorld's ``traj_data.json`` beside it, where
    ALFWorld reads the task type); returns the game file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    game = folder / "game.tw-pddl"
    game.write_text(json.dumps(export_game(world)))
    (folder / "traj_data.json").write_text(json.dumps({"task_type": world.goal.task_type}))
    return str(game)


def export_episode(seed: int, folder: str | Path, cfg: GenConfig | None = None) -> str:
    """Generate the household episode of ``seed`` and write it as an ALFWorld game."""
    return write_game(generate(seed, cfg), folder)
