"""Trajectory trees under construction: the mutable state the rollout manager grows.

A ``Tree`` is one task's tree: its nodes (``Segment``s, appended as paths grow), its paths and
what is left of its budget. A ``Path`` is one root-to-leaf path being sampled; a ``Point`` is a
decision to branch a path after a tool result, with the parent as it stood there. ``freeze``
turns a finished tree into the immutable ``Group`` the store and the learner see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym

from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory


@dataclass
class Tree:
    """One task's tree under construction, and what is left of its budget."""

    task: TaskRef
    nodes: list[Segment] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    dropped: list[Path] = field(default_factory=list)  # AEPO probes not kept: closed, not stored
    full_left: int = 0  # full samples still to start in this phase
    branch_left: int = 0  # branch slots left
    started: bool = False  # this phase's full samples were started
    probing: bool = False  # AEPO's kept probe: collect branch points, grant none yet
    points: list[Point] = field(default_factory=list)  # deferred schedule: candidates kept


@dataclass
class Path:
    """One root-to-leaf path under construction."""

    tree: Tree
    session: str
    parent_session: str | None = None
    env: gym.Env | None = None
    nodes: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    ret: float = 0.0
    turns: int = 0
    tool_calls: int = 0
    won: bool = False
    finish: str = "stop"  # how its latest turn's generation ended
    end: EndReason | None = None
    error: str = ""  # why a path ended before its first node
    h_init: float | None = None  # entropy of the head of its first turn: the branch baseline
    streak: int = 0  # consecutive branch decisions on this path (AEPO's l)
    after_tool: bool = False  # the last node is a tool result, not the prompt
    fresh_branch: bool = False  # its next turn is the branch's own first one
    stop: tuple[str, ...] = ()  # the env's stop strings (closing tool tags)

    def add(
        self, kind: SegmentKind, ids: Sequence[int], text: str, gen=None, tool_result=False
    ) -> None:
        extra = {} if gen is None else {"logprobs": gen.logprobs, "entropies": gen.entropies}
        extra["tool_result"] = tool_result
        if gen is not None:
            extra["entropy_exact"] = gen.entropy_exact
        parent = self.nodes[-1] if self.nodes else None
        node = Segment(len(self.tree.nodes), parent, kind, tuple(ids), text, **extra)
        self.tree.nodes.append(node)
        self.nodes.append(node.id)
        self.tokens.extend(ids)


@dataclass
class Point:
    """A yes-decision to branch after a tool result: the parent as it stood at that point."""

    parent: Path
    bid: float  # the branch probability: stronger bids are granted first
    tie: float  # a seeded coin between equal bids
    n_nodes: int  # the parent's nodes up to and including the tool result
    n_tokens: int
    ret: float
    turns: int
    tool_calls: int
    streak: int
    children: list[Path] = field(default_factory=list)  # granted at once (online schedule)
    snap: Any = None  # the environment at the tool result


def strength(point: Point) -> tuple[float, float]:
    """Sort key: the strongest bid first, seeded coins between equal ones."""
    return (-point.bid, point.tie)


def freeze(tree: Tree, step: int, version: int) -> Group:
    """Freeze the tree: mark each path's leaf with its end and return."""
    nodes = list(tree.nodes)
    for path in tree.paths:
        if not path.nodes:  # a failed reset never saw the prompt: a root of its own
            nodes.append(Segment(len(nodes), None, SegmentKind.ENV, (), path.error))
            path.nodes = [len(nodes) - 1]
    trajectories = []
    for path in tree.paths:
        leaf = path.nodes[-1]
        end = path.end or EndReason.ENV_ERROR
        nodes[leaf] = replace(nodes[leaf], end_reason=end, reward=path.ret)
        trajectories.append(
            Trajectory(
                leaf_id=leaf,
                segment_ids=tuple(path.nodes),
                ret=path.ret,
                end_reason=end,
                won=path.won,
                n_turns=path.turns,
                tool_calls=path.tool_calls,
            )
        )
    if len({t.leaf_id for t in trajectories}) != len(trajectories):
        raise AssertionError("two paths share a leaf: a path ended without a node of its own")
    return Group(tree.task, step, version, tuple(nodes), tuple(trajectories))
