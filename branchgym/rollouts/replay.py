"""SPEAR's self-imitation replay buffer, as queries on the trajectory store.

SPEAR keeps the policy's own promising trajectories and trains on them again. Its released code
keeps them in a Python list that a restart loses; here the buffer is two tables in the store
(``replay_entries``, ``baselines``), so it survives restarts and several workers share it.

- **Admission** (``admit``): trajectories of the given groups whose advantage is positive
  (optionally: that called a tool at least once). Each group's return mean and std also go
  into the baseline table, which keeps the latest ``baseline_entries`` rows per run.
- **Eviction** (``evict``): entries sampled more than ``tolerate_steps`` policy versions ago.
- **Recalibration** (``recalibrated``): at replay time, with ``b`` the median of the baseline
  table's group means and ``s`` the median of its stds, ``A~ = R - b`` (``(R - b) / (s + 1e-6)``
  with ``std_normalize``); only entries with ``A~ >= 0`` are admissible for replay.
- **Trigger** (``ready`` / ``take``): once more than ``trigger_factor`` x ``batch_size``
  admissible entries are held, ``take`` returns a uniform sample of the largest power of two
  <= ``batch_size`` and clears the buffer. Replayed samples keep their stored log-probs, so the
  PPO ratio and clip act as the trust region.

Formulas: SPEAR (Tencent, 2025), as the README's concepts list them. Hand-computed tests:
``tests/test_replay.py``.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select

from branchgym.rollouts.schema import BaselineRow, GroupRow, ReplayRow, TrajectoryRow
from branchgym.rollouts.store import TrajectoryStore
from branchgym.trajectory import EndReason, Group, Trajectory


@dataclass(frozen=True)
class ReplayConfig:
    """SPEAR's replay buffer (defaults from the paper's description)."""

    require_tool_use: bool = False
    tolerate_steps: int = 10  # evict entries more than this many policy versions old
    baseline_entries: int = 10_240  # group statistics kept for recalibration
    std_normalize: bool = False
    batch_size: int = 16  # the replay batch cap
    trigger_factor: float = 1.5


@dataclass(frozen=True)
class ReplaySample:
    """A replayed trajectory: ``group`` holds only the segments on its path."""

    trajectory_id: int
    group: Group
    trajectory: Trajectory
    advantage: float  # recalibrated: R - b (or (R - b) / (s + 1e-6))


def recalibrate(ret: float, b: float, s: float, std_normalize: bool) -> float:
    """``A~ = R - b``, or ``(R - b) / (s + 1e-6)`` with std normalisation."""
    return (ret - b) / (s + 1e-6) if std_normalize else ret - b


class ReplayBuffer:
    """One run's replay buffer in ``store``; every method is a short transaction."""

    def __init__(self, store: TrajectoryStore, run_id: str, cfg: ReplayConfig) -> None:
        self.store, self.run_id, self.cfg = store, run_id, cfg

    def admit(self, group_ids: Sequence[int]) -> int:
        """Admit the positive-advantage trajectories of these stored groups; returns how many.

        Reads and writes plain rows (Core), not ORM objects: this runs every step, and the
        identity map and unit of work cost more than the queries."""
        groups_t, trajs_t = GroupRow.__table__, TrajectoryRow.__table__
        with self.store.sessions.begin() as session:
            gc = groups_t.c
            query = select(gc.id, gc.run_id, gc.step, gc.policy_version).where(gc.id.in_(group_ids))
            groups = {row.id: row for row in session.execute(query)}
            tc = trajs_t.c
            query = (
                select(tc.group_id, tc.id, tc.ret, tc.advantage, tc.tool_calls, tc.end_reason)
                .where(tc.group_id.in_(group_ids))
                .order_by(tc.id)
            )
            trajs: dict[int, list] = {}
            for row in session.execute(query):
                trajs.setdefault(row.group_id, []).append(row)
            baselines, entries = [], []
            for gid in group_ids:
                group = groups.get(gid)
                if group is None or group.run_id != self.run_id:
                    raise KeyError(f"run {self.run_id!r} has no group {gid}")
                # as in training, a path whose env or tool failed says nothing of the policy
                rets = [t.ret for t in trajs.get(gid, []) if not EndReason(t.end_reason).failed]
                if not rets:
                    continue
                baselines.append(
                    {
                        "run_id": self.run_id,
                        "group_id": gid,
                        "step": group.step,
                        "mean": statistics.fmean(rets),
                        "std": statistics.pstdev(rets),
                    }
                )
                entries += [
                    {
                        "run_id": self.run_id,
                        "trajectory_id": t.id,
                        "policy_version": group.policy_version,
                        "step": group.step,
                        "ret": t.ret,
                    }
                    for t in trajs.get(gid, [])
                    if t.advantage > 0 and (t.tool_calls > 0 or not self.cfg.require_tool_use)
                ]
            if baselines:
                session.execute(insert(BaselineRow.__table__), baselines)
            if entries:
                session.execute(insert(ReplayRow.__table__), entries)
            self._trim_baselines(session)
        return len(entries)

    def _trim_baselines(self, session) -> None:
        keep = (
            select(BaselineRow.id)
            .where(BaselineRow.run_id == self.run_id)
            .order_by(BaselineRow.id.desc())
            .limit(self.cfg.baseline_entries)
        )
        session.execute(
            delete(BaselineRow).where(
                BaselineRow.run_id == self.run_id, BaselineRow.id.not_in(keep.scalar_subquery())
            )
        )

    def evict(self, version: int) -> int:
        """Drop entries more than ``tolerate_steps`` policy versions older than ``version``."""
        oldest = version - self.cfg.tolerate_steps
        with self.store.sessions.begin() as session:
            result = session.execute(
                delete(ReplayRow).where(
                    ReplayRow.run_id == self.run_id, ReplayRow.policy_version < oldest
                )
            )
        return result.rowcount

    def snapshot(self) -> dict[str, list[tuple]]:
        """The buffer's rows (entries and baselines), in order, for a checkpoint."""
        entries = select(
            ReplayRow.trajectory_id, ReplayRow.policy_version, ReplayRow.step, ReplayRow.ret
        ).where(ReplayRow.run_id == self.run_id)
        baselines = select(
            BaselineRow.group_id, BaselineRow.step, BaselineRow.mean, BaselineRow.std
        ).where(BaselineRow.run_id == self.run_id)
        with self.store.sessions() as session:
            return {
                "entries": [tuple(r) for r in session.execute(entries.order_by(ReplayRow.id))],
                "baselines": [
                    tuple(r) for r in session.execute(baselines.order_by(BaselineRow.id))
                ],
            }

    def restore(self, snapshot: dict[str, list[tuple]]) -> None:
        """Make the buffer hold exactly ``snapshot``'s rows again, in one transaction (a
        resumed run undoes what the steps after its checkpoint admitted, took or evicted)."""
        with self.store.sessions.begin() as session:
            session.execute(delete(ReplayRow).where(ReplayRow.run_id == self.run_id))
            session.execute(delete(BaselineRow).where(BaselineRow.run_id == self.run_id))
            entries = [
                {"run_id": self.run_id, "trajectory_id": t, "policy_version": v}
                | {"step": s, "ret": r}
                for t, v, s, r in snapshot["entries"]
            ]
            baselines = [
                {"run_id": self.run_id, "group_id": g, "step": s, "mean": m, "std": sd}
                for g, s, m, sd in snapshot["baselines"]
            ]
            for table, rows in ((ReplayRow, entries), (BaselineRow, baselines)):
                if rows:  # executemany in order: ids keep the snapshot's order
                    session.execute(insert(table), rows)

    def baseline(self) -> tuple[float, float]:
        """``(b, s)``: the medians of the baseline table's group means and stds (0, 0 if empty)."""
        query = select(BaselineRow.mean, BaselineRow.std).where(BaselineRow.run_id == self.run_id)
        with self.store.sessions() as session:
            rows = session.execute(query).all()
        if not rows:
            return 0.0, 0.0
        return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)

    def recalibrated(self) -> list[tuple[int, float]]:
        """``(trajectory id, A~)`` of every entry whose recalibrated advantage is >= 0."""
        b, s = self.baseline()
        query = select(ReplayRow.trajectory_id, ReplayRow.ret).where(
            ReplayRow.run_id == self.run_id
        )
        with self.store.sessions() as session:
            rows = session.execute(query.order_by(ReplayRow.id)).all()
        scored = [(tid, recalibrate(ret, b, s, self.cfg.std_normalize)) for tid, ret in rows]
        return [(tid, a) for tid, a in scored if a >= 0]

    def __len__(self) -> int:
        query = select(func.count(ReplayRow.id)).where(ReplayRow.run_id == self.run_id)
        with self.store.sessions() as session:
            return int(session.scalar(query) or 0)

    def ready(self) -> bool:
        """More than ``trigger_factor`` x ``batch_size`` admissible entries are held."""
        return len(self.recalibrated()) > self.cfg.trigger_factor * self.cfg.batch_size

    def take(self, rng: random.Random) -> list[ReplaySample]:
        """A uniform sample (the largest power of two <= ``batch_size``), then clear the buffer.

        Reading and clearing are one transaction, and only the entries read are cleared, so an
        entry admitted meanwhile by another worker stays; on PostgreSQL the rows are locked, so
        two workers never take the same entries.
        """
        b, s = self.baseline()
        query = (
            select(ReplayRow.id, ReplayRow.trajectory_id, ReplayRow.ret)
            .where(ReplayRow.run_id == self.run_id)
            .order_by(ReplayRow.id)
            .with_for_update()
        )
        with self.store.sessions.begin() as session:
            rows = session.execute(query).all()
            pool = [
                (tid, a)
                for _, tid, ret in rows
                if (a := recalibrate(ret, b, s, self.cfg.std_normalize)) >= 0
            ]
            n = 1 << (min(len(pool), self.cfg.batch_size).bit_length() - 1) if pool else 0
            chosen = rng.sample(pool, n)
            seen = [rid for rid, _, _ in rows]
            session.execute(delete(ReplayRow).where(ReplayRow.id.in_(seen)))
        paths = self.store.load_paths([tid for tid, _ in chosen])  # paths only, not trees
        return [
            ReplaySample(tid, group, traj, adv)
            for (tid, adv), (group, traj) in zip(chosen, paths, strict=True)
        ]


__all__ = ["ReplayBuffer", "ReplayConfig", "ReplaySample", "recalibrate"]
