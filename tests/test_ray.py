"""``branchgym train --ray``: two rollout workers and two environment workers on a local Ray,
one learner, a real PostgreSQL store. The run must finish, every group must name the worker
that sampled it, and the policy versions must show the weights reaching the workers (a worker
refuses to sample with weights other than the version it is asked for). With
``ray.max_staleness`` the rollouts of the next step run during the update, and a Ray run
interrupted after a checkpoint resumes to the same trajectories as an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branchgym import checkpoint
from branchgym.rollouts.store import TrajectoryStore
from branchgym.runlog import read_rows
from tests.conftest import group_rows, train_in_subprocess
from tests.test_postgres import fresh_db

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.slow]

CONFIG = """
preset = "searchqa"
[sft]
demos = 300
epochs = 3
[rl]
steps = 4
tasks_per_step = 4
# every step updates, signal or not: these tests follow the weights, not the learning
drop_uniform_groups = false
[rollout]
samples_per_task = 4
[eval]
episodes = 16
batch_size = 16
[ray]
enabled = true
rollout_workers = 2
env_workers = 2
"""


def test_a_ray_run_on_postgres_tags_groups_with_worker_and_version(postgres_url, tmp_path):
    url = fresh_db(postgres_url)
    (tmp_path / "ray.toml").write_text(CONFIG)
    train_in_subprocess(tmp_path / "ray.toml", url, tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "summary.json").exists()
    rows = group_rows(url)
    assert len(rows) == 4 * 4
    assert {w for _, _, w in rows} == {"rollout-0", "rollout-1"}
    for step in range(4):  # each worker sampled half of every step's tasks
        workers = [w for s, _, w in rows if s == step]
        assert sorted(workers) == ["rollout-0"] * 2 + ["rollout-1"] * 2
    versions = [max(v for s, v, _ in rows if s == step) for step in range(4)]
    assert versions == sorted(versions) and versions[-1] > 0  # updates reached the workers
    assert len({v for s, v, _ in rows if s == 3}) == 1  # one version within a step


def test_ray_needs_a_database_every_worker_reaches(tmp_path):
    from typer.testing import CliRunner

    from branchgym.cli import app

    result = CliRunner().invoke(
        app, ["train", "--preset", "smoke", "--ray", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--db postgresql://" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_async_rollouts_sample_a_step_ahead_on_weights_one_version_old(postgres_url, tmp_path):
    """Six steps at most, stopped earlier by a token budget: the step sampled ahead of the
    last one trained must be gone from the store."""
    url = fresh_db(postgres_url)
    config = CONFIG.replace("steps = 4", "steps = 6\ntoken_budget = 1000")
    (tmp_path / "ray.toml").write_text(config + "max_staleness = 1\n")
    train_in_subprocess(tmp_path / "ray.toml", url, tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    trained = [r["step"] for r in read_rows(run)]
    assert 2 <= len(trained) < 6  # the budget stopped it, with a step in flight
    rows = group_rows(url)
    assert sorted({s for s, _, _ in rows}) == trained  # nothing of the step sampled ahead
    version = {s: v for s, v, _ in rows}
    assert all(len({v for s2, v, _ in rows if s2 == s}) == 1 for s in version)
    # step 1 was sent with step 0, before the first update: both sampled the SFT weights
    assert version[0] == version[1] == 0
    staleness = [r["staleness"] for r in read_rows(run)]
    assert max(staleness) == 1  # the learner trained on rollouts one version old...
    assert min(staleness) >= 0  # ... and never on older ones
    assert [version[s] for s in trained] == sorted(version.values())


def test_async_rollouts_need_ray(tmp_path):
    from typer.testing import CliRunner

    from branchgym.cli import app

    (tmp_path / "a.toml").write_text("[ray]\nmax_staleness = 1\n")
    file = ["--config", str(tmp_path / "a.toml")]
    for how in (file, ["--max-staleness", "1"]):  # the config file's key, or the flag
        args = ["train", "--preset", "smoke", *how, "--out", str(tmp_path / "runs")]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert "ray.max_staleness" in result.output and "--ray" in result.output


def _trajectories(url: str) -> list[tuple]:
    """Every stored trajectory with its group's step, worker, task and version. Ordered by
    those, not by id: the two workers write their groups concurrently."""
    from sqlalchemy import text

    query = text(
        "SELECT g.step, g.worker, g.task_seed, g.policy_version, t.ret, t.end_reason, t.won,"
        " t.n_turns, t.tool_calls, round(t.advantage::numeric, 4) FROM groups g"
        " JOIN trajectories t ON t.group_id = g.id ORDER BY g.step, g.worker, g.task_seed, t.id"
    )
    with TrajectoryStore(url) as store, store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query).all()]


def test_a_ray_run_interrupted_after_a_checkpoint_resumes_step_identical(postgres_url, tmp_path):
    config = CONFIG.replace("steps = 4", "steps = 4\ncheckpoint_every = 2")
    (tmp_path / "ray.toml").write_text(config)
    reference_db, resumed_db = fresh_db(postgres_url), fresh_db(postgres_url)
    train_in_subprocess(tmp_path / "ray.toml", reference_db, tmp_path / "reference")
    (reference,) = (tmp_path / "reference").iterdir()

    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "branchgym.cli", "train", "--config", str(tmp_path / "ray.toml")]
    proc = subprocess.Popen([*cmd, "--db", resumed_db, "--out", str(out)], stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # interrupt once step 2 is saved
        pointer = next(out.glob(f"*/{checkpoint.POINTER}"), None)
        if pointer is not None and json.loads(pointer.read_text())["step"] == 2:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            break
        time.sleep(0.05)
    proc.communicate(timeout=120)
    (run,) = out.iterdir()
    assert not (run / "summary.json").exists(), "the run ended before it was interrupted"
    resume = [sys.executable, "-m", "branchgym.cli", "train", "--resume", str(run)]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    assert _trajectories(resumed_db) == _trajectories(reference_db)
    keep = ("step", "success", "signal_groups", "staleness", "rollout/tokens_generated")
    rows = [{k: r[k] for k in keep} for r in read_rows(run)]
    assert rows == [{k: r[k] for k in keep} for r in read_rows(Path(reference))]


def test_bench_scale_runs_with_a_tiny_budget():
    from typer.testing import CliRunner

    from branchgym.cli import app

    sets = ["rounds=1", "tasks=2", "samples=2", "max_turns=2", "steps=2"]
    args = ["bench", "scale"] + [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["sync_steps_per_s"] > 0 and out["async_steps_per_s"] > 0
    assert out["async_speedup"] == round(out["async_steps_per_s"] / out["sync_steps_per_s"], 3)


def test_a_hanging_env_holds_one_thread_of_its_env_worker_not_the_worker():
    # An actor runs one call at a time unless threaded: a hung step in one env made every
    # later call to that worker, from any rollout worker, time out as env_error.
    import ray

    from branchgym.config import TrainConfig
    from branchgym.distributed import RayEnv, env_actor_class, start
    from branchgym.envs.pythontool import SandboxLimits

    cfg = TrainConfig()
    start(dataclasses.replace(cfg.ray, num_cpus=2))
    try:
        slow = {"limits": SandboxLimits(wall_seconds=30.0, cpu_seconds=30)}
        worker = env_actor_class(ray, cfg).remote("branchgym/PythonTool-v0", slow, False)
        stuck, healthy = RayEnv(worker, timeout=3.0), RayEnv(worker, timeout=10.0)
        stuck.reset(seed=1), healthy.reset(seed=2)
        with pytest.raises(ray.exceptions.GetTimeoutError):
            stuck.step("<python>import time\ntime.sleep(25)</python>")
        obs = healthy.step("<python>print(6 * 7)</python>")[0]
        assert "42" in obs  # not queued behind the sleeping call
    finally:
        ray.shutdown()


def test_a_sampler_whose_workers_cannot_start_kills_the_actors_it_made(tiny_tok, monkeypatch):
    import ray

    from branchgym.config import TrainConfig, config_json
    from branchgym.distributed import RaySampler
    from tests.conftest import build_tiny_lm

    closed = []
    monkeypatch.setattr(RaySampler, "close", lambda self: closed.append(len(self.workers)))
    cfg = TrainConfig(db="postgresql://nobody@127.0.0.1:1/none")  # no worker can open it
    cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, enabled=True, num_cpus=2))
    try:
        with pytest.raises(ray.exceptions.RayActorError):
            RaySampler(cfg, config_json(cfg), "r", tiny_tok, build_tiny_lm(tiny_tok), 0)
        assert closed == [cfg.ray.rollout_workers]  # the actors it had made were killed
    finally:
        ray.shutdown()
