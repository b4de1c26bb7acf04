"""Checkpoints survive kills at any moment; run logs and plots join across a resume."""

from __future__ import annotations

import json
import time

import pytest
import torch

from branchgym import checkpoint
from branchgym.checkpoint import CheckpointError
from branchgym.plots import PANELS, moving_average, plot_run
from branchgym.runlog import METRICS, RunLog, read_rows


class TinySaver(torch.nn.Module):
    """Just enough of a PreTrainedModel: ``save_pretrained`` into a folder."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((2,), value))

    def save_pretrained(self, folder) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), folder / "weights.pt")


def test_latest_is_none_until_one_is_written_then_the_newest(tmp_path):
    assert checkpoint.latest(tmp_path) is None
    checkpoint.save(tmp_path, 0, TinySaver(0.0), {"n": 0})
    checkpoint.save(tmp_path, 3, TinySaver(3.0), {"n": 3})
    ckpt = checkpoint.latest(tmp_path)
    assert (ckpt.step, ckpt.state) == (3, {"n": 3})
    assert torch.load(ckpt.path / "weights.pt")["w"].tolist() == [3.0, 3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "ckpt-000003"]


def test_a_kill_while_writing_leaves_the_previous_checkpoint_named(tmp_path):
    checkpoint.save(tmp_path, 1, TinySaver(1.0), {"n": 1})
    half = tmp_path / "ckpt-000002.tmp"  # what a kill mid-save leaves behind
    half.mkdir()
    (half / "weights.pt").write_bytes(b"torn")
    assert checkpoint.latest(tmp_path).step == 1
    checkpoint.save(tmp_path, 2, TinySaver(2.0), {"n": 2})  # the next save clears it
    assert checkpoint.latest(tmp_path).state == {"n": 2}
    assert not half.exists()


def test_a_named_but_unreadable_checkpoint_is_a_clear_error(tmp_path):
    checkpoint.save(tmp_path, 1, TinySaver(1.0), {"n": 1})
    (tmp_path / "ckpt-000001" / checkpoint.STATE).write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint named by"):
        checkpoint.latest(tmp_path)


def _rows(steps):
    return [{"step": s, "success": s / 10, "rollout/entropy": 1.0 - s / 10} for s in steps]


def test_run_log_resumed_at_a_step_drops_the_rows_written_after_it(tmp_path):
    with RunLog(tmp_path, "run", {}) as log:
        for row in _rows(range(5)):
            log.write(row)
    with open(tmp_path / METRICS, "a") as f:
        f.write('{"step": 5, "succ')  # a row torn by a kill
    assert [r["step"] for r in read_rows(tmp_path)] == [0, 1, 2, 3, 4]
    with RunLog(tmp_path, "run", {}, start_step=3) as log:
        for row in _rows(range(3, 6)):
            log.write(row)
    assert [r["step"] for r in read_rows(tmp_path)] == [0, 1, 2, 3, 4, 5]


def test_tensorboard_curves_join_without_duplicate_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog(tmp_path, "run", {}) as log:
        for row in _rows(range(5)):
            log.write(row | {"success": 0.9})  # steps 3 and 4 are "lost" below
    with RunLog(tmp_path, "run", {}, start_step=3) as log:
        for row in _rows(range(3, 6)):
            log.write(row)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    success = {e.step: round(e.value, 6) for e in events.Scalars("success")}
    assert success == {0: 0.9, 1: 0.9, 2: 0.9, 3: 0.3, 4: 0.4, 5: 0.5}
    assert [e.step for e in events.Scalars("success")] == [0, 1, 2, 3, 4, 5]


def test_a_restart_from_step_0_purges_the_first_attempts_tensorboard_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog(tmp_path, "run", {}) as log:  # killed before its first checkpoint
        for row in _rows(range(3)):
            log.write(row | {"success": 0.9})
    with RunLog(tmp_path, "run", {}, start_step=0) as log:
        for row in _rows(range(3)):
            log.write(row)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("success")] == [
        (0, 0.0), (1, 0.1), (2, 0.2),
    ]  # fmt: skip
    assert [r["step"] for r in read_rows(tmp_path)] == [0, 1, 2]
    assert not list(tmp_path.glob("*.partial"))


def test_wandb_gets_the_rows_when_installed_and_asked_for(tmp_path, monkeypatch):
    import importlib.util
    import sys
    import types

    logged = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: types.SimpleNamespace(
        log=lambda row, step: logged.append((step, row)), finish=lambda: logged.append("done")
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    real_find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n: object() if n == "wandb" else real_find(n)
    )
    with RunLog(tmp_path, "run", {}) as log:
        log.write(_rows([0])[0])
    assert logged == []  # installed but not asked for: WANDB_PROJECT is unset
    monkeypatch.setenv("WANDB_PROJECT", "p")
    with RunLog(tmp_path, "run", {}) as log:
        log.write(_rows([0])[0])
    assert logged == [(0, {"success": 0.0, "rollout/entropy": 1.0}), "done"]


def test_a_real_wandb_run_gets_the_rows_offline(tmp_path, monkeypatch):
    """wandb itself, in offline mode (no server can be reached here): the run's file in the
    run folder holds the logged rows, read back from its record log."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_PROJECT", "branchgym-test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with RunLog(tmp_path, "run-w", {"seed": 0}) as log:
        for row in _rows(range(3)):
            log.write(row)
    (path,) = tmp_path.glob("wandb/offline-run-*/run-run-w.wandb")
    want = [{k: v for k, v in r.items() if k != "step"} for r in _rows(range(3))]
    deadline = time.monotonic() + 30  # wandb's service process may still be writing the file
    while True:
        history = _wandb_history(path)
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in history]
        if len(rows) >= len(want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows == want


def _wandb_history(path):
    """The ``history`` records of a ``.wandb`` file: a LevelDB-style log (32 KiB blocks of
    records with a 7-byte header: CRC, length, type) of W&B's protobuf ``Record``s, after a
    7-byte file header."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, pending, out = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's zero-filled tail
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            out.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return out


def test_plots_are_png_files_for_the_panels_with_data(tmp_path):
    (tmp_path / METRICS).write_text("".join(json.dumps(r) + "\n" for r in _rows(range(8))))
    written = plot_run(tmp_path, window=3)
    assert [p.stem for p in written] == ["success", "entropy"]  # no tool or SIL data here
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(PANELS) >= {"success", "entropy", "tool_calls", "branches", "sil_share"}


def test_moving_average_uses_fewer_values_at_the_start():
    assert moving_average([1, 2, 3, 4], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1, 2, 3], 1) == [1.0, 2.0, 3.0]
