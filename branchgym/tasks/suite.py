"""Seeded task suites, split into disjoint seed ranges, saved to and loaded from JSONL.

A task is fully determined by (env id, seed); splits are disjoint ranges of seeds, so a training
run can never sample a held-out episode. ``seen`` is held-out episodes from the training
distribution; ``unseen`` is reserved for environments that hold out layouts or object pairs.

A suite file holds one ``TaskRef`` per line as a JSON object, so an evaluation set can be
frozen, shared and diffed: ``save_suite(task_refs(...), "eval.jsonl")``, ``load_suite(path)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from branchgym.trajectory import TaskRef

SPLIT_OFFSETS: dict[str, int] = {"train": 0, "seen": 10_000_000, "unseen": 20_000_000}
_FIELDS = {f.name for f in fields(TaskRef)}


class SuiteError(ValueError):
    """A suite file that is not one TaskRef per line."""


def task_refs(env_id: str, split: str, n: int, start: int = 0) -> list[TaskRef]:
    """``n`` tasks of ``split``, from the ``start``-th onwards."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_OFFSETS)}")
    base = SPLIT_OFFSETS[split] + start
    return [TaskRef(env_id=env_id, seed=base + i, split=split) for i in range(n)]


def split_of_seed(seed: int) -> str:
    """The split whose seed range holds ``seed`` (for a bare ``reset(seed=...)``)."""
    starts = sorted((offset, name) for name, offset in SPLIT_OFFSETS.items())
    return next((name for offset, name in reversed(starts) if seed >= offset), "train")


def save_suite(tasks: Iterable[TaskRef], path: str | Path) -> int:
    """Write one task per line; returns how many were written."""
    lines = [json.dumps(asdict(t), sort_keys=True) for t in tasks]
    Path(path).write_text("".join(line + "\n" for line in lines))
    return len(lines)


def load_suite(path: str | Path) -> list[TaskRef]:
    """The tasks of a suite file, in order. Blank lines are skipped; anything else that is not
    a TaskRef raises ``SuiteError`` naming the line."""
    tasks = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            tasks.append(_parse(line, f"{path}:{number}"))
    return tasks


def _parse(line: str, where: str) -> TaskRef:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not {"env_id", "seed"} <= record.keys():
        raise SuiteError(f"{where}: a task needs at least env_id and seed")
    unknown = record.keys() - _FIELDS
    if unknown:
        raise SuiteError(f"{where}: unknown fields {sorted(unknown)}")
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        raise SuiteError(f"{where}: seed must be an integer")
    return TaskRef(**record)


def episode_seed(
    np_random: np.random.Generator, seed: int | None, options: dict[str, Any] | None
) -> tuple[int, str | None]:
    """An environment's episode seed and split in ``reset``: the task's when
    ``options["task"]`` is a ``TaskRef``, else ``seed``, else one drawn from the env's
    generator (split None: the env's default)."""
    task = (options or {}).get("task")
    if isinstance(task, TaskRef):
        return task.seed, task.split
    if seed is not None:
        return seed, None
    return int(np_random.integers(2**31)), None
