"""The household world's data: room archetypes, object types and ALFWorld's six task types.

Generation (``generate.py``) reads these tables; the rules (``world.py``) never do, so a hand-built
world in a test needs none of them. The numbers follow ALFWorld's scenes (its ``gen/constants.py``:
which receptacle types hold which objects, which objects can be cleaned, heated, cooled or
toggled, which task types each room type supports). The kitchen is v0's kitchen, unchanged, so
that a kitchen-only configuration of the two v0 task types reproduces v0's episodes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from branchgym.envs.household.world import STATION


@dataclass(frozen=True)
class ReceptacleKind:
    """A receptacle type in one room type: whether it opens, and how many of it a room has."""

    openable: bool
    count: tuple[int, int]  # (min, max); min > 0 means every room of this type has one


@dataclass(frozen=True)
class ObjectKind:
    """What can be done to an object type: "clean", "heat", "cool", "toggle" (lamps)."""

    affordances: frozenset[str]


@dataclass(frozen=True)
class RoomKind:
    """A room archetype.

    ``objects`` maps each object type found in the room to the receptacle types it starts in,
    which are also the ones that accept it. ``accept_all`` receptacle types accept every object
    of the room and ``accept_by_affordance`` ones exactly the objects with an affordance: v0's
    kitchen rule (any kitchen object fits a cabinet; a sink basin takes what can be cleaned).
    ``lamps`` are the toggleable fixtures a look-at-in-light goal can name.
    """

    receptacles: dict[str, ReceptacleKind]  # in the order the opening text lists them
    objects: dict[str, frozenset[str]]
    targets: tuple[str, ...]  # receptacle types a goal may ask an object to go into
    accept_all: tuple[str, ...] = ()
    accept_by_affordance: tuple[tuple[str, str], ...] = ()
    lamps: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskKind:
    """One of ALFWorld's task types: its goal templates and what the goal asks for."""

    templates: tuple[str, ...]
    state: str | None = None  # "clean" | "heat" | "cool": the object must be in that state
    count: int = 1  # how many objects of the type must end up in one receptacle
    lamp: bool = False  # look at the object under a lamp instead of putting it somewhere


def _rk(openable: bool, lo: int, hi: int) -> ReceptacleKind:
    return ReceptacleKind(openable, (lo, hi))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _spawn(table: dict[str, str]) -> dict[str, frozenset[str]]:
    return {obj: frozenset(where.split()) for obj, where in table.items()}


def _obj(afford: str = "") -> ObjectKind:
    return ObjectKind(frozenset(afford.split()))


OBJECTS: dict[str, ObjectKind] = {
    # v0's kitchen objects, affordances unchanged
    "apple": _obj("clean heat cool"),
    "tomato": _obj("clean heat cool"),
    "potato": _obj("clean heat cool"),
    "lettuce": _obj("clean cool"),
    "egg": _obj("clean heat cool"),
    "bread": _obj("heat cool"),
    "mug": _obj("clean heat cool"),
    "cup": _obj("clean heat cool"),
    "bowl": _obj("clean cool"),
    "plate": _obj("clean cool"),
    "pan": _obj("clean cool"),
    "pot": _obj("clean cool"),
    "knife": _obj("clean"),
    "fork": _obj("clean"),
    "spoon": _obj("clean"),
    "spatula": _obj("clean"),
    "ladle": _obj("clean"),
    "saltshaker": _obj(),
    "peppershaker": _obj(),
    "dishsponge": _obj(),
    "soapbottle": _obj(),
    # living room, bedroom and bathroom objects (ALFWorld's Cleanable / Toggleable lists)
    **{o: _obj() for o in _words("alarmclock book box candle cd cellphone creditcard keychain")},
    **{o: _obj() for o in _words("laptop newspaper pen pencil pillow remotecontrol statue")},
    **{o: _obj() for o in _words("tissuebox vase watch wateringcan baseballbat basketball")},
    **{o: _obj() for o in _words("tennisracket spraybottle toiletpaper handtowel towel plunger")},
    "cloth": _obj("clean"),
    "soapbar": _obj("clean"),
    "desklamp": _obj("toggle"),
    "floorlamp": _obj("toggle"),
}

KITCHEN = RoomKind(
    receptacles={
        "cabinet": _rk(True, 2, 4),
        "drawer": _rk(True, 1, 3),
        "countertop": _rk(False, 1, 2),
        "diningtable": _rk(False, 0, 1),
        "shelf": _rk(False, 0, 2),
        "fridge": _rk(True, 1, 1),
        "microwave": _rk(True, 1, 1),
        "sinkbasin": _rk(False, 1, 1),
        "garbagecan": _rk(False, 1, 1),
        "stoveburner": _rk(False, 0, 2),
    },
    objects=_spawn(
        {
            "apple": "countertop diningtable fridge garbagecan",
            "tomato": "countertop diningtable fridge garbagecan",
            "potato": "countertop diningtable fridge sinkbasin",
            "lettuce": "countertop diningtable fridge",
            "egg": "countertop diningtable fridge garbagecan",
            "bread": "countertop diningtable cabinet",
            "mug": "cabinet countertop diningtable shelf sinkbasin",
            "cup": "cabinet countertop fridge shelf",
            "bowl": "cabinet countertop diningtable shelf fridge",
            "plate": "cabinet countertop diningtable shelf",
            "pan": "stoveburner cabinet countertop",
            "pot": "stoveburner cabinet countertop",
            "knife": "countertop diningtable drawer sinkbasin",
            "fork": "countertop diningtable drawer",
            "spoon": "countertop diningtable drawer sinkbasin",
            "spatula": "countertop diningtable drawer",
            "ladle": "countertop diningtable drawer",
            "saltshaker": "cabinet countertop diningtable shelf drawer",
            "peppershaker": "cabinet countertop diningtable shelf drawer",
            "dishsponge": "cabinet countertop drawer sinkbasin",
            "soapbottle": "cabinet countertop shelf",
        }
    ),
    targets=("cabinet", "countertop", "diningtable", "drawer", "fridge", "shelf"),
    accept_all=("cabinet", "countertop", "diningtable", "drawer", "fridge", "shelf"),
    accept_by_affordance=(("sinkbasin", "clean"), ("microwave", "heat")),
)

_SMALL = "desk dresser shelf sidetable"  # where small things sit in a bedroom
BEDROOM = RoomKind(
    receptacles={
        "bed": _rk(False, 1, 1),
        "desk": _rk(False, 1, 2),
        "sidetable": _rk(False, 0, 2),
        "dresser": _rk(False, 0, 1),
        "drawer": _rk(True, 2, 6),
        "shelf": _rk(False, 0, 6),
        "safe": _rk(True, 0, 1),
        "armchair": _rk(False, 0, 1),
        "laundryhamper": _rk(False, 0, 1),
        "garbagecan": _rk(False, 1, 1),
    },
    objects=_spawn(
        {
            "alarmclock": _SMALL,
            "book": f"bed drawer armchair {_SMALL}",
            "cd": f"drawer garbagecan safe {_SMALL}",
            "cellphone": f"bed drawer safe armchair {_SMALL}",
            "creditcard": f"drawer safe armchair {_SMALL}",
            "keychain": f"drawer safe armchair {_SMALL}",
            "laptop": "bed desk dresser sidetable armchair",
            "pen": f"drawer garbagecan {_SMALL}",
            "pencil": f"drawer garbagecan {_SMALL}",
            "pillow": "bed armchair",
            "mug": _SMALL,
            "bowl": _SMALL,
            "cloth": f"laundryhamper drawer garbagecan {_SMALL}",
            "baseballbat": "bed",
            "basketball": "bed desk dresser armchair",
            "tennisracket": "bed desk dresser sidetable",
            "watch": f"drawer safe {_SMALL}",
            "statue": f"safe {_SMALL}",
            "vase": f"safe {_SMALL}",
            "desklamp": "desk sidetable dresser",
        }
    ),
    targets=_words(
        "armchair bed desk drawer dresser garbagecan laundryhamper safe shelf sidetable"
    ),
    lamps=("desklamp",),
)

_SEATS = "sofa armchair coffeetable sidetable dresser"  # where things lie in a living room
LIVINGROOM = RoomKind(
    receptacles={
        "sofa": _rk(False, 1, 1),
        "armchair": _rk(False, 0, 2),
        "coffeetable": _rk(False, 1, 1),
        "sidetable": _rk(False, 1, 3),
        "tvstand": _rk(False, 0, 1),
        "dresser": _rk(False, 0, 1),
        "drawer": _rk(True, 0, 4),
        "cabinet": _rk(True, 1, 4),
        "shelf": _rk(False, 0, 6),
        "garbagecan": _rk(False, 1, 1),
    },
    objects=_spawn(
        {
            "remotecontrol": f"drawer shelf {_SEATS}",
            "newspaper": f"drawer shelf cabinet garbagecan {_SEATS}",
            "book": f"drawer shelf cabinet {_SEATS}",
            "box": f"shelf cabinet {_SEATS}",
            "cellphone": f"drawer shelf {_SEATS}",
            "creditcard": f"drawer shelf {_SEATS}",
            "keychain": f"drawer shelf {_SEATS}",
            "laptop": _SEATS,
            "pillow": "sofa armchair",
            "statue": "coffeetable sidetable dresser shelf",
            "vase": "coffeetable sidetable dresser shelf cabinet",
            "watch": "coffeetable sidetable drawer dresser shelf",
            "tissuebox": "coffeetable sidetable dresser shelf cabinet tvstand drawer garbagecan",
            "wateringcan": "coffeetable sidetable dresser shelf cabinet drawer",
            "candle": "coffeetable sidetable dresser shelf cabinet drawer",
            "plate": "coffeetable sidetable dresser shelf cabinet",
            "floorlamp": "sidetable",
            "desklamp": "sidetable dresser",
        }
    ),
    targets=_words(
        "armchair cabinet coffeetable drawer dresser garbagecan shelf sidetable sofa tvstand"
    ),
    lamps=("desklamp", "floorlamp"),
)

_BATH = "toilet countertop cabinet shelf drawer"  # where bathroom things are kept
BATHROOM = RoomKind(
    receptacles={
        "sinkbasin": _rk(False, 1, 2),
        "bathtubbasin": _rk(False, 0, 1),
        "toilet": _rk(False, 1, 1),
        "towelholder": _rk(False, 0, 1),
        "handtowelholder": _rk(False, 0, 1),
        "toiletpaperhanger": _rk(False, 0, 1),
        "countertop": _rk(False, 1, 1),
        "cabinet": _rk(True, 1, 4),
        "drawer": _rk(True, 0, 4),
        "shelf": _rk(False, 0, 2),
        "garbagecan": _rk(False, 1, 1),
    },
    objects=_spawn(
        {
            "soapbar": f"sinkbasin bathtubbasin garbagecan {_BATH}",
            "soapbottle": f"garbagecan {_BATH}",
            "spraybottle": f"garbagecan {_BATH}",
            "toiletpaper": f"toiletpaperhanger garbagecan {_BATH}",
            "cloth": f"sinkbasin bathtubbasin garbagecan {_BATH}",
            "handtowel": f"handtowelholder sinkbasin bathtubbasin garbagecan {_BATH}",
            "towel": "towelholder",
            "candle": _BATH,
            "tissuebox": f"garbagecan {_BATH}",
            "dishsponge": f"sinkbasin bathtubbasin garbagecan {_BATH}",
            "plunger": "cabinet",
        }
    ),
    targets=_words(
        "bathtubbasin cabinet countertop drawer garbagecan handtowelholder shelf toilet"
        " toiletpaperhanger towelholder"
    ),
)

ROOMS: dict[str, RoomKind] = {
    "kitchen": KITCHEN,
    "livingroom": LIVINGROOM,
    "bedroom": BEDROOM,
    "bathroom": BATHROOM,
}

# ALFWorld's goal templates (its six task types, in the order ALFWorld lists them).
TASKS: dict[str, TaskKind] = {
    "pick_and_place_simple": TaskKind(("put a {obj} in {recep}.", "put some {obj} on {recep}.")),
    "look_at_obj_in_light": TaskKind(
        ("look at {obj} under the {lamp}.", "examine the {obj} with the {lamp}."), lamp=True
    ),
    "pick_clean_then_place_in_recep": TaskKind(
        ("put a clean {obj} in {recep}.", "clean some {obj} and put it in {recep}."), "clean"
    ),
    "pick_heat_then_place_in_recep": TaskKind(
        ("put a hot {obj} in {recep}.", "heat some {obj} and put it in {recep}."), "heat"
    ),
    "pick_cool_then_place_in_recep": TaskKind(
        ("put a cool {obj} in {recep}.", "cool some {obj} and put it in {recep}."), "cool"
    ),
    "pick_two_obj_and_place": TaskKind(
        ("put two {obj} in {recep}.", "find two {obj} and put them in {recep}."), count=2
    ),
}


def can_contain(room: RoomKind) -> dict[str, frozenset[str]]:
    """Receptacle type -> the object types it accepts, in this room (lamps are never moved)."""
    movable = {
        o: where for o, where in room.objects.items() if "toggle" not in OBJECTS[o].affordances
    }
    table = {
        rtype: frozenset(
            o for o, where in movable.items() if rtype in where or rtype in room.accept_all
        )
        for rtype in room.receptacles
    }
    for rtype, affordance in room.accept_by_affordance:
        table[rtype] = frozenset(o for o in movable if affordance in OBJECTS[o].affordances)
    return table


def supports(room: RoomKind, task: TaskKind) -> bool:
    """Whether every room of this archetype can host the task: its station or lamp is there."""
    if task.lamp:
        return bool(room.lamps)
    if task.state is None:
        return True
    station = STATION[task.state]
    return station in room.receptacles and room.receptacles[station].count[0] > 0


CAN_CONTAIN: dict[str, dict[str, frozenset[str]]] = {
    name: can_contain(r) for name, r in ROOMS.items()
}
