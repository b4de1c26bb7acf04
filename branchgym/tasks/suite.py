"""Seeded task suites, split into disjoint seed ranges.

A task is fully determined by (env id, seed); splits are disjoint ranges of seeds, so a training
run can never sample a held-out episode. ``seen`` is held-out episodes from the training
distribution; ``unseen`` is reserved for environments that hold out layouts or object pairs.
"""

from __future__ import annotations

from branchgym.trajectory import TaskRef

SPLIT_OFFSETS: dict[str, int] = {"train": 0, "seen": 10_000_000, "unseen": 20_000_000}


def task_refs(env_id: str, split: str, n: int, start: int = 0) -> list[TaskRef]:
    """``n`` tasks of ``split``, from the ``start``-th onwards."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_OFFSETS)}")
    base = SPLIT_OFFSETS[split] + start
    return [TaskRef(env_id=env_id, seed=base + i, split=split) for i in range(n)]
