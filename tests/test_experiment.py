"""``branchgym experiment compare`` on the smoke preset: one shared cold start, every method at
an equal token budget, results.json and plots, and a second call that trains nothing."""

from __future__ import annotations

import json

import pytest

from branchgym.configio import ConfigError
from branchgym.experiment import (
    METHODS,
    _method_config,
    compare,
    experiment,
    markdown,
    slug,
    with_overrides,
)
from branchgym.runlog import read_rows

pytestmark = pytest.mark.slow


def test_compare_runs_every_method_from_one_warm_start_at_equal_budget(tmp_path):
    exp = experiment("smoke")
    (env_id,) = exp.envs
    budget = exp.token_budget[env_id]
    results = compare(exp, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    env_dir = tmp_path / slug(env_id)
    (warm,) = (env_dir / "warm" / "seed0").iterdir()
    for method in METHODS:
        (run,) = (env_dir / method / "seed0").iterdir()
        config = json.loads((run / "config.json").read_text())
        assert config["model_path"] == str(warm / "policy") and config["sft"]["epochs"] == 0
        tokens = [r["rollout/tokens_generated"] for r in read_rows(run)]
        assert sum(tokens) >= budget > sum(tokens[:-1])  # stopped at the first step past it
        row = results["envs"][env_id][method]
        assert row["seeds"] == 1 and row["tokens"] == sum(tokens)
        assert len(row["entropy"]) == len(tokens) == row["steps"]
    assert results["envs"][env_id]["warm"]["tokens"] == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        f"{slug(env_id)}-entropy.png",
        f"{slug(env_id)}-success.png",
    ]
    assert markdown(results).count("\n| branchgym/Household-v0 |") == len(METHODS) + 1
    before = sorted(p for p in tmp_path.rglob("summary.json"))
    assert compare(exp, tmp_path) == results  # finished runs are kept, nothing trains again
    assert sorted(p for p in tmp_path.rglob("summary.json")) == before


def test_a_config_file_reaches_every_run_and_keeps_the_presets_overrides(tmp_path):
    exp = with_overrides(experiment("cpu"), {"rl": {"sil_warmup": 10}, "eval": {"episodes": 50}})
    env_id = "branchgym/SearchQA-v0"
    cfg = _method_config(exp, env_id, 1, "aepo+spear", tmp_path / "policy")
    assert (cfg.rl.sil_warmup, cfg.rl.sil, cfg.rollout.algo) == (10, True, "aepo")
    assert (cfg.eval.episodes, cfg.eval.greedy) == (50, False)  # merged into the preset's eval
    assert cfg.env_id == env_id and cfg.seed == 1 and cfg.learner.lr == 1e-4
    with pytest.raises(ConfigError, match=r"rl\.bogus: unknown key"):
        with_overrides(exp, {"rl": {"bogus": 1}})
    with pytest.raises(ConfigError, match="env_id: set per run"):
        with_overrides(exp, {"env_id": "branchgym/SearchQA-v0"})
