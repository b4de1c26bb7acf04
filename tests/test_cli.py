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
from branchgym.train import with_advantages

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


def test_config_prints_a_preset_that_train_accepts_back(tmp_path):
    result = runner.invoke(app, ["config", "smoke"])
    assert result.exit_code == 0 and result.output.startswith('preset = "smoke"\n')
    (tmp_path / "c.toml").write_text(result.output.replace("\nsteps = 2\n", "\nstepz = 2\n"))
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "c.toml: rl.stepz: unknown key; allowed: steps" in text.replace("│ │ ", "")
    bad = runner.invoke(app, ["config", "nope"])
    assert bad.exit_code == 2 and "unknown preset 'nope'" in " ".join(bad.output.split())


def test_plot_needs_a_run_folder(tmp_path):
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2
    assert "metrics.jsonl: not a run folder" in " ".join(result.output.split())


def test_unknown_env_fails_with_a_clear_message(tmp_path):
    result = runner.invoke(app, ["train", "--env", "nope/X-v0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no environment 'nope/X-v0'" in text and "branchgym/SearchQA-v0" in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_smoke_train_on_searchqa(tmp_path):
    args = ["train", "--preset", "smoke", "--env", "branchgym/SearchQA-v0", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_id"] == "branchgym/SearchQA-v0"
    assert 0.0 <= summary["sft_success"] <= 1.0 and 0.0 <= summary["rl_success"] <= 1.0


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


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["arpo", "aepo"])
def test_smoke_train_with_branching_logs_tree_metrics(tmp_path, algo):
    args = ["train", "--preset", "smoke", "--out", str(tmp_path), "--algo", algo]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["rollout/trees"] == 2 and row["rollout/trajectories_per_tree"] == 4
        assert row["rollout/tokens_generated"] > 0 and "rollout/branch_points_per_tree" in row
        assert sum(v for k, v in row.items() if k.startswith("end/")) == 8


@pytest.mark.slow
def test_rollout_writes_trees_that_read_back_identically(tmp_path, monkeypatch):
    from branchgym.collect import CollectConfig
    from branchgym.rollouts import manager as manager_mod

    captured = []
    original = manager_mod.RolloutManager.rollout

    def spy(self, tasks, step=0, version=0):
        groups = original(self, tasks, step, version)
        captured.extend(groups)
        return groups

    monkeypatch.setattr(manager_mod.RolloutManager, "rollout", spy)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = CollectConfig(algo="arpo", n=4, tasks=2, db=db, max_turns=3)
    from branchgym.collect import collect

    result = collect(cfg)
    assert result["trees"] == 2 and result["trajectories_per_tree"] == 4
    with TrajectoryStore(db) as store:
        (run,) = store.list_runs()
        assert run.id == result["run"] and run.n_trajectories == 8
        loaded = [store.load_group(g) for g in store.groups(run.id)]
    assert len(loaded) == len(captured) == 2
    for got, want in zip(loaded, captured, strict=True):  # stored with GRPO's advantages
        assert got.trajectories == with_advantages(want, std_normalize=True).trajectories
        for a, b in zip(got.segments, want.segments, strict=True):
            assert (a.id, a.parent_id, a.kind, a.token_ids, a.text) == (
                b.id,
                b.parent_id,
                b.kind,
                b.token_ids,
                b.text,
            )
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-6)
            assert a.entropies == pytest.approx(b.entropies, abs=1e-5)


def test_a_collection_that_fails_before_its_first_groups_leaves_no_run(tmp_path, monkeypatch):
    from branchgym import collect as collect_mod
    from branchgym.agents.openai import ServerError

    def dead(self, tasks, step=0, version=0):
        raise ServerError("the server at http://127.0.0.1:9 is down")

    monkeypatch.setattr(collect_mod.RolloutManager, "rollout", dead)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(ServerError):
        collect_mod.collect(collect_mod.CollectConfig(n=2, tasks=1, db=db, max_turns=1))
    with TrajectoryStore(db) as store:
        assert store.list_runs() == []


def test_two_collections_in_the_same_second_get_their_own_runs(tmp_path, monkeypatch):
    from branchgym import collect as collect_mod

    monkeypatch.setattr(collect_mod.time, "strftime", lambda fmt: "20261125-120000")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = collect_mod.CollectConfig(n=2, tasks=1, db=db, max_turns=1)
    first, second = collect_mod.collect(cfg)["run"], collect_mod.collect(cfg)["run"]
    assert first != second
    with TrajectoryStore(db) as store:
        assert sorted(r.id for r in store.list_runs()) == sorted([first, second])
        assert all(r.n_trajectories == 2 for r in store.list_runs())


def test_rollout_rejects_unknown_env_and_algo(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = runner.invoke(app, ["rollout", "--env", "nope/Nothing-v0", "--db", db])
    assert result.exit_code == 2 and "no environment 'nope/Nothing-v0'" in result.output
    result = runner.invoke(app, ["rollout", "--algo", "ppo", "--db", db])
    assert result.exit_code == 2 and "unknown algorithm" in result.output
    assert not (tmp_path / "r.db").exists()  # nothing written for a bad command


def test_rollout_reads_a_config_file_and_flags_win_over_it(tmp_path, monkeypatch):
    from branchgym import collect as collect_mod

    seen = []
    monkeypatch.setattr(collect_mod, "collect", lambda cfg, progress=None: seen.append(cfg) or {})
    cfg_file = tmp_path / "rollout.toml"
    cfg_file.write_text(
        'env_id = "branchgym/SearchQA-v0"\nalgo = "aepo"\nn = 8\ntasks = 3\n'
        "[env_kwargs]\nmax_hops = 2\n[backend]\ntimeout = 5.0\n"
    )
    result = runner.invoke(app, ["rollout", "--config", str(cfg_file), "--n", "4"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.env_id, cfg.algo, cfg.n, cfg.tasks) == ("branchgym/SearchQA-v0", "aepo", 4, 3)
    assert cfg.env_kwargs == {"max_hops": 2} and cfg.backend.timeout == 5.0
    assert cfg.max_turns == collect_mod.CollectConfig.max_turns  # untouched: the default
    cfg_file.write_text("n = 8\nbranches = 2\n")
    result = runner.invoke(app, ["rollout", "--config", str(cfg_file)])
    assert result.exit_code == 2 and "branches: unknown key" in result.output
    cfg_file.write_text("n = 0\n")
    result = runner.invoke(app, ["rollout", "--config", str(cfg_file)])
    assert result.exit_code == 2 and "must be at least 1" in result.output
    assert len(seen) == 1


@pytest.mark.slow
def test_bench_branching_runs_with_a_tiny_budget():
    args = ["bench", "branching", "--set", "tasks=2", "--set", "demos=16", "--set", "sft_steps=2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for env in ("household", "searchqa"):
        assert out[env]["generated_over_tree_tokens"] == 1.0  # no shared prefix generated twice
        assert out[env]["arpo_trees"]["trajectories_per_tree"] == 16
        assert out[env]["token_ratio"] > 0 and out[env]["wall_ratio"] > 0
    assert set(out["goals"]) == {
        "token_ratio_within_5pct_of_predicted",
        "token_ratio_at_most_0.8",
        "wall_ratio_at_most_token_ratio_plus_0.1",
    }


@pytest.mark.slow
def test_bench_rollout_cache_counts_less_attention_with_housekeeping_on():
    # 30 SFT steps: a policy that barely trained writes every turn to the token limit, so no
    # row stops early and nothing is left to compact or park (the ratio is then exactly 1)
    args = ["bench", "rollout-cache", "--set", "tasks=2", "--set", "demos=16"]
    result = runner.invoke(app, [*args, "--set", "sft_steps=30", "--set", "repeats=1"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for env in ("household", "searchqa"):
        for sampler in ("grpo", "arpo"):
            r = out[env][sampler]
            # the same paths either way, unless float rounding moved a draw across a CDF step
            assert r["tokens_on"] == pytest.approx(r["tokens_off"], rel=0.1), r
            assert 0 < r["attention_cells_ratio"] < 1.0 and r["wall_ratio"] > 0, r


@pytest.mark.slow
def test_bench_prefix_and_entropy_run_with_a_tiny_budget():
    args = ["bench", "prefix", "--set", "prefix_tokens=64", "--set", "repeats=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # 64 once + 16 x (1 + 31) with reuse; 16 x (64 + 31) without
    assert out["reuse"]["tokens"] == 64 + 16 * 32 and out["no_reuse"]["tokens"] == 16 * 95
    tiny = ["--set", "tasks=1", "--set", "samples=2", "--set", "demos=16", "--set", "sft_steps=2"]
    result = runner.invoke(app, ["bench", "entropy", *tiny])
    assert result.exit_code == 0, result.output
    for env in json.loads(result.output).values():
        if isinstance(env, dict) and "positions" in env:
            low, mid = env["lower_bound"], env["midpoint"]
            assert env["positions"] > 0 and low["mean_abs_error"] >= 0
            assert mid["mean_abs_error"] <= env["head_only"]["mean_abs_error"]


def test_bench_names_what_exists():
    result = runner.invoke(app, ["bench", "nosuch"])
    assert result.exit_code == 2 and "branching" in result.output
    result = runner.invoke(app, ["bench", "branching", "--set", "bogus=1"])
    assert result.exit_code == 2 and "tasks" in result.output


@pytest.mark.slow
def test_bench_store_runs_with_a_tiny_budget():
    args = ["bench", "store", "--set", "trajectories=320", "--set", "groups=5", "--set", "rounds=3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sqlite_segments_per_s"] > 0 and out["replay_p50_ms"] > 0
    assert out["postgres_segments_per_s"] > 0  # the real server the library's helper starts


@pytest.mark.slow
def test_smoke_train_with_sil_logs_the_buffer(tmp_path):
    result = runner.invoke(app, ["train", "--preset", "smoke", "--out", str(tmp_path), "--sil"])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("sil/buffer" in r and "sil/weight" in r for r in rows)


def test_env_picks_the_preset_tuned_for_it():
    from branchgym.config import preset, preset_for_env

    assert preset_for_env("branchgym/SearchQA-v0") == "searchqa"
    assert preset("searchqa").env_id == "branchgym/SearchQA-v0"
    assert preset_for_env("branchgym/Household-v1") == "quickstart"


@pytest.mark.parametrize(
    ("module", "config", "extra"),
    [
        ("ray", "[ray]\nenabled = true", "branchgym[ray]"),
        ("peft", "[lora]\nrank = 4", "branchgym[lora]"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, module, config, extra):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    (tmp_path / "c.toml").write_text(f'preset = "smoke"\ndb = "postgresql://u@h/db"\n{config}\n')
    args = ["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"pip install '{extra}'" in result.output
    assert "Traceback" not in result.output
