"""Advantage attribution on trajectory trees (ARPO): which tokens get which advantage.

Branching trees share prefixes, so a segment near the root lies on several root-to-leaf paths.

- **Soft** (ARPO's released default): every path is one GRPO sample with its own advantage, and
  a shared segment is trained once per path through it.
- **Hard** (the paper's version, never released): a segment shared by ``d`` paths gets
  ``(1/d) * sum of their advantages`` and is trained once, on the first path through it.

Both are exact here because the store keeps the tree.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from branchgym.trajectory import Group, SegmentKind


def segment_advantages(group: Group) -> dict[int, float]:
    """Hard attribution: each model segment's mean advantage over the paths through it."""
    through: dict[int, list[float]] = defaultdict(list)
    for traj in group.trajectories:
        for seg in group.path(traj):
            if seg.kind is SegmentKind.MODEL:
                through[seg.id].append(traj.advantage)
    return {sid: fmean(advs) for sid, advs in through.items()}


def segment_owners(group: Group) -> dict[int, int]:
    """For each model segment, the index of the first trajectory through it: its one trainer."""
    owners: dict[int, int] = {}
    for i, traj in enumerate(group.trajectories):
        for seg in group.path(traj):
            if seg.kind is SegmentKind.MODEL:
                owners.setdefault(seg.id, i)
    return owners
