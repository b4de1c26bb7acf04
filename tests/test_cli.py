"""The ``branchgym`` command line: help, bad input, and the smoke preset end to end."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from branchgym.cli import app
from branchgym.rollouts.store import TrajectoryStore

runner = CliRunner()


def test_help_lists_train():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "train" in result.output
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--preset", "--seed", "--out", "--db", "--rl-steps", "--model"):
        assert flag in result.output


def test_console_script_is_installed():
    exe = shutil.which("branchgym")
    assert exe is not None
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "train" in out.stdout


def test_unknown_preset_fails_with_a_clear_message(tmp_path):
    result = runner.invoke(app, ["train", "--preset", "nope", "--out", str(tmp_path)])
    assert result.exit_code != 0
    text = " ".join(result.output.split())  # rich may wrap the error box
    assert "unknown preset 'nope'" in text
    assert "quickstart" in text and "smoke" in text
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_bad_db_url_fails_fast_with_a_clear_message(tmp_path):
    result = runner.invoke(
        app, ["train", "--preset", "smoke", "--out", str(tmp_path), "--db", "nosuchdb://x"]
    )
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "cannot open trajectory store" in text and "--db" in text
    assert list(tmp_path.iterdir()) == []  # no half-made run folder is left behind


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    result = runner.invoke(
        app, ["train", "--preset", "smoke", "--out", str(tmp_path), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "SFT epoch 1: loss" in result.output  # progress also reaches logs, not just bars
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert run_dir.name.endswith("-seed1")

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("sft_success", "sft_stderr", "rl_success", "rl_stderr"):
        assert isinstance(summary[key], float), key
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["heldout_episodes"] == 16
    assert summary["seed"] == 1
    assert isinstance(summary["minutes"], float) and summary["minutes"] > 0
    # stderr is the binomial one: sqrt(p (1 - p) / n)
    p = summary["rl_success"]
    assert summary["rl_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 16))

    store = TrajectoryStore(f"sqlite:///{run_dir / 'trajectories.db'}")
    try:
        (run,) = store.list_runs()
        assert run.id == run_dir.name
        assert run.n_groups == 2 * 2  # smoke: 2 RL steps x 2 tasks per step
        assert run.n_trajectories == 4 * run.n_groups  # 4 samples per task
        assert store.run_config(run.id)["seed"] == 1
        group = store.load_group(store.groups(run.id, step=0)[0])
        assert len(group.trajectories) == 4
    finally:
        store.close()

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert all(0.0 <= r["success"] <= 1.0 for r in rows)
    assert (run_dir / "policy" / "config.json").exists()
    assert (run_dir / "policy" / "tokenizer.json").exists()

    result = runner.invoke(
        app, ["report", str(run_dir), str(tmp_path / "missing"), "--window", "1"]
    )
    assert result.exit_code == 0, result.output
    assert f"| {run_dir.name} | 1 |" in result.output
    assert "Mean gain over 1 runs" in result.output
    assert "| 0-0 |" in result.output and "| 1-1 |" in result.output  # one row per RL step
    assert "skipping" in result.output

    # Any Hugging Face folder replaces the embedded model: here, the run's own policy.
    again = tmp_path / "again"
    result = runner.invoke(
        app,
        ["train", "--preset", "smoke", "--out", str(again), "--model", str(run_dir / "policy")],
    )
    assert result.exit_code == 0, result.output
    (run2,) = list(again.iterdir())
    config = json.loads((run2 / "policy" / "config.json").read_text())
    assert (
        config["vocab_size"]
        == json.loads((run_dir / "policy" / "config.json").read_text())["vocab_size"]
    )
    assert json.loads((run2 / "summary.json").read_text())["heldout_episodes"] == 16


def test_bad_model_path_fails_with_a_clear_message(tmp_path):
    result = runner.invoke(
        app, ["train", "--preset", "smoke", "--out", str(tmp_path), "--model", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "cannot load a causal LM" in text and "--model" in text
    assert list(tmp_path.iterdir()) == []


def test_report_refuses_folders_without_a_finished_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert "finished run" in " ".join(result.output.split())
