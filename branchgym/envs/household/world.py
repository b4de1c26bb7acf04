"""The household world's rules: what exists, what each command does, and what it prints.

This module is pure Python with no gymnasium in it, so the environment, the expert, the
generator's solvability search and the tests share one set of rules. Texts follow what the real
ALFWorld engine prints (ALFWORLD.md in the project's shared notes, and ALFWorld's own grammar,
``alfred.twl2``, for the texts that file does not record): articles are always "a", lists use
", " and ", and", anything not admissible answers "Nothing happens.".

A ``World`` is the full, mutable state of one episode. It is deliberately small (a few dicts and
sets), so a snapshot is a cheap and exact copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NOTHING_HAPPENS = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
# v0's help text. Household-v0's episodes pin it: tokenizers are trained on texts that include
# it (``demos.env_corpus`` takes random admissible commands), so it stays the default.
HELP_TEXT = (
    "Available commands:\n  look\n  inventory\n  go to (receptacle)\n  open (receptacle)\n"
    "  close (receptacle)\n  take (object) from (receptacle)\n  move (object) to (receptacle)\n"
    "  examine (something)\n  use (object)\n  heat (object) with (receptacle)\n"
    "  clean (object) with (receptacle)\n  cool (object) with (receptacle)"
)
# The engine's, verbatim (``engine_texts``): alfred.twl2's help.feedback without its leading
# newline, which TextWorld strips. It lists "slice" too, though no ALFWorld task offers it.
ENGINE_HELP_TEXT = (
    "Available commands:\n"
    "  look:                             look around your current location\n"
    "  inventory:                        check your current inventory\n"
    "  go to (receptacle):               move to a receptacle\n"
    "  open (receptacle):                open a receptacle\n"
    "  close (receptacle):               close a receptacle\n"
    "  take (object) from (receptacle):  take an object from a receptacle\n"
    "  move (object) to (receptacle):  place an object in or on a receptacle\n"
    "  examine (something):              examine a receptacle or an object\n"
    "  use (object):                     use an object\n"
    "  heat (object) with (receptacle):  heat an object using a receptacle\n"
    "  clean (object) with (receptacle): clean an object using a receptacle\n"
    "  cool (object) with (receptacle):  cool an object using a receptacle\n"
    "  slice (object) with (object):     slice an object using a sharp object\n"
)
# state -> the receptacle type that produces it (ALFWorld's preconditions for clean/heat/cool)
STATION = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}
_VERB_OF_STATION = {recep: verb for verb, recep in STATION.items()}


@dataclass(frozen=True)
class Goal:
    """What must be true to win; ``goal_conditions`` spells it out per task type.

    ``recep_type`` is None for look-at-in-light goals, which name a ``lamp_type`` instead.
    ``count`` is 2 for pick-two goals (both objects in one receptacle, as in ALFRED).
    """

    task_type: str
    obj_type: str
    recep_type: str | None
    state: str | None = None  # "clean" | "heat" | "cool" | None
    text: str = ""
    count: int = 1
    lamp_type: str | None = None


@dataclass
class World:
    """Mutable episode state. Names are ALFWorld's ("cabinet 2", "apple 1")."""

    receptacles: list[str]
    openable: set[str]
    contents: dict[str, list[str]]  # receptacle -> objects in it, newest first
    can_contain: dict[str, frozenset[str]]  # receptacle type -> object types it accepts
    affordances: dict[str, frozenset[str]]  # object type -> {"clean", "heat", "cool", "toggle"}
    goal: Goal
    location: str | None = None
    held: str | None = None
    opened: set[str] = field(default_factory=set)
    cleaned: set[str] = field(default_factory=set)
    heated: set[str] = field(default_factory=set)
    cooled: set[str] = field(default_factory=set)
    toggled: set[str] = field(default_factory=set)  # lamps used at least once
    # The real engine's texts where v0's differ: list order (``listed``) and help.
    engine_texts: bool = False

    def snapshot(self) -> World:
        """An exact copy. The static parts (receptacles, tables, goal) are shared: no command
        changes them, and sharing them makes a snapshot a few microseconds."""
        world = self.snapshot_shallow()
        world.contents = {r: list(objs) for r, objs in self.contents.items()}
        return world

    def snapshot_shallow(self) -> World:
        """A copy whose receptacles' content lists are still shared with this world's (the
        solvability search copies only the few lists its commands can change)."""
        return World(
            self.receptacles,
            self.openable,
            dict(self.contents),
            self.can_contain,
            self.affordances,
            self.goal,
            self.location,
            self.held,
            set(self.opened),
            set(self.cleaned),
            set(self.heated),
            set(self.cooled),
            set(self.toggled),
            self.engine_texts,
        )


def type_of(name: str) -> str:
    """ "cabinet 12" -> "cabinet"."""
    return name.rsplit(" ", 1)[0]


def a_list(items: list[str]) -> str:
    """ALFWorld's list phrasing: 'a x', 'a x, and a y', 'a x, a y, and a z'."""
    if not items:
        return "nothing"
    parts = [f"a {item}" for item in items]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def listed(world: World, names: list[str]) -> list[str]:
    """``names`` in the order a text lists them.

    ALFWorld's engine lists entities by PDDL id, which comes out as by type, the highest number
    first ("a cabinet 2, a cabinet 1, a countertop 1"), whatever the order they were put in.
    The household's own order (the room's table order, contents newest first) stays the
    default because Household-v0's pinned episodes show it; ``engine_texts`` switches.
    """
    if not world.engine_texts:
        return names
    return sorted(names, key=lambda name: (type_of(name), -int(name.rsplit(" ", 1)[1])))


def is_accessible(world: World, recep: str) -> bool:
    return recep not in world.openable or recep in world.opened


def where_is(world: World, obj: str) -> str | None:
    for recep, objs in world.contents.items():
        if obj in objs:
            return recep
    return None


def is_lamp(world: World, obj: str) -> bool:
    """Lamps are fixtures, as in ALFWorld: they can be used, never picked up."""
    return "toggle" in world.affordances[type_of(obj)]


def describe_contents(world: World, recep: str) -> str:
    """What an agent standing at ``recep`` sees of it."""
    if recep in world.openable and recep not in world.opened:
        return f"The {recep} is closed."
    seen = a_list(listed(world, world.contents[recep]))
    if recep in world.openable:
        return f"The {recep} is open. In it, you see {seen}."
    return f"On the {recep}, you see {seen}."


def opening_text(world: World) -> str:
    return (
        f"{WELCOME}\n\nYou are in the middle of a room. Looking quickly around you, you see "
        f"{a_list(listed(world, world.receptacles))}.\n\nYour task is to: {world.goal.text}"
    )


def fits(world: World, obj: str, recep: str) -> bool:
    return type_of(obj) in world.can_contain[type_of(recep)]


def _object_commands(world: World, here: str) -> list[str]:
    lamps = [f"use {o}" for o in world.contents[here] if is_lamp(world, o)]
    obj = world.held
    if obj is None:
        if not is_accessible(world, here):
            return lamps
        takeable = [o for o in world.contents[here] if not is_lamp(world, o)]
        return lamps + [f"take {o} from {here}" for o in takeable]
    cmds = [*lamps, f"examine {obj}"]
    if is_accessible(world, here) and fits(world, obj, here):
        cmds.append(f"move {obj} to {here}")
    verb = _VERB_OF_STATION.get(type_of(here))
    if verb is not None and verb in world.affordances[type_of(obj)]:
        cmds.append(f"{verb} {obj} with {here}")  # admissible even when it is closed (ALFWorld)
    return cmds


def admissible_commands(world: World) -> list[str]:
    """Every command that changes or reports something, sorted and de-duplicated (ALFWorld)."""
    cmds = ["help", "inventory", "look"]
    cmds += [f"go to {r}" for r in world.receptacles if r != world.location]
    here = world.location
    if here is not None:
        cmds.append(f"examine {here}")
        if here in world.openable:
            cmds.append(f"close {here}" if here in world.opened else f"open {here}")
        cmds += _object_commands(world, here)
    return sorted(set(cmds))


def _look(world: World) -> str:
    if world.location is None:
        return "You are in the middle of a room. Looking quickly around you, you see nothing."
    return f"You are facing the {world.location}. Next to it, you see nothing."


def _inventory(world: World) -> str:
    held = world.held
    return f"You are carrying: a {held}." if held else "You are not carrying anything."


# ALFWorld's examineObject feedback, first match wins (this world has no sliced objects). A
# cooled object is "cold" there, not "cool": the grammar says so, whatever the goal text says.
_EXAMINE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("clean", "hot"), "This is a hot and clean {}."),
    (("clean", "cool"), "This is a cool and clean {}."),
    (("hot",), "This is a hot {}."),
    (("clean",), "This is a clean {}."),
    (("cool",), "This is a cold {}."),
)


def _examine(world: World, target: str) -> str:
    if target != world.held:
        return describe_contents(world, target)
    states = {
        name
        for name, done in (("clean", world.cleaned), ("hot", world.heated), ("cool", world.cooled))
        if target in done
    }
    for needed, text in _EXAMINE:
        if states.issuperset(needed):
            return text.format(target)
    return f"There's nothing special about {target}."


def _go(world: World, recep: str) -> str:
    world.location = recep
    return f"You arrive at {recep}. {describe_contents(world, recep)}"


def _open(world: World, recep: str) -> str:
    world.opened.add(recep)
    return f"You open the {recep}. {describe_contents(world, recep)}"


def _close(world: World, recep: str) -> str:
    world.opened.discard(recep)
    return f"You close the {recep}."


def _use(world: World, lamp: str) -> str:
    # ALFWorld's ToggleObject flips isOn but sets isToggled for good, and its feedback reads
    # isToggled after the action: so it always says "turn on", and the goal counts a lamp that
    # was used once. Tracking ``toggled`` alone reproduces both.
    world.toggled.add(lamp)
    return f"You turn on the {lamp}."


def _take(world: World, obj: str, recep: str) -> str:
    world.contents[recep].remove(obj)
    world.held = obj
    return f"You pick up the {obj} from the {recep}."


def _move(world: World, obj: str, recep: str) -> str:
    world.contents[recep].insert(0, obj)
    world.held = None
    return f"You move the {obj} to the {recep}."


def _clean(world: World, obj: str, recep: str) -> str:
    world.cleaned.add(obj)
    return f"You clean the {obj} using the {recep}."


def _heat(world: World, obj: str, recep: str) -> str:
    world.heated.add(obj)
    world.cooled.discard(obj)  # ALFWorld's HeatObject: isHot, not isCool
    return f"You heat the {obj} using the {recep}."


def _cool(world: World, obj: str, recep: str) -> str:
    world.cooled.add(obj)
    world.heated.discard(obj)  # ALFWorld's CoolObject: isCool, not isHot
    return f"You cool the {obj} using the {recep}."


# The grammar's tables: one place per command shape, no if/elif on strings.
_NO_ARG: dict[str, Callable[[World], str]] = {
    "look": _look,
    "inventory": _inventory,
    "help": lambda world: ENGINE_HELP_TEXT if world.engine_texts else HELP_TEXT,
}
_ONE_ARG: dict[str, Callable[[World, str], str]] = {
    "go to": _go,
    "open": _open,
    "close": _close,
    "examine": _examine,
    "use": _use,
}
_TWO_ARG: dict[str, tuple[str, Callable[[World, str, str], str]]] = {
    "take": (" from ", _take),
    "move": (" to ", _move),
    "clean": (" with ", _clean),
    "heat": (" with ", _heat),
    "cool": (" with ", _cool),
}


def apply_command(world: World, command: str) -> str:
    """Apply a command already known to be admissible and return what the world prints.

    ``execute`` checks admissibility first; the solvability search calls this directly on
    commands it took from ``admissible_commands``, so it does not compute them twice.
    """
    if command in _NO_ARG:
        return _NO_ARG[command](world)
    for verb, handler in _ONE_ARG.items():
        if command.startswith(verb + " "):
            return handler(world, command[len(verb) + 1 :])
    verb, rest = command.split(" ", 1)
    sep, handler2 = _TWO_ARG[verb]
    obj, recep = rest.split(sep, 1)
    return handler2(world, obj, recep)


def execute(world: World, command: str) -> tuple[str, bool]:
    """Apply one command. Returns (observation, valid). Invalid commands change nothing."""
    command = " ".join(command.strip().lower().split())
    if command not in admissible_commands(world):
        return NOTHING_HAPPENS, False
    return apply_command(world, command), True


def _in_targets(world: World) -> list[list[str]]:
    """For each receptacle of the goal's type, the goal-type objects in it.

    Names are "<type> <number>" and types have no spaces, so a prefix test is a type test; this
    runs for every state the solvability search visits, where ``type_of`` would dominate.
    """
    goal = world.goal
    recep_prefix, obj_prefix = f"{goal.recep_type} ", f"{goal.obj_type} "
    return [
        [o for o in objs if o.startswith(obj_prefix)]
        for recep, objs in world.contents.items()
        if recep.startswith(recep_prefix)
    ]


def _lamp_on_here(world: World) -> bool:
    here = world.location
    if here is None:
        return False
    lamp_type = world.goal.lamp_type
    return any(type_of(o) == lamp_type and o in world.toggled for o in world.contents[here])


def _state_conditions(world: World, done: set[str]) -> tuple[bool, bool, bool]:
    placed = [o for objs in _in_targets(world) for o in objs]
    goal_type = world.goal.obj_type
    return (
        bool(placed),
        any(type_of(o) == goal_type for o in done),
        any(o in done for o in placed),
    )


def goal_conditions(world: World) -> tuple[bool, ...]:
    """ALFRED's goal conditions (``goal_conditions_met`` in ALFWorld's ``env/tasks.py``).

    - pick_and_place_simple: (an object of the type is in a receptacle of the type,)
    - pick_two_obj_and_place: (one receptacle of the type holds >= 1 of them, ... >= 2)
    - pick_{clean,heat,cool}_then_place_in_recep: (one is in place, one has been
      cleaned/heated/cooled, one in place has been)
    - look_at_obj_in_light: (the agent holds one, a lamp of the type here has been turned on)
    The goal is reached when all hold; ``info["goal_condition_success_rate"]`` is their share.
    """
    goal = world.goal
    if goal.lamp_type is not None:
        held = world.held is not None and type_of(world.held) == goal.obj_type
        return (held, _lamp_on_here(world))
    if goal.count > 1:
        best = max((len(objs) for objs in _in_targets(world)), default=0)
        return tuple(best >= i for i in range(1, goal.count + 1))
    if goal.state is None:
        return (any(_in_targets(world)),)
    done = {"clean": world.cleaned, "heat": world.heated, "cool": world.cooled}[goal.state]
    return _state_conditions(world, done)


def goal_satisfied(world: World) -> bool:
    return all(goal_conditions(world))
