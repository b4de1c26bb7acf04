"""``branchgym train --resume``: a run killed with SIGKILL, at one moment or at ten random ones,
finishes as the uninterrupted run does, with a sound database and its replay buffer intact.

Every run here is a real ``branchgym train`` process on a small SearchQA config whose RL steps
carry signal and fill the SPEAR replay buffer. Runs are compared on what they did (tasks,
returns, end reasons, replay rows, evaluation) exactly, and on float metrics to 1e-4: two
fresh processes already differ in the last bits of summed entropies.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branchgym import checkpoint
from branchgym.rollouts.replay import ReplayBuffer, ReplayConfig
from branchgym.rollouts.store import TrajectoryStore
from branchgym.runlog import read_rows

STEPS, SAMPLES = 10, 4
CONFIG = f"""
preset = "searchqa"
[sft]
demos = 300
epochs = 3
[rl]
steps = {STEPS}
tasks_per_step = 4
sil = true
sil_warmup = 2
checkpoint_every = 3
[rollout]
samples_per_task = {SAMPLES}
[replay]
batch_size = 2
[eval]
episodes = 16
batch_size = 16
"""


def start(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "branchgym.cli", "train", "--out", str(out), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def fresh_run(tmp: Path) -> Path:
    (tmp / "cfg.toml").write_text(CONFIG)
    return tmp / "runs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same config, never interrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    out = fresh_run(tmp)
    finish(start(out, "--config", str(tmp / "cfg.toml")))
    return only_run(out)


def outcome(run_dir: Path) -> dict:
    """What a run did: its metric rows, summary, stored trajectories and replay buffer."""
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("minutes")
    with TrajectoryStore(f"sqlite:///{run_dir / 'trajectories.db'}") as store:
        trajs = [
            (t.step, t.ret, t.end_reason, t.won, t.n_turns, t.tool_calls, round(t.advantage, 4))
            for t in store.trajectory_rows(run_dir.name)
        ]
        snap = ReplayBuffer(store, run_dir.name, ReplayConfig()).snapshot()
    return {
        "rows": [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(run_dir)],
        "summary": summary,
        "trajectories": trajs,
        "replay": [row[1:] for row in snap["entries"]],  # ids differ between databases
        "baselines": [row[1:] for row in snap["baselines"]],
    }


def assert_same(actual, expected, where="run") -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-4, abs_tol=1e-5), (where, actual)
    else:
        assert actual == expected, where


def assert_sound(run_dir: Path) -> None:
    """The database passes SQLite's integrity check and holds only whole groups."""
    db = run_dir / "trajectories.db"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        per_group = conn.execute(
            "SELECT g.id, (SELECT count(*) FROM trajectories t WHERE t.group_id = g.id),"
            " (SELECT count(*) FROM trajectories t WHERE t.group_id = g.id AND NOT EXISTS"
            "  (SELECT 1 FROM segments s WHERE s.group_id = g.id AND s.seg_id = t.leaf_id))"
            " FROM groups g"
        ).fetchall()
    for gid, n_trajs, orphans in per_group:
        assert (n_trajs, orphans) == (SAMPLES, 0), f"group {gid} is partial"
    if (run_dir / checkpoint.POINTER).exists():
        checkpoint.latest(run_dir)  # a named checkpoint always loads


@pytest.mark.slow
def test_resume_after_a_sigkill_continues_as_if_never_interrupted(reference, tmp_path):
    out = fresh_run(tmp_path)
    proc = start(out, "--config", str(tmp_path / "cfg.toml"))
    wait_for_rows(out, proc, 5)  # checkpoints at 0 and 3: steps 3 and 4 are redone
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = only_run(out)
    assert checkpoint.latest(run_dir).step == 3
    assert_sound(run_dir)
    finish(start(out, "--resume", run_dir.name))
    assert_same(outcome(run_dir), outcome(reference))
    assert [r["step"] for r in read_rows(run_dir)] == list(range(STEPS))


@pytest.mark.chaos
@pytest.mark.slow
def test_sigkill_at_ten_random_moments(reference, tmp_path):
    """Kills 1-3 land anywhere in the first 20 s, but before the process's first RL row
    (start-up, tokenizer, SFT, the first RL step: a fast machine runs the whole config in
    20 s); kills 4-10 land a random fraction of a second after a random later step began
    writing, so they hit rollouts, store writes, updates and checkpoint saves."""
    rng = random.Random(20261124)
    out = fresh_run(tmp_path)
    targets = sorted(rng.sample(range(1, STEPS), 7))
    kills = 0
    for i in range(10):
        args = ["--config", str(tmp_path / "cfg.toml")] if i == 0 else ["--resume", "x"]
        if i > 0:
            args[1] = only_run(out).name
        proc = start(out, *args)
        if i < 3:
            wait_for_rows(out, proc, 1, timeout=rng.uniform(1.0, 20.0), strict=False)
        else:
            wait_for_rows(out, proc, targets[i - 3])
            time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert_sound(only_run(out))
    assert kills >= 9, "the run finished before the kills: the test tests too little"
    run_dir = only_run(out)
    if not (run_dir / "summary.json").exists():
        finish(start(out, "--resume", run_dir.name))
    assert_sound(run_dir)
    assert_same(outcome(run_dir), outcome(reference))


def wait_for_rows(
    out: Path, proc: subprocess.Popen, n: int, timeout: float = 300, strict: bool = True
) -> None:
    """Until this process has written ``n`` metric rows (a resumed process first cuts the
    file back to its checkpoint, so rows left by the process before it do not count), or has
    exited; past ``timeout`` it raises, unless not ``strict``."""
    started, deadline = time.time(), time.time() + timeout
    while time.time() < deadline:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        metrics = runs[0] / "metrics.jsonl" if runs else None
        mine = metrics is not None and metrics.exists() and metrics.stat().st_mtime > started
        if mine and len(read_rows(runs[0])) >= n:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.02)
    if strict:
        raise AssertionError(f"no {n} metric rows within {timeout} s")


@pytest.mark.slow
def test_resume_errors_are_one_clear_line(reference, tmp_path):
    def run(*args):
        cmd = [sys.executable, "-m", "branchgym.cli", "train", *args]
        wide = os.environ | {"COLUMNS": "400"}  # the error box must not wrap the long tmp paths
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=wide)

    done = run("--resume", str(reference))
    assert done.returncode == 2 and "finished (it has summary.json)" in done.stderr
    missing = run("--resume", "no-such-run", "--out", str(tmp_path))
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    mixed = run("--resume", str(reference), "--seed", "3")
    assert mixed.returncode == 2 and "keeps its own config" in mixed.stderr
