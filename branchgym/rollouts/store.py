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
* The tables and the record <-> row conversions live in ``schema.py``, opening the engine and
  migrating it in ``engine.py``; this module owns the sessions and the transactions.
* Token ids, log-probs and entropies are per-token arrays and make up almost all of the data.
  They are stored as little-endian ``int32`` / ``float32`` bytes, about four times smaller and
  far faster to decode than JSON lists. Consequence: log-probs and entropies come back rounded
  to float32 (relative error below 1e-7), so compare them with a tolerance. Rewards, returns and
  advantages are scalars in float64 columns and round-trip exactly.

Schema versions: the tables are created and changed only by Alembic revisions shipped in
``migrations/`` (so a change to ``schema.py`` needs a new revision there too), and each
database records its revision. Opening a store upgrades an empty or
older database to this code's head (``SCHEMA_HEAD``) under a lock, so several writers may open
a fresh database at once; a database made by branchgym before migrations is checked and
stamped as the first revision. A database written by a newer branchgym is refused with a
``StoreError`` rather than misread. ``migrations/__init__.py`` has the details.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import selectinload, sessionmaker

from branchgym.rollouts import schema
from branchgym.rollouts.engine import StoreError, missing_sqlite_file, open_engine, safe_url
from branchgym.rollouts.migrations import SCHEMA_HEAD, schema_revision
from branchgym.rollouts.schema import GroupRow, RunRow, SegmentRow, TrajectoryRow
from branchgym.trajectory import EndReason, Group, Trajectory

__all__ = [
    "SCHEMA_HEAD",
    "RunInfo",
    "StoreError",
    "TrajectoryInfo",
    "TrajectoryStore",
    "schema_revision",
]


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


# --------------------------------------------------------------------------- bulk rows

_GROUP_COLUMNS = [c for c in GroupRow.__table__.columns if not c.primary_key]


def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` in the driver's placeholder style."""
    quote = dialect.identifier_preparer.quote
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}[dialect.paramstyle]
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(map(quote, columns))}) VALUES ({', '.join([mark] * len(columns))})"
    )


def _insert_rows(conn: Connection, table: Table, group_id: int, rows: list[dict]) -> None:
    """Insert one group's child rows (column -> value dicts, all with the same keys) inside
    the caller's transaction, straight through the DB-API driver.

    Why not ``conn.execute(insert(table), rows)``: SQLAlchemy then builds and type-processes
    every row's parameters in Python, about 20 µs a segment, half of all the time spent
    writing. The values ``schema`` makes are already what the drivers bind (int, float, bool,
    str, bytes or None), so they go to the driver as plain tuples and the stored content is
    the same: one ``executemany`` on SQLite, one ``COPY`` on PostgreSQL through psycopg (whose
    own ``executemany`` spends about as long a row in Python as SQLAlchemy did). Errors
    surface as SQLAlchemy's exceptions either way.
    """
    if not rows:
        return
    columns = ("group_id", *rows[0])
    values = [(group_id, *r.values()) for r in rows]
    if conn.dialect.driver == "psycopg":
        _copy_rows(conn, table, columns, values)
    else:
        conn.exec_driver_sql(_insert_sql(conn.dialect, table, columns), values)


def _copy_rows(conn: Connection, table: Table, columns: tuple[str, ...], values: list) -> None:
    """``COPY table (columns) FROM STDIN`` on psycopg, wrapping its errors as SQLAlchemy would."""
    prep = conn.dialect.identifier_preparer
    sql = f"COPY {prep.format_table(table)} ({', '.join(map(prep.quote, columns))}) FROM STDIN"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in values:
                copy.write_row(row)
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi_error, dialect=conn.dialect) from exc


# --------------------------------------------------------------------------- the store


class TrajectoryStore:
    """Writes sampled groups atomically and reads them back as the exact frozen records."""

    def __init__(self, url: str = "sqlite:///branchgym.db", create: bool = True) -> None:
        """Open (and migrate) the store at ``url``. ``create=False`` is for readers: a SQLite
        file that does not exist is a ``StoreError`` rather than a new, empty database."""
        self.url = safe_url(url)
        if not create and (missing := missing_sqlite_file(url)) is not None:
            raise StoreError(f"no database at {missing}")
        self.engine = open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sessions(self) -> sessionmaker:
        """The session factory, for query modules built on the store (such as the replay
        buffer); ``with store.sessions.begin() as s:`` is one transaction."""
        return self._sessions

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

    def create_run(self, run_id: str, config: dict[str, Any], code_version: str = "") -> bool:
        """Register a run; True if this call created it. A run that already exists is left
        unchanged (safe on resume, and for workers of one run): False."""
        config_text = json.dumps(config, sort_keys=True)
        try:
            with self._sessions.begin() as session:
                if session.get(RunRow, run_id) is not None:
                    return False
                session.add(RunRow(id=run_id, config=config_text, code_version=code_version))
            return True
        except IntegrityError:
            # Another worker created the same run between our check and our insert.
            with self._sessions() as session:
                if session.get(RunRow, run_id) is None:
                    raise
            return False

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
        the transaction rolls back and nothing of the group remains. The run is not looked up
        first: the groups table's foreign key refuses an unknown run, and only then do we look
        to say so (one round trip less per group).
        """
        row = schema.group_row(run_id, group)
        try:
            with self.engine.begin() as conn:
                values = {c.key: getattr(row, c.key) for c in _GROUP_COLUMNS}
                gid = conn.execute(insert(GroupRow), values).inserted_primary_key[0]
                segments = [schema.segment_values(s, i) for i, s in enumerate(group.segments)]
                _insert_rows(conn, SegmentRow.__table__, gid, segments)
                trajectories = [schema.trajectory_values(t) for t in group.trajectories]
                _insert_rows(conn, TrajectoryRow.__table__, gid, trajectories)
        except IntegrityError as exc:
            with self._sessions() as session:
                if session.get(RunRow, run_id) is None:
                    raise StoreError(
                        f"unknown run {run_id!r} in {self.url}; call create_run first"
                    ) from exc
            raise
        return gid

    def write_groups(self, run_id: str, groups: Iterable[Group]) -> list[int]:
        """Write several groups, each in its own transaction, so one bad group loses only itself
        (the groups before it stay written, the exception propagates)."""
        return [self.write_group(run_id, g) for g in groups]

    def delete_groups(self, run_id: str, from_step: int) -> int:
        """Delete a run's groups of step ``from_step`` and later, with their segments,
        trajectories, replay entries and baselines, in one transaction; returns how many.

        A resumed run calls this to forget the steps it took after its checkpoint.
        """
        query = delete(GroupRow).where(GroupRow.run_id == run_id, GroupRow.step >= from_step)
        with self._sessions.begin() as session:
            return session.execute(query).rowcount

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
            return schema.group_from_row(row)

    def trajectory_ids(self, group_id: int) -> list[int]:
        """Database ids of a group's trajectories, in the group's order."""
        query = select(TrajectoryRow.id).where(TrajectoryRow.group_id == group_id)
        with self._sessions() as session:
            return list(session.scalars(query.order_by(TrajectoryRow.id)))

    def locate_trajectory(self, traj_id: int) -> tuple[str, int, int]:
        """``(run id, group id, index in the group)`` of a trajectory's database id."""
        with self._sessions() as session:
            row = session.get(TrajectoryRow, traj_id)
            if row is None:
                raise KeyError(f"no trajectory with id {traj_id} in {self.url}")
            group = session.get(GroupRow, row.group_id)
            assert group is not None
            ids = [t.id for t in group.trajectories]
            return group.run_id, group.id, ids.index(traj_id)

    def load_path(self, traj_id: int) -> tuple[Group, Trajectory]:
        """One trajectory with only the segments on its path: what training on it needs,
        without reading the rest of its tree (a branching tree can be 10x larger)."""
        return self.load_paths([traj_id])[0]

    def load_paths(self, traj_ids: Sequence[int]) -> list[tuple[Group, Trajectory]]:
        """``load_path`` for many trajectories in three queries, in the order given.

        The queries select tables, not ORM classes: the records are built from plain rows, so
        no ORM instance (identity map, instance state) is made for the ~400 rows a replay
        batch reads (about a tenth of this method's time went to them).
        """
        traj_table, group_table = TrajectoryRow.__table__, GroupRow.__table__
        seg_table = SegmentRow.__table__
        with self._sessions() as session:
            rows = {
                r.id: r
                for r in session.execute(select(traj_table).where(traj_table.c.id.in_(traj_ids)))
            }
            missing = [t for t in traj_ids if t not in rows]
            if missing:
                raise KeyError(f"no trajectory with id {missing[0]} in {self.url}")
            trajs = {tid: schema.trajectory_from_row(r) for tid, r in rows.items()}
            gids = {r.group_id for r in rows.values()}
            groups = {
                g.id: g
                for g in session.execute(select(group_table).where(group_table.c.id.in_(gids)))
            }
            wanted: dict[int, set[int]] = {}
            for t in traj_ids:
                wanted.setdefault(rows[t].group_id, set()).update(trajs[t].segment_ids)
            # one indexed lookup per group (a row-value IN over pairs scans the whole table
            # on SQLite)
            query = select(seg_table).where(
                or_(
                    *(
                        (seg_table.c.group_id == gid) & seg_table.c.seg_id.in_(sorted(ids))
                        for gid, ids in wanted.items()
                    )
                )
            )
            # each stored segment becomes a record once, however many sampled paths share it
            segs = {
                (r.group_id, r.seg_id): (r.position, schema.segment_from_row(r))
                for r in session.execute(query)
            }
            out = []
            for tid in traj_ids:
                gid, traj = rows[tid].group_id, trajs[tid]
                path = sorted((segs[(gid, s)] for s in traj.segment_ids), key=lambda p: p[0])
                path_segments = [seg for _, seg in path]
                out.append((schema.group_from_parts(groups[gid], path_segments, [traj]), traj))
            return out

    def steps(self, run_id: str) -> list[int]:
        """The training steps a run has groups for, in order."""
        query = select(GroupRow.step).where(GroupRow.run_id == run_id).distinct()
        with self._sessions() as session:
            return list(session.scalars(query.order_by(GroupRow.step)))

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
