"""The trajectory store's tables, and the conversions between frozen records and rows.

``store.py`` owns sessions and transactions; this module owns the layout: one row per run and
per group, one per tree segment, one per trajectory. Token ids, log-probs and entropies are
packed as little-endian ``int32`` / ``float32`` bytes (see the store's module docstring).
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

_BIG_ENDIAN = sys.byteorder == "big"  # stored arrays are little-endian on every machine
assert array("i").itemsize == 4 and array("f").itemsize == 4

# --------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata, kept separate from any other models."""


def _utcnow() -> datetime:
    """Timestamps are UTC so runs written on different machines sort correctly."""
    return datetime.now(timezone.utc)


class RunRow(Base):
    """One training run: the config and code version needed to reproduce it."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    config: Mapped[str] = mapped_column(Text, default="{}")
    code_version: Mapped[str] = mapped_column(String(64), default="")


class GroupRow(Base):
    """One ``Group``: the task it was sampled for and when / by whom it was sampled."""

    __tablename__ = "groups"
    __table_args__ = (Index("ix_groups_run_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(128))
    env_id: Mapped[str] = mapped_column(String(128))
    task_seed: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(32))
    task_type: Mapped[str] = mapped_column(String(128))
    instruction: Mapped[str] = mapped_column(Text)

    segments: Mapped[list[SegmentRow]] = relationship(
        order_by="SegmentRow.position", cascade="all, delete-orphan", passive_deletes=True
    )
    trajectories: Mapped[list[TrajectoryRow]] = relationship(
        order_by="TrajectoryRow.id", cascade="all, delete-orphan", passive_deletes=True
    )


class SegmentRow(Base):
    """One tree node. ``position`` keeps the group's original segment order for round-trips."""

    __tablename__ = "segments"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    seg_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_ids: Mapped[bytes] = mapped_column(LargeBinary)
    logprobs: Mapped[bytes] = mapped_column(LargeBinary)
    entropies: Mapped[bytes] = mapped_column(LargeBinary)
    entropy_exact: Mapped[bool] = mapped_column(Boolean)
    tool_result: Mapped[bool] = mapped_column(Boolean, server_default=false())
    text: Mapped[str] = mapped_column(Text)
    reward: Mapped[float] = mapped_column(Double)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class TrajectoryRow(Base):
    """One root-to-leaf path; indexed on advantage so replay can pick informative samples."""

    __tablename__ = "trajectories"
    __table_args__ = (
        Index("ix_trajectories_group_id", "group_id"),
        Index("ix_trajectories_advantage", "advantage"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    leaf_id: Mapped[int] = mapped_column(Integer)
    segment_ids: Mapped[bytes] = mapped_column(LargeBinary)
    ret: Mapped[float] = mapped_column(Double)
    advantage: Mapped[float] = mapped_column(Double)
    end_reason: Mapped[str] = mapped_column(String(32))
    won: Mapped[bool] = mapped_column(Boolean)
    n_turns: Mapped[int] = mapped_column(Integer)
    tool_calls: Mapped[int] = mapped_column(Integer)


class ReplayRow(Base):
    """A trajectory admitted to the self-imitation replay buffer (SPEAR), per run."""

    __tablename__ = "replay_entries"
    __table_args__ = (Index("ix_replay_run_version", "run_id", "policy_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    trajectory_id: Mapped[int] = mapped_column(ForeignKey("trajectories.id", ondelete="CASCADE"))
    policy_version: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    ret: Mapped[float] = mapped_column(Double)


class BaselineRow(Base):
    """One group's return statistics, for recalibrating replayed advantages."""

    __tablename__ = "baselines"
    __table_args__ = (Index("ix_baselines_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Double)
    std: Mapped[float] = mapped_column(Double)


# --------------------------------------------------------------------------- text codec

_ESC = "\x1b"


def encode_text(text: str) -> str:
    """Text as a column can hold it. PostgreSQL refuses NUL characters in text, and model
    output can contain them, so NUL is written as ESC "0" and ESC itself as ESC ESC. Text
    with neither (nearly all of it) is stored unchanged."""
    if _ESC not in text and "\x00" not in text:
        return text
    return text.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")


def decode_text(stored: str) -> str:
    """The inverse of ``encode_text``."""
    if _ESC not in stored:
        return stored
    return re.sub("\x1b([\x1b0])", lambda m: _ESC if m.group(1) == _ESC else "\x00", stored)


# --------------------------------------------------------------------------- array codecs


def _pack_ints(values: Sequence[int], what: str) -> bytes:
    """Encode ids as ``<i4`` bytes; out-of-range ids raise instead of silently wrapping.

    ``array`` (not numpy) because segments are short: per call it is several times cheaper.
    """
    try:
        arr = array("i", values)
    except OverflowError as exc:
        raise ValueError(f"{what}: value out of int32 range, cannot be stored") from exc
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _pack_floats(values: Sequence[float]) -> bytes:
    """Encode per-token floats as ``<f4`` bytes (float32 precision, see module docstring)."""
    arr = array("f", values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _unpack_ints(raw: bytes) -> tuple[int, ...]:
    """Decode ``<i4`` bytes back into a tuple of Python ints, as the frozen records hold."""
    return tuple(np.frombuffer(raw, dtype="<i4").tolist())


def _unpack_floats(raw: bytes) -> tuple[float, ...]:
    """Decode ``<f4`` bytes back into a tuple of Python floats."""
    return tuple(np.frombuffer(raw, dtype="<f4").tolist())


# --------------------------------------------------------------------------- record <-> row


def group_row(run_id: str, group: Group) -> GroupRow:
    """The group's own row, without children, so it can be flushed first for its id."""
    task = group.task
    return GroupRow(
        run_id=run_id,
        step=group.step,
        policy_version=group.policy_version,
        worker=group.worker,
        env_id=task.env_id,
        task_seed=task.seed,
        split=task.split,
        task_type=task.task_type,
        instruction=encode_text(task.instruction),
    )


def segment_values(seg: Segment, position: int) -> dict:
    """One segment's column values (for a bulk insert); arrays go through the byte codecs."""
    return dict(
        seg_id=seg.id,
        position=position,
        parent_id=seg.parent_id,
        kind=SegmentKind(seg.kind).value,
        token_ids=_pack_ints(seg.token_ids, f"segment {seg.id} token_ids"),
        logprobs=_pack_floats(seg.logprobs),
        entropies=_pack_floats(seg.entropies),
        entropy_exact=bool(seg.entropy_exact),
        tool_result=bool(seg.tool_result),
        text=encode_text(seg.text),
        reward=float(seg.reward),
        end_reason=None if seg.end_reason is None else EndReason(seg.end_reason).value,
    )


def trajectory_values(traj: Trajectory) -> dict:
    """One trajectory's column values; its path is stored as packed segment ids."""
    return dict(
        leaf_id=traj.leaf_id,
        segment_ids=_pack_ints(traj.segment_ids, f"trajectory {traj.leaf_id} segment_ids"),
        ret=float(traj.ret),
        advantage=float(traj.advantage),
        end_reason=EndReason(traj.end_reason).value,
        won=bool(traj.won),
        n_turns=traj.n_turns,
        tool_calls=traj.tool_calls,
    )


def segment_from_row(row: SegmentRow) -> Segment:
    """Rebuild a frozen ``Segment`` from its row."""
    return Segment(
        id=row.seg_id,
        parent_id=row.parent_id,
        kind=SegmentKind(row.kind),
        token_ids=_unpack_ints(row.token_ids),
        text=decode_text(row.text),
        logprobs=_unpack_floats(row.logprobs),
        entropies=_unpack_floats(row.entropies),
        entropy_exact=row.entropy_exact,
        tool_result=row.tool_result,
        reward=row.reward,
        end_reason=None if row.end_reason is None else EndReason(row.end_reason),
    )


def trajectory_from_row(row: TrajectoryRow) -> Trajectory:
    """Rebuild a frozen ``Trajectory`` from its row."""
    return Trajectory(
        leaf_id=row.leaf_id,
        segment_ids=_unpack_ints(row.segment_ids),
        ret=row.ret,
        end_reason=EndReason(row.end_reason),
        advantage=row.advantage,
        won=row.won,
        n_turns=row.n_turns,
        tool_calls=row.tool_calls,
    )


def group_from_row(row: GroupRow) -> Group:
    """Rebuild the frozen ``Group`` (segments in their original order)."""
    return group_from_parts(
        row,
        [segment_from_row(s) for s in row.segments],
        [trajectory_from_row(t) for t in row.trajectories],
    )


def group_from_parts(
    row: GroupRow, segments: Sequence[Segment], trajectories: Sequence[Trajectory]
) -> Group:
    """A ``Group`` of the row's task and step holding the given segments and trajectories."""
    task = TaskRef(
        env_id=row.env_id,
        seed=row.task_seed,
        split=row.split,
        task_type=row.task_type,
        instruction=decode_text(row.instruction),
    )
    return Group(
        task=task,
        step=row.step,
        policy_version=row.policy_version,
        segments=tuple(segments),
        trajectories=tuple(trajectories),
        worker=row.worker,
    )
