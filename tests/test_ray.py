"""``branchgym train --ray``: two rollout workers and two environment workers on a local Ray,
one learner, a real PostgreSQL store. The run must finish, every group must name the worker
that sampled it, and the policy versions must show the weights reaching the workers (a worker
refuses to sample with weights other than the version it is asked for)."""

from __future__ import annotations

import pytest

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
