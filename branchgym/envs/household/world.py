"""The household world's rules: what exists, what each command does, and what it prints.

This module is pure Python with no gymnasium in it, so the environment, the expert and the tests
share one set of rules. Texts follow what the real ALFWorld engine prints (see ALFWORLD.md in
the project's shared notes): articles are always "a", lists use ", " and ", and", anything not
admissible answers "Nothing happens.".

A ``World`` is the full, mutable state of one episode. It is deliberately small (a few dicts and
sets), so ``copy.deepcopy`` is a cheap and exact snapshot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

NOTHING_HAPPENS = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
HELP_TEXT = (
    "Available commands:\n  look\n  inventory\n  go to (receptacle)\n  open (receptacle)\n"
    "  close (receptacle)\n  take (object) from (receptacle)\n  move (object) to (receptacle)\n"
    "  examine (something)\n  use (object)\n  heat (object) with (receptacle)\n"
    "  clean (object) with (receptacle)\n  cool (object) with (receptacle)"
)


@dataclass
class World:
    """Mutable episode state. Names are ALFWorld's ("cabinet 2", "apple 1")."""

    receptacles: list[str]
    openable: set[str]
    contents: dict[str, list[str]]  # receptacle -> objects in it, in placement order
    can_contain: dict[str, set[str]]  # receptacle type -> object types it accepts
    affordances: dict[str, set[str]]  # object type -> {"clean", "heat", "cool"}
    goal: Goal
    location: str | None = None
    held: str | None = None
    opened: set[str] = field(default_factory=set)
    cleaned: set[str] = field(default_factory=set)
    heated: set[str] = field(default_factory=set)
    cooled: set[str] = field(default_factory=set)

    def snapshot(self) -> World:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class Goal:
    """What must be true to win: an object of ``obj_type`` (in ``state``) inside ``recep_type``."""

    task_type: str
    obj_type: str
    recep_type: str
    state: str | None = None  # "clean" | "heat" | "cool" | None
    text: str = ""


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


def is_accessible(world: World, recep: str) -> bool:
    return recep not in world.openable or recep in world.opened


def where_is(world: World, obj: str) -> str | None:
    for recep, objs in world.contents.items():
        if obj in objs:
            return recep
    return None


def describe_contents(world: World, recep: str) -> str:
    """What an agent standing at ``recep`` sees of it."""
    if recep in world.openable:
        if recep not in world.opened:
            return f"The {recep} is closed."
        return f"The {recep} is open. In it, you see {a_list(world.contents[recep])}."
    return f"On the {recep}, you see {a_list(world.contents[recep])}."


def opening_text(world: World) -> str:
    return (
        f"{WELCOME}\n\nYou are in the middle of a room. Looking quickly around you, you see "
        f"{a_list(world.receptacles)}.\n\nYour task is to: {world.goal.text}"
    )


def fits(world: World, obj: str, recep: str) -> bool:
    return type_of(obj) in world.can_contain[type_of(recep)]


def _object_commands(world: World, here: str) -> list[str]:
    obj = world.held
    if obj is None:
        if not is_accessible(world, here):
            return []
        return [f"take {o} from {here}" for o in world.contents[here]]
    cmds = [f"examine {obj}"]
    if is_accessible(world, here) and fits(world, obj, here):
        cmds.append(f"move {obj} to {here}")
    kind = type_of(here)
    afford = world.affordances[type_of(obj)]
    if kind == "sinkbasin" and "clean" in afford:
        cmds.append(f"clean {obj} with {here}")
    if kind == "microwave" and "heat" in afford:
        cmds.append(f"heat {obj} with {here}")
    if kind == "fridge" and "cool" in afford:
        cmds.append(f"cool {obj} with {here}")
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


def _examine(world: World, target: str) -> str:
    if target == world.held:
        for state, done in (
            ("clean", world.cleaned),
            ("hot", world.heated),
            ("cool", world.cooled),
        ):
            if target in done:
                return f"This is a {state} {target}."
        return f"There's nothing special about {target}."
    return describe_contents(world, target)


def _go(world: World, recep: str) -> str:
    world.location = recep
    return f"You arrive at {recep}. {describe_contents(world, recep)}"


def _open(world: World, recep: str) -> str:
    world.opened.add(recep)
    return f"You open the {recep}. {describe_contents(world, recep)}"


def _close(world: World, recep: str) -> str:
    world.opened.discard(recep)
    return f"You close the {recep}."


def _take(world: World, obj: str, recep: str) -> str:
    world.contents[recep].remove(obj)
    world.held = obj
    return f"You pick up the {obj} from the {recep}."


def _move(world: World, obj: str, recep: str) -> str:
    world.contents[recep].insert(0, obj)
    world.held = None
    return f"You move the {obj} to the {recep}."


def _transform(verb: str, done_attr: str):
    def apply(world: World, obj: str, recep: str) -> str:
        getattr(world, done_attr).add(obj)
        return f"You {verb} the {obj} using the {recep}."

    return apply


# verb -> (handler, number of arguments); the grammar's single table, no if/elif on strings.
_TWO_ARG = {
    "take": (" from ", _take),
    "move": (" to ", _move),
    "clean": (" with ", _transform("clean", "cleaned")),
    "heat": (" with ", _transform("heat", "heated")),
    "cool": (" with ", _transform("cool", "cooled")),
}
_ONE_ARG = {"go to": _go, "open": _open, "close": _close, "examine": _examine}


def execute(world: World, command: str) -> tuple[str, bool]:
    """Apply one command. Returns (observation, valid). Invalid commands change nothing."""
    command = " ".join(command.strip().lower().split())
    if command not in admissible_commands(world):
        return NOTHING_HAPPENS, False
    if command == "look":
        return _look(world), True
    if command == "inventory":
        held = world.held
        return (f"You are carrying: a {held}." if held else "You are not carrying anything."), True
    if command == "help":
        return HELP_TEXT, True
    for verb, handler in _ONE_ARG.items():
        if command.startswith(verb + " "):
            return handler(world, command[len(verb) + 1 :]), True
    verb, rest = command.split(" ", 1)
    sep, handler = _TWO_ARG[verb]
    obj, recep = rest.split(sep, 1)
    return handler(world, obj, recep), True


def goal_satisfied(world: World) -> bool:
    goal = world.goal
    done = {"clean": world.cleaned, "heat": world.heated, "cool": world.cooled}
    for recep, objs in world.contents.items():
        if type_of(recep) != goal.recep_type:
            continue
        for obj in objs:
            if type_of(obj) == goal.obj_type and (goal.state is None or obj in done[goal.state]):
                return True
    return False
