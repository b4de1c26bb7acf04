"""The privileged expert: a plan to the goal from any state, knowing where every object is.

Like ALFWorld's handcoded expert it reads the hidden state, so it never searches. That is why
imitating it is not enough: a policy trained on its demonstrations learns where objects tend to
be, but only reinforcement learning teaches it what to do when the first guess is wrong.
"""

from __future__ import annotations

from branchgym.envs.household.world import (
    World,
    goal_satisfied,
    is_accessible,
    type_of,
    where_is,
)

_STATE_RECEPTACLE = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}
_STATE_VERB = {"clean": "clean", "heat": "heat", "cool": "cool"}


def _visit(world_loc: str | None, recep: str, opened: bool, openable: bool) -> list[str]:
    cmds = [] if world_loc == recep else [f"go to {recep}"]
    if openable and not opened:
        cmds.append(f"open {recep}")
    return cmds


def _goal_object(world: World) -> str | None:
    """The object the plan will use: the held one if it fits, else the first one found."""
    goal = world.goal
    if world.held and type_of(world.held) == goal.obj_type:
        return world.held
    for objs in world.contents.values():
        for obj in objs:
            if type_of(obj) == goal.obj_type:
                return obj
    return None


def _done_set(world: World, state: str) -> set[str]:
    return {"clean": world.cleaned, "heat": world.heated, "cool": world.cooled}[state]


def expert_plan(world: World) -> list[str]:
    """Commands that reach the goal from ``world``'s current state (empty once it is reached)."""
    goal = world.goal
    obj = _goal_object(world)
    if obj is None or goal_satisfied(world):
        return []
    plan: list[str] = []
    loc = world.location
    if world.held != obj:
        if world.held is not None:  # put down whatever else is in hand on a countertop
            spot = _first_of_type(world, "countertop")
            plan += [] if loc == spot else [f"go to {spot}"]
            plan.append(f"move {world.held} to {spot}")
            loc = spot
        src = where_is(world, obj)
        assert src is not None
        plan += _visit(loc, src, is_accessible(world, src), src in world.openable)
        plan.append(f"take {obj} from {src}")
        loc = src
    if goal.state and obj not in _done_set(world, goal.state):
        station = _first_of_type(world, _STATE_RECEPTACLE[goal.state])
        plan += [] if loc == station else [f"go to {station}"]
        plan.append(f"{_STATE_VERB[goal.state]} {obj} with {station}")
        loc = station
    target = _first_of_type(world, goal.recep_type)
    plan += _visit(loc, target, is_accessible(world, target), target in world.openable)
    plan.append(f"move {obj} to {target}")
    return plan


def _first_of_type(world: World, kind: str) -> str:
    return next(r for r in world.receptacles if type_of(r) == kind)
