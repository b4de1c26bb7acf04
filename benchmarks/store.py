"""Trajectory store throughput and replay latency, on SQLite and on a real PostgreSQL server.

    branchgym bench store          # 1,000,000 stored trajectories; a few minutes

- ``sqlite_segments_per_s`` / ``postgres_segments_per_s``: segments written per second by
  ``write_group`` (one transaction per group) for ARPO-shaped trees: 16 root-to-leaf paths of
  12 turns whose first turns are shared, ~290 segments of 6-60 tokens per group; the median of
  3 writes of 200 groups.
- ``replay_p50_ms``: the median time of one replay round on SQLite once the store holds
  ``trajectories`` trajectories: admit a step's 8 groups, evict old entries, and ``take`` a
  batch of 16 (recalibration, sampling, loading the 16 trajectories' trees), over 30 rounds.
- ``fill_trajectories_per_s``: the rate at which the million were written (small groups).

SQLite runs in WAL mode with ``synchronous=NORMAL`` (atomic and consistent; a power cut may
lose the last commits, never half a group). PostgreSQL runs with fsync off, as the test
fixture does: its figure is an upper bound for a durable server.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from branchgym.rollouts.replay import ReplayBuffer, ReplayConfig
from branchgym.rollouts.store import TrajectoryStore
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

E, M = SegmentKind.ENV, SegmentKind.MODEL


def _seg(rng: random.Random, i: int, parent: int | None, kind: SegmentKind) -> Segment:
    n = rng.randint(6, 16) if kind is M else rng.randint(20, 60)
    ids = tuple(rng.randrange(1024) for _ in range(n))
    extra = {}
    if kind is M:
        extra = {
            "logprobs": tuple(-rng.random() for _ in range(n)),
            "entropies": tuple(rng.random() for _ in range(n)),
        }
    return Segment(i, parent, kind, ids, "x" * (4 * n), **extra)


def tree(rng: random.Random, step: int, paths: int = 16, turns: int = 12) -> Group:
    """An ARPO-shaped tree: 8 full paths from the prompt, 8 branched at random depths."""
    segs = [_seg(rng, 0, None, E)]
    chains: list[list[int]] = []
    for p in range(paths):
        if p < paths // 2:
            prefix, start = [0], 0
        else:
            parent = chains[rng.randrange(len(chains))]
            depth = rng.randrange(1, turns)
            prefix, start = parent[: 2 * depth + 1], depth
        chain = list(prefix)
        for _ in range(start, turns):
            for kind in (M, E):
                segs.append(_seg(rng, len(segs), chain[-1], kind))
                chain.append(len(segs) - 1)
        chains.append(chain[:-1])  # every path ends on its own model turn
    trajs = []
    for chain in chains:
        ret = float(rng.random() < 0.4)
        trajs.append(Trajectory(chain[-1], tuple(chain), ret, EndReason.TERMINATED, ret - 0.4))
    return Group(TaskRef("bench/Tree-v0", step), step, step, tuple(segs), tuple(trajs))


def small(rng: random.Random, step: int, paths: int = 16) -> Group:
    """A prompt and one model turn per path: the cheapest group that holds 16 trajectories."""
    segs = [_seg(rng, 0, None, E)] + [_seg(rng, i + 1, 0, M) for i in range(paths)]
    trajs = []
    for i in range(paths):
        ret = float(rng.random() < 0.4)
        trajs.append(Trajectory(i + 1, (0, i + 1), ret, EndReason.TERMINATED, ret - 0.4, n_turns=1))
    return Group(TaskRef("bench/Small-v0", step), step, step, tuple(segs), tuple(trajs))


def segments_per_s(url: str, groups: int, seed: int, repeats: int = 3) -> float:
    """The median rate of ``repeats`` writes of the same ``groups`` trees (each write takes
    well under a second, so one burst of another process would move a single one a lot)."""
    rng = random.Random(seed)
    batch = [tree(rng, i) for i in range(groups)]
    rates = []
    with TrajectoryStore(url) as store:
        for r in range(repeats):
            store.create_run(f"bench-{r}", {})
            start = time.perf_counter()
            for g in batch:
                store.write_group(f"bench-{r}", g)
            rates.append(sum(len(g.segments) for g in batch) / (time.perf_counter() - start))
    return statistics.median(rates)


def replay_rounds(url: str, trajectories: int, rounds: int, seed: int) -> dict:
    rng = random.Random(seed)
    with TrajectoryStore(url) as store:
        store.create_run("fill", {})
        start = time.perf_counter()
        for step in range(trajectories // 16):
            store.write_group("fill", small(rng, step))
        fill_rate = trajectories / (time.perf_counter() - start)
        store.create_run("live", {})
        buffer = ReplayBuffer(store, "live", ReplayConfig(batch_size=16, tolerate_steps=10))
        times = []
        for step in range(rounds):
            ids = [store.write_group("live", tree(rng, step)) for _ in range(8)]
            t0 = time.perf_counter()
            buffer.admit(ids)
            buffer.evict(step)
            taken = buffer.take(rng) if buffer.ready() else []
            times.append((time.perf_counter() - t0) * 1000)
            assert all(s.trajectory.ret == 1.0 for s in taken)
    return {
        "replay_p50_ms": statistics.median(times),
        "replay_p90_ms": statistics.quantiles(times, n=10)[-1],
        "fill_trajectories_per_s": fill_rate,
    }


def main(trajectories: int = 1_000_000, groups: int = 200, rounds: int = 30, seed: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = segments_per_s(f"sqlite:///{Path(tmp) / 'w.db'}", groups, seed)
        replay = replay_rounds(f"sqlite:///{Path(tmp) / 'r.db'}", trajectories, rounds, seed)
    try:
        from branchgym.testing import postgres_server

        with postgres_server() as url:
            postgres: float | str = segments_per_s(url, groups, seed)
    except (RuntimeError, ImportError, OSError) as exc:
        postgres = f"not measured: {exc}"
    return {
        "benchmark": "store",
        "config": {"trajectories": trajectories, "groups": groups, "rounds": rounds},
        "sqlite_segments_per_s": sqlite,
        "postgres_segments_per_s": postgres,
        **replay,
        "goals": {
            "sqlite_segments_per_s_at_least_50000": sqlite >= 50_000,
            "replay_p50_ms_at_most_20": replay["replay_p50_ms"] <= 20,
        },
    }
