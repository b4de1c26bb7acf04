"""``branchgym experiment compare`` on the smoke preset: one shared cold start, every method at
an equal token budget, results.json and plots, and a second call that trains nothing."""

from __future__ import annotations

import json

import pytest

from branchgym.experiment import METHODS, compare, experiment, markdown, slug
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
