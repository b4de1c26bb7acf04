"""Checkpoints of a training run, written so that a kill at any moment leaves a usable one.

A run folder holds at most one complete checkpoint, named by ``checkpoint.json``::

    runs/RUN/checkpoint.json        {"step": 12, "dir": "ckpt-000012"}
    runs/RUN/ckpt-000012/           model weights and config (save_pretrained)
    runs/RUN/ckpt-000012/trainer.pt optimiser, RNG states, policy version, replay snapshot, ...

``step`` is the next RL step to run (0: SFT is done). A new checkpoint is written into a
``.tmp`` folder, flushed to disk, renamed, and only then named by ``checkpoint.json`` (itself
replaced atomically); older checkpoint folders are deleted after that. A SIGKILL therefore
leaves either the old or the new checkpoint named, never a half-written one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

POINTER = "checkpoint.json"
STATE = "trainer.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is named but cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Checkpoint:
    step: int  # the next RL step to run
    path: Path  # the folder with the model weights
    state: dict[str, Any]  # whatever the trainer saved beside the weights


def save(run_dir: Path, step: int, model: Any, state: dict[str, Any]) -> Path:
    """Write a checkpoint for ``step`` and make it the run's current one; returns its folder."""
    name = f"ckpt-{step:06d}"
    final, tmp = run_dir / name, run_dir / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(state, tmp / STATE)
    _fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)  # left by a kill after the rename, before the pointer
    os.replace(tmp, final)
    _write_atomic(run_dir / POINTER, json.dumps({"step": step, "dir": name}))
    for old in run_dir.glob("ckpt-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Checkpoint | None:
    """The run's current checkpoint, or None when it has none yet."""
    pointer = run_dir / POINTER
    if not pointer.exists():
        return None
    try:
        meta = json.loads(pointer.read_text())
        path = run_dir / meta["dir"]
        state = torch.load(path / STATE, weights_only=False)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"cannot read the checkpoint named by {pointer}: {exc}") from exc
    return Checkpoint(int(meta["step"]), path, state)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["Checkpoint", "CheckpointError", "latest", "save"]
