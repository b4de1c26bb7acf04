"""What a batch of trajectory trees looks like: the per-step rollout metrics.

``tree_stats`` reads only the frozen groups, so the same numbers come out of a live rollout and
out of trees read back from the store. Entropy "after a tool result" is the mean entropy of the
first ``k`` tokens of a model segment whose parent is a tool result (an env segment other than
the prompt); "before" is the mean of the last ``k`` tokens of the model segment that called it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import fmean

from branchgym.rollouts.branching import head_entropy, tail_entropy
from branchgym.trajectory import Group, Segment, SegmentKind


def _mean(xs: Sequence[float]) -> float:
    return fmean(xs) if xs else 0.0


def entropy_profile(segments: Sequence[Segment], k: int) -> tuple[float, float]:
    """AEPO's pre-monitoring pair ``(H_root, H_tool)`` from one tree's segments.

    ``H_root`` averages the first ``k`` tokens of every turn sampled from the prompt, ``H_tool``
    those of every turn sampled after a tool result (``H_root`` when there was none); turns
    after other observations (a format error's) count in neither.
    """
    by_id = {s.id: s for s in segments}
    roots, tools = [], []
    for seg in segments:
        if seg.kind is SegmentKind.MODEL and seg.parent_id is not None:
            parent = by_id[seg.parent_id]
            if parent.parent_id is None:
                roots.append(head_entropy(seg.entropies, k))
            elif parent.tool_result:
                tools.append(head_entropy(seg.entropies, k))
    h_root = _mean(roots)
    return h_root, (_mean(tools) if tools else h_root)


@dataclass(frozen=True)
class TreeStats:
    """Rollout metrics of one training step (means are over trees unless named otherwise)."""

    trees: int
    trajectories_per_tree: float
    distinct_trajectories_per_tree: float  # distinct action sequences among a tree's leaves
    branch_points_per_tree: float  # tool results that more than one path continues from
    branch_depth_mean: float  # model turns above a branch point
    branch_depth_max: int
    entropy_before_tool: float
    entropy_after_tool: float
    tokens_generated: int  # model tokens in the trees: each shared prefix counted once
    tool_calls_per_trajectory: float
    end_reasons: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def _children(group: Group) -> dict[int, list[Segment]]:
    kids: dict[int, list[Segment]] = {}
    for seg in group.segments:
        if seg.parent_id is not None:
            kids.setdefault(seg.parent_id, []).append(seg)
    return kids


def _depth(group: Group, seg: Segment) -> int:
    turns = 0
    while seg.parent_id is not None:
        seg = group.segment(seg.parent_id)
        turns += seg.kind is SegmentKind.MODEL
    return turns


def _tool_entropies(group: Group, k: int) -> tuple[list[float], list[float]]:
    before, after = [], []
    for seg in group.segments:
        if seg.kind is not SegmentKind.MODEL or seg.parent_id is None:
            continue
        result = group.segment(seg.parent_id)
        if result.tool_result:  # not the prompt, nor an observation that answered no tool
            after.append(head_entropy(seg.entropies, k))
            before.append(tail_entropy(group.segment(result.parent_id).entropies, k))
    return before, after


def _distinct(group: Group) -> int:
    return len(
        {
            tuple(s.token_ids for s in group.path(t) if s.kind is SegmentKind.MODEL)
            for t in group.trajectories
        }
    )


def tree_stats(groups: Sequence[Group], k: int = 20) -> TreeStats:
    """Shape, entropy and cost of a batch of trees."""
    points: list[int] = []
    before: list[float] = []
    after: list[float] = []
    for group in groups:
        for parent_id, kids in _children(group).items():
            parent = group.segment(parent_id)
            if parent.parent_id is not None and len(kids) > 1:
                points.append(_depth(group, parent))
        b, a = _tool_entropies(group, k)
        before += b
        after += a
    trajs = [t for g in groups for t in g.trajectories]
    n = max(1, len(groups))
    return TreeStats(
        trees=len(groups),
        trajectories_per_tree=len(trajs) / n,
        distinct_trajectories_per_tree=sum(_distinct(g) for g in groups) / n,
        branch_points_per_tree=len(points) / n,
        branch_depth_mean=_mean(points),
        branch_depth_max=max(points, default=0),
        entropy_before_tool=_mean(before),
        entropy_after_tool=_mean(after),
        tokens_generated=sum(
            len(s.token_ids) for g in groups for s in g.segments if s.kind is SegmentKind.MODEL
        ),
        tool_calls_per_trajectory=_mean([t.tool_calls for t in trajs]),
        end_reasons=dict(Counter(t.end_reason.value for t in trajs)),
    )
