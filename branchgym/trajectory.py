"""The records every part of branchgym shares: tasks, segments, trajectories and groups.

Data flows one way: a ``TaskRef`` goes to an environment, the rollout manager turns the
conversation into a tree of ``Segment``s owned by a ``Group``, the store writes the group in one
transaction, and the learner reads ``Trajectory`` paths back out of it. All records are frozen:
once a rollout is written, nothing downstream can change what the policy actually did.

A segment is either ``model`` text (sampled tokens, trained on) or ``env`` text (the prompt,
observations and tool results, never trained on). A trajectory is a root-to-leaf path through
the tree; in GRPO each tree is a single path, in ARPO / AEPO branches share prefixes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum


class SegmentKind(str, Enum):
    """Who produced a segment's tokens. Only ``MODEL`` tokens carry loss."""

    MODEL = "model"
    ENV = "env"


class EndReason(str, Enum):
    """Why a trajectory stopped."""

    ANSWERED = "answered"  # the policy gave a final answer (tool environments)
    TERMINATED = "terminated"  # the environment ended the episode (won or lost)
    TURN_LIMIT = "turn_limit"  # a turn / tool-call budget wrapper truncated it
    LENGTH = "length"  # the token budget ran out mid-generation
    INVALID_FORMAT = "invalid_format"  # the policy's output could not be parsed
    TOOL_ERROR = "tool_error"  # a tool call failed (timeout, crash)
    ENV_ERROR = "env_error"  # the environment raised or hung

    @property
    def failed(self) -> bool:
        """The environment or its tool failed: the path says nothing about the policy, so
        training leaves it out (``train.with_advantages``, ``samples_from_groups``)."""
        return self in (EndReason.TOOL_ERROR, EndReason.ENV_ERROR)


@dataclass(frozen=True)
class TaskRef:
    """One task, fully determined by its environment id, seed and split."""

    env_id: str
    seed: int
    split: str = "train"
    task_type: str = ""
    instruction: str = ""


@dataclass(frozen=True)
class Segment:
    """A node of the trajectory tree: one run of tokens from the model or the environment.

    ``logprobs`` and ``entropies`` are per token and present for model segments only (empty
    tuples for env segments). ``entropy_exact`` is False when the backend could only estimate
    entropy from its top-k log-probs. ``tool_result`` marks an env segment that answers a tool
    call (the step's ``info["tool_call"]``): branch decisions and the after-tool entropy
    statistics look at those, not at the prompt or at observations such as a format error's.
    """

    id: int
    parent_id: int | None
    kind: SegmentKind
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...] = ()
    entropies: tuple[float, ...] = ()
    entropy_exact: bool = True
    reward: float = 0.0
    tool_result: bool = False
    end_reason: EndReason | None = None

    def __post_init__(self) -> None:
        if self.kind is SegmentKind.MODEL and not (
            len(self.logprobs) == len(self.token_ids) == len(self.entropies)
        ):
            raise ValueError(
                f"model segment {self.id}: {len(self.token_ids)} tokens but "
                f"{len(self.logprobs)} log-probs and {len(self.entropies)} entropies"
            )


@dataclass(frozen=True)
class Trajectory:
    """A root-to-leaf path through a group's tree, with its return and advantage."""

    leaf_id: int
    segment_ids: tuple[int, ...]
    ret: float
    end_reason: EndReason
    advantage: float = 0.0
    won: bool = False
    n_turns: int = 0
    tool_calls: int = 0


@dataclass(frozen=True)
class Group:
    """Every trajectory sampled for one task at one training step, as one tree."""

    task: TaskRef
    step: int
    policy_version: int
    segments: tuple[Segment, ...]
    trajectories: tuple[Trajectory, ...]
    worker: str = "local"
    _by_id: dict[int, Segment] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.segments})
        for traj in self.trajectories:
            missing = [i for i in traj.segment_ids if i not in self._by_id]
            if missing:
                raise ValueError(f"trajectory {traj.leaf_id} names unknown segments {missing}")

    def segment(self, segment_id: int) -> Segment:
        return self._by_id[segment_id]

    def path(self, traj: Trajectory) -> Iterator[Segment]:
        """The segments of one trajectory, root first."""
        return (self._by_id[i] for i in traj.segment_ids)

    @property
    def returns(self) -> tuple[float, ...]:
        return tuple(t.ret for t in self.trajectories)


def flatten(group: Group, traj: Trajectory) -> tuple[list[int], list[float], list[bool]]:
    """Token ids, old log-probs (0 on env tokens) and the loss mask of one trajectory."""
    ids: list[int] = []
    logps: list[float] = []
    mask: list[bool] = []
    for seg in group.path(traj):
        ids.extend(seg.token_ids)
        is_model = seg.kind is SegmentKind.MODEL
        logps.extend(seg.logprobs if is_model else [0.0] * len(seg.token_ids))
        mask.extend([is_model] * len(seg.token_ids))
    return ids, logps, mask
