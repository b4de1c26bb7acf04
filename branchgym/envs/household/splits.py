"""Which household episodes belong to the ``unseen`` split.

ALFWorld's ``valid_unseen`` holds out whole scenes; here ``unseen`` holds out two things the
training split never shows: goal (object, receptacle) pairs and room layouts (the multiset of
receptacle types a room has). About one in five of each is held out, chosen by a stable hash of
its names, so the choice is the same on every machine and Python version. An episode is
``unseen`` when its goal pair or its layout is held out; ``train`` and ``seen`` episodes have
neither. Generation redraws from the seed until the episode fits its split.
"""

from __future__ import annotations

import zlib
from collections import Counter

from branchgym.envs.household.world import World, type_of

HOLD_OUT_ONE_IN = 5


def _held_out(key: str) -> bool:
    return zlib.crc32(key.encode()) % HOLD_OUT_ONE_IN == 0


def goal_pair(world: World) -> tuple[str, str]:
    """The goal's (object type, receptacle or lamp type)."""
    goal = world.goal
    return goal.obj_type, goal.recep_type or goal.lamp_type or ""


def layout(world: World) -> tuple[tuple[str, int], ...]:
    """The room's receptacle types with their counts, in name order."""
    return tuple(sorted(Counter(type_of(r) for r in world.receptacles).items()))


def is_unseen(world: World) -> bool:
    """Whether the episode shows a held-out goal pair or a held-out layout."""
    obj, recep = goal_pair(world)
    return _held_out(f"pair:{obj}|{recep}") or _held_out(f"layout:{layout(world)}")


def fits(world: World, split: str) -> bool:
    return is_unseen(world) == (split == "unseen")
