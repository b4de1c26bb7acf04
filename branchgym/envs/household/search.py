"""A bounded breadth-first search that proves a generated task solvable under the world's rules.

The generator calls ``solvable`` on every world it builds and draws again from the same seeded
stream when the answer is no, so no episode is ever impossible. The search expands states with
the world's own ``admissible_commands`` and ``apply_command``: whatever the rules allow is what
it explores, so a generator bug (an object no target accepts, a missing lamp or station) shows
up as an unsolvable task rather than as a task the expert happens to believe in.

It runs on every reset, so it prunes what cannot help: commands that change nothing (look,
examine, inventory, help), closing, walking anywhere but to the goal's objects and lamps, one
receptacle of the target type and one station, opening anything but those objects' receptacles
and the target (stations work closed), taking objects of other types, and putting a goal object
anywhere but in the target type. It tests the goal only after commands that can complete it.
A plan found this way is a real plan; the pruning can only make the search miss plans, which
would cost a redraw, never a broken episode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from branchgym.envs.household.world import (
    STATION,
    World,
    admissible_commands,
    apply_command,
    fits,
    goal_satisfied,
    type_of,
)

MAX_STATES = 5000  # far above what generated tasks need (tens of states); a bound, not a knob


@dataclass(frozen=True)
class _Focus:
    """What the goal needs, as commands and command prefixes (names are "<type> <n>")."""

    places: tuple[str, ...]  # receptacles worth visiting; nothing else ever changes
    useful: frozenset[str]  # "go to X" and "open X" for those worth it
    starts: tuple[str, ...]  # "take apple ", and "use desklamp " or "clean " if needed
    move_goal: str  # "move apple ": moving a goal object, useful only into the target type
    move: str | None  # " to fridge ": the target type; None for look goals
    finishers: tuple[str, ...]  # prefixes of the commands that can complete the goal


def _first(world: World, kind: str | None) -> list[str]:
    """The first receptacle of a type, as a list: empty when there is none (or no type)."""
    return [r for r in world.receptacles if type_of(r) == kind][:1]


def _drop(world: World) -> list[str]:
    """Somewhere to put down a wrong object in hand (only a mid-episode world has one)."""
    held = world.held
    if held is None or type_of(held) == world.goal.obj_type:
        return []
    return [r for r in world.receptacles if fits(world, held, r)][:1]


def _focus(world: World) -> _Focus:
    goal = world.goal
    wanted = {goal.obj_type, goal.lamp_type}
    holders = [r for r, objs in world.contents.items() if any(type_of(o) in wanted for o in objs)]
    target = _first(world, goal.recep_type)
    station = _first(world, STATION.get(goal.state or ""))
    here = [world.location] if world.location else []
    drop = _drop(world)
    places = tuple(dict.fromkeys(holders + target + station + here + drop))
    useful = {f"go to {r}" for r in places} | {f"open {r}" for r in holders + target + drop}
    starts = [f"take {goal.obj_type} "]
    starts += [f"use {goal.lamp_type} "] if goal.lamp_type else []
    starts += [f"{goal.state} "] if goal.state else []
    move_goal = f"move {goal.obj_type} "
    if goal.recep_type is None:  # look: holding it at a lit lamp, however that came about
        finishers = ("go ", "take ", "use ")
        return _Focus(places, frozenset(useful), tuple(starts), move_goal, None, finishers)
    move = f" to {goal.recep_type} "
    return _Focus(places, frozenset(useful), tuple(starts), move_goal, move, ("move ",))


def _useful(command: str, focus: _Focus) -> bool:
    if command in focus.useful:
        return True
    if command.startswith(focus.move_goal):
        return focus.move is not None and focus.move in command
    # putting down whatever else is in hand (only a mid-episode world starts that way)
    return command.startswith(("move ", *focus.starts))


def _child(world: World, places: tuple[str, ...]) -> World:
    """A copy for one expansion. Only the places' contents can change in the pruned search
    (the agent never stands anywhere else), so the other lists are shared, not copied."""
    child = world.snapshot_shallow()
    for recep in places:
        child.contents[recep] = list(child.contents[recep])
    return child


def _key(world: World, places: tuple[str, ...]) -> tuple:
    """The state, minus what the pruned search never changes (the other receptacles)."""
    return (
        world.location,
        world.held,
        tuple(r in world.opened for r in places),
        tuple(tuple(world.contents[r]) for r in places),
        frozenset(world.cleaned),
        frozenset(world.heated),
        frozenset(world.cooled),
        frozenset(world.toggled),
    )


def solvable(world: World, max_states: int = MAX_STATES) -> bool:
    """Whether some sequence of admissible commands reaches the goal (within ``max_states``)."""
    if goal_satisfied(world):
        return True
    focus = _focus(world)
    frontier = deque([world.snapshot()])
    seen = {_key(world, focus.places)}
    verdicts: dict[str, bool] = {}  # the same commands come back in every state: judge them once
    while frontier and len(seen) < max_states:
        state = frontier.popleft()
        for command in admissible_commands(state):
            if command not in verdicts:
                verdicts[command] = _useful(command, focus)
            if not verdicts[command]:
                continue
            child = _child(state, focus.places)
            apply_command(child, command)
            if command.startswith(focus.finishers) and goal_satisfied(child):
                return True
            key = _key(child, focus.places)
            if key not in seen:
                seen.add(key)
                frontier.append(child)
    return False
