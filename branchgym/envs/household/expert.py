"""The privileged expert: a plan to the goal from any state, knowing where every object is.

Like ALFWorld's handcoded expert it reads the hidden state, so it never searches. That is why
imitating it is not enough: a policy trained on its demonstrations learns where objects tend to
be, but only reinforcement learning teaches it what to do when the first guess is wrong.

The plan is recomputed from the current state after every step (``info["expert_plan"]``), so it
also recovers from detours: it first puts down whatever wrong object is in hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from branchgym.envs.household.world import (
    STATION,
    World,
    fits,
    goal_satisfied,
    type_of,
    where_is,
)


@dataclass
class _Plan:
    """The commands so far and where they leave the agent (location, opened, hand)."""

    world: World
    loc: str | None
    opened: set[str]
    held: str | None
    cmds: list[str] = field(default_factory=list)

    def go(self, recep: str) -> None:
        if self.loc != recep:
            self.cmds.append(f"go to {recep}")
            self.loc = recep

    def visit(self, recep: str) -> None:
        """Go to ``recep`` and open it if it is closed."""
        self.go(recep)
        if recep in self.world.openable and recep not in self.opened:
            self.cmds.append(f"open {recep}")
            self.opened.add(recep)

    def fetch(self, obj: str) -> None:
        """Have ``obj`` in hand, putting down whatever else is there first."""
        if self.held == obj:
            return
        if self.held is not None:
            spot = _drop_spot(self.world, self.held)
            self.visit(spot)
            self.cmds.append(f"move {self.held} to {spot}")
        src = where_is(self.world, obj)
        assert src is not None, obj
        self.visit(src)
        self.cmds.append(f"take {obj} from {src}")
        self.held = obj

    def put(self, target: str) -> None:
        self.visit(target)
        self.cmds.append(f"move {self.held} to {target}")
        self.held = None


def _drop_spot(world: World, obj: str) -> str:
    """Where to put down a wrong object: the first open surface that takes it (v0: countertop)."""
    takes = [r for r in world.receptacles if fits(world, obj, r)]
    return next((r for r in takes if r not in world.openable), takes[0])


def _first_of_type(world: World, kind: str) -> str:
    return next(r for r in world.receptacles if type_of(r) == kind)


def _goal_objects(world: World, skip: str | None = None) -> list[str]:
    """Objects of the goal's type, the held one first, then in receptacle order."""
    prefix = f"{world.goal.obj_type} "  # names are "<type> <n>": a prefix test is a type test
    held = [world.held] if world.held and world.held.startswith(prefix) else []
    placed = [
        o
        for recep, objs in world.contents.items()
        if recep != skip
        for o in objs
        if o.startswith(prefix)
    ]
    return held + placed


def _plan_place(world: World, plan: _Plan) -> None:
    """One object into the first receptacle of the type, cleaned/heated/cooled on the way."""
    goal = world.goal
    obj = _goal_objects(world)[0]
    plan.fetch(obj)
    done = {"clean": world.cleaned, "heat": world.heated, "cool": world.cooled}
    if goal.state and obj not in done[goal.state]:
        station = _first_of_type(world, STATION[goal.state])
        plan.go(station)
        plan.cmds.append(f"{goal.state} {obj} with {station}")
    assert goal.recep_type is not None
    plan.put(_first_of_type(world, goal.recep_type))


def _plan_two(world: World, plan: _Plan) -> None:
    """Fill the receptacle of the type that already holds the most of them."""
    goal = world.goal
    targets = [r for r in world.receptacles if type_of(r) == goal.recep_type]
    have = {r: sum(type_of(o) == goal.obj_type for o in world.contents[r]) for r in targets}
    target = max(targets, key=lambda r: have[r])  # the first one on ties
    for obj in _goal_objects(world, skip=target)[: max(0, goal.count - have[target])]:
        plan.fetch(obj)
        plan.put(target)


def _plan_look(world: World, plan: _Plan) -> None:
    """Hold the object where a lamp of the type stands, and turn the lamp on."""
    goal = world.goal
    plan.fetch(_goal_objects(world)[0])
    lamps = [o for objs in world.contents.values() for o in objs if type_of(o) == goal.lamp_type]
    lamp = sorted(lamps, key=lambda o: o not in world.toggled)[0]  # one already on, if any
    plan.go(where_is(world, lamp) or "")
    if lamp not in world.toggled:
        plan.cmds.append(f"use {lamp}")


def expert_plan(world: World) -> list[str]:
    """Commands that reach the goal from ``world``'s current state (empty once it is reached)."""
    goal = world.goal
    if goal_satisfied(world) or not _goal_objects(world):
        return []
    plan = _Plan(world, world.location, set(world.opened), world.held)
    if goal.lamp_type is not None:
        _plan_look(world, plan)
    elif goal.count > 1:
        _plan_two(world, plan)
    else:
        _plan_place(world, plan)
    return plan.cmds
