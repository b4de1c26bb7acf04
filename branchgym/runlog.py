"""Per-step training metrics, written to every sink the run has.

- ``metrics.jsonl`` in the run folder, always: one JSON row per RL step (what ``branchgym
  report``, ``branchgym plot`` and the web viewer read).
- TensorBoard event files under ``tb/`` (``tensorboard --logdir runs``): every numeric value of
  a row as a scalar at its step.
- Weights & Biases, when ``wandb`` is installed and ``WANDB_PROJECT`` is set (``WANDB_MODE=
  offline`` works without a network): the same rows, under the run id.

A resumed run opens the log at the step it resumes from: rows of that step and later (written
after the checkpoint, then lost with the process) are dropped from ``metrics.jsonl`` and purged
from TensorBoard, so the curves join without a duplicated step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``; a torn last line (a kill mid-write) is ignored."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class RunLog:
    """The metric sinks of one run, opened at ``start_step``."""

    def __init__(self, run_dir: Path, run_id: str, config: dict, start_step: int = 0) -> None:
        self.run_dir = Path(run_dir)
        kept = [r for r in read_rows(self.run_dir) if r.get("step", -1) < start_step]
        path = self.run_dir / METRICS
        partial = path.with_suffix(".jsonl.partial")  # a kill here must not lose the kept rows
        partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(partial, path)
        self._jsonl = open(path, "a")  # noqa: SIM115 (closed in close())
        self._tb = self._wandb = None
        try:
            self._tb = _tensorboard(self.run_dir / "tb", start_step)
            self._wandb = _wandb(run_id, config, self.run_dir)
        except BaseException:
            self.close()
            raise

    def write(self, row: dict[str, Any]) -> None:
        """Log one step's row (it must hold ``step``)."""
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        scalars = {k: float(v) for k, v in row.items() if _is_number(v) and k != "step"}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, row["step"])
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=row["step"])

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tensorboard(folder: Path, start_step: int):
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=start_step)  # 0 too: a restart in place


def _wandb(run_id: str, config: dict, run_dir: Path):
    """A W&B run named after the branchgym run (resumed with it), its files in ``run_dir``."""
    if not os.environ.get("WANDB_PROJECT") or importlib.util.find_spec("wandb") is None:
        return None
    import wandb

    return wandb.init(id=run_id, name=run_id, config=config, resume="allow", dir=str(run_dir))


__all__ = ["METRICS", "RunLog", "read_rows"]
