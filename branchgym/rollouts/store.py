"""Durable storage for rollouts: every sampled ``Group`` lands here before anything learns from it.

Data flow: the rollout manager samples a ``Group`` (one task's tree of segments and the
trajectories through it) and hands it to ``TrajectoryStore.write_group``; replay buffers, the
learner, evaluation reports and the viewer read groups back with ``load_group`` / ``groups``.
The store is the one place where what the policy actually did is recorded, so a crashed or
restarted run can be inspected, replayed or resumed from it.

Design choices:

* One SQLAlchemy URL selects the backend: SQLite (the default; WAL journal mode so readers never
  block the writer, foreign keys switched on) for single-machine runs, PostgreSQL for many
  workers writing to one database.
* A group is written in ONE transaction: its row, all its segments and all its trajectories
  commit together or not at all, so a reader never sees half a tree.
* Token ids, log-probs and entropies are per-token arrays and make up almost all of the data.
  They are stored as little-endian ``int32`` / ``float32`` bytes, about four times smaller and
  far faster to decode than JSON lists. Consequence: log-probs and entropies come back rounded
  to float32 (relative error below 1e-7), so compare them with a tolerance. Rewards, returns and
  advantages are scalars in float64 columns and round-trip exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

__all__ = [
    "RunInfo",
    "StoreError",
    "TrajectoryInfo",
    "TrajectoryStore",
]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class StoreError(RuntimeError):
    """The store could not be opened or a write was refused (bad URL, unknown run, ...)."""


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


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class RunInfo:
    """Summary of one run for listings; ``mean_return`` is None while it has no trajectories."""

    id: str
    created_at: datetime
    n_groups: int
    n_trajectories: int
    mean_return: float | None


@dataclass(frozen=True)
class TrajectoryInfo:
    """The scalar columns of one stored trajectory, for cheap queries without loading tokens."""

    group_id: int
    step: int
    leaf_id: int
    ret: float
    advantage: float
    end_reason: EndReason
    won: bool
    n_turns: int
    tool_calls: int


# --------------------------------------------------------------------------- array codecs


def _pack_ints(values: Sequence[int], what: str) -> bytes:
    """Encode ids as ``<i4`` bytes; out-of-range ids raise instead of silently wrapping."""
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
        raise ValueError(f"{what}: value out of int32 range, cannot be stored")
    return arr.astype("<i4").tobytes()


def _pack_floats(values: Sequence[float]) -> bytes:
    """Encode per-token floats as ``<f4`` bytes (float32 precision, see module docstring)."""
    return np.asarray(values, dtype="<f4").reshape(-1).tobytes()


def _unpack_ints(raw: bytes) -> tuple[int, ...]:
    """Decode ``<i4`` bytes back into a tuple of Python ints, as the frozen records hold."""
    return tuple(np.frombuffer(raw, dtype="<i4").tolist())


def _unpack_floats(raw: bytes) -> tuple[float, ...]:
    """Decode ``<f4`` bytes back into a tuple of Python floats."""
    return tuple(np.frombuffer(raw, dtype="<f4").tolist())


# --------------------------------------------------------------------------- record <-> row


def _group_row(run_id: str, group: Group) -> GroupRow:
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
        instruction=task.instruction,
    )


def _segment_row(seg: Segment, position: int) -> SegmentRow:
    """One segment as a row; arrays go through the compact byte codecs."""
    return SegmentRow(
        seg_id=seg.id,
        position=position,
        parent_id=seg.parent_id,
        kind=SegmentKind(seg.kind).value,
        token_ids=_pack_ints(seg.token_ids, f"segment {seg.id} token_ids"),
        logprobs=_pack_floats(seg.logprobs),
        entropies=_pack_floats(seg.entropies),
        entropy_exact=bool(seg.entropy_exact),
        text=seg.text,
        reward=float(seg.reward),
        end_reason=None if seg.end_reason is None else EndReason(seg.end_reason).value,
    )


def _trajectory_row(traj: Trajectory) -> TrajectoryRow:
    """One trajectory as a row; its path is stored as packed segment ids."""
    return TrajectoryRow(
        leaf_id=traj.leaf_id,
        segment_ids=_pack_ints(traj.segment_ids, f"trajectory {traj.leaf_id} segment_ids"),
        ret=float(traj.ret),
        advantage=float(traj.advantage),
        end_reason=EndReason(traj.end_reason).value,
        won=bool(traj.won),
        n_turns=traj.n_turns,
        tool_calls=traj.tool_calls,
    )


def _segment_from_row(row: SegmentRow) -> Segment:
    """Rebuild a frozen ``Segment`` from its row."""
    return Segment(
        id=row.seg_id,
        parent_id=row.parent_id,
        kind=SegmentKind(row.kind),
        token_ids=_unpack_ints(row.token_ids),
        text=row.text,
        logprobs=_unpack_floats(row.logprobs),
        entropies=_unpack_floats(row.entropies),
        entropy_exact=row.entropy_exact,
        reward=row.reward,
        end_reason=None if row.end_reason is None else EndReason(row.end_reason),
    )


def _trajectory_from_row(row: TrajectoryRow) -> Trajectory:
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


def _group_from_row(row: GroupRow) -> Group:
    """Rebuild the frozen ``Group`` (segments in their original order)."""
    task = TaskRef(
        env_id=row.env_id,
        seed=row.task_seed,
        split=row.split,
        task_type=row.task_type,
        instruction=row.instruction,
    )
    return Group(
        task=task,
        step=row.step,
        policy_version=row.policy_version,
        segments=tuple(_segment_from_row(s) for s in row.segments),
        trajectories=tuple(_trajectory_from_row(t) for t in row.trajectories),
        worker=row.worker,
    )


# --------------------------------------------------------------------------- engine setup


def _safe_url(url: str) -> str:
    """The URL as it may appear in error messages and logs: any password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection SQLite setup: WAL lets readers run beside the writer; enforce FKs."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _open_engine(url: str) -> Engine:
    """Create the engine and the tables, turning every failure into a clear ``StoreError``."""
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(engine)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise StoreError(f"cannot open trajectory store at {_safe_url(url)!r} ({reason})") from exc
    return engine


# --------------------------------------------------------------------------- the store


class TrajectoryStore:
    """Writes sampled groups atomically and reads them back as the exact frozen records."""

    def __init__(self, url: str = "sqlite:///branchgym.db") -> None:
        self.url = _safe_url(url)
        self.engine = _open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- lifecycle

    def close(self) -> None:
        """Release pooled connections (and SQLite file handles)."""
        self.engine.dispose()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrajectoryStore({self.url!r})"

    # -- runs

    def create_run(self, run_id: str, config: dict[str, Any], code_version: str = "") -> None:
        """Register a run; a run that already exists is left unchanged (safe on resume)."""
        config_text = json.dumps(config, sort_keys=True)
        try:
            with self._sessions.begin() as session:
                if session.get(RunRow, run_id) is None:
                    session.add(RunRow(id=run_id, config=config_text, code_version=code_version))
        except IntegrityError:
            # Another worker created the same run between our check and our insert.
            with self._sessions() as session:
                if session.get(RunRow, run_id) is None:
                    raise

    def run_config(self, run_id: str) -> dict[str, Any]:
        """The config a run was created with, so a resumed run can check it matches."""
        with self._sessions() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise KeyError(f"no run {run_id!r} in {self.url}")
            return json.loads(row.config)

    def list_runs(self) -> list[RunInfo]:
        """Every run with its group / trajectory counts and mean return, oldest first."""
        n_groups = (
            select(GroupRow.run_id, func.count(GroupRow.id).label("n"))
            .group_by(GroupRow.run_id)
            .subquery()
        )
        trajs = (
            select(
                GroupRow.run_id,
                func.count(TrajectoryRow.id).label("n"),
                func.avg(TrajectoryRow.ret).label("mean"),
            )
            .join(TrajectoryRow, TrajectoryRow.group_id == GroupRow.id)
            .group_by(GroupRow.run_id)
            .subquery()
        )
        query = (
            select(RunRow.id, RunRow.created_at, n_groups.c.n, trajs.c.n, trajs.c.mean)
            .outerjoin(n_groups, n_groups.c.run_id == RunRow.id)
            .outerjoin(trajs, trajs.c.run_id == RunRow.id)
            .order_by(RunRow.created_at, RunRow.id)
        )
        with self._sessions() as session:
            rows = session.execute(query).all()
        return [
            RunInfo(rid, created, ng or 0, nt or 0, None if mean is None else float(mean))
            for rid, created, ng, nt, mean in rows
        ]

    # -- groups

    def write_group(self, run_id: str, group: Group) -> int:
        """Write one group, its segments and trajectories in one transaction; return its id.

        If anything fails (an unknown run, a value that cannot be stored, a database error)
        the transaction rolls back and nothing of the group remains.
        """
        with self._sessions.begin() as session:
            if session.get(RunRow, run_id) is None:
                raise StoreError(f"unknown run {run_id!r} in {self.url}; call create_run first")
            row = _group_row(run_id, group)
            session.add(row)
            session.flush()  # assigns row.id inside the transaction
            row.segments.extend(_segment_row(s, i) for i, s in enumerate(group.segments))
            row.trajectories.extend(_trajectory_row(t) for t in group.trajectories)
            session.flush()
            group_id = row.id
        return group_id

    def write_groups(self, run_id: str, groups: Iterable[Group]) -> list[int]:
        """Write several groups, each in its own transaction, so one bad group loses only itself
        (the groups before it stay written, the exception propagates)."""
        return [self.write_group(run_id, g) for g in groups]

    def load_group(self, group_id: int) -> Group:
        """Rebuild the frozen ``Group``; log-probs / entropies come back at float32 precision."""
        query = (
            select(GroupRow)
            .where(GroupRow.id == group_id)
            .options(selectinload(GroupRow.segments), selectinload(GroupRow.trajectories))
        )
        with self._sessions() as session:
            row = session.scalars(query).one_or_none()
            if row is None:
                raise KeyError(f"no group with id {group_id} in {self.url}")
            return _group_from_row(row)

    def groups(self, run_id: str, step: int | None = None) -> list[int]:
        """Ids of a run's groups (optionally one step's) in the order they were written."""
        query = select(GroupRow.id).where(GroupRow.run_id == run_id)
        if step is not None:
            query = query.where(GroupRow.step == step)
        with self._sessions() as session:
            return list(session.scalars(query.order_by(GroupRow.id)))

    def trajectory_rows(self, run_id: str, step: int | None = None) -> list[TrajectoryInfo]:
        """Scalar facts of a run's trajectories (no tokens), for stats and replay selection."""
        query = (
            select(GroupRow.id, GroupRow.step, TrajectoryRow)
            .join(TrajectoryRow, TrajectoryRow.group_id == GroupRow.id)
            .where(GroupRow.run_id == run_id)
            .order_by(GroupRow.id, TrajectoryRow.id)
        )
        if step is not None:
            query = query.where(GroupRow.step == step)
        with self._sessions() as session:
            rows = session.execute(query).all()
        return [
            TrajectoryInfo(
                gid,
                step_,
                t.leaf_id,
                t.ret,
                t.advantage,
                EndReason(t.end_reason),
                t.won,
                t.n_turns,
                t.tool_calls,
            )
            for gid, step_, t in rows
        ]
