"""``branchgym report``'s arithmetic: the mean gain and its standard errors, by hand."""

from __future__ import annotations

import math

import pytest

from branchgym.report import RunResult, gain_summary


def run(seed: int, sft: float, rl: float, se: float = 0.02) -> RunResult:
    return RunResult(f"r{seed}", seed, sft, se, rl, se, 400, 10.0, ())


def test_gain_summary_by_hand():
    # gains 0.1, 0.2, 0.3: mean 0.2, sample stdev 0.1, so the seeds' stderr is 0.1 / sqrt(3)
    # = 0.05774. Binomial: sqrt(3 * (0.02^2 + 0.02^2)) / 3 = sqrt(0.0024) / 3 = 0.01633.
    g = gain_summary([run(0, 0.1, 0.2), run(1, 0.2, 0.4), run(2, 0.3, 0.6)])
    assert g.runs == 3
    assert g.mean_gain == pytest.approx(0.2)
    assert g.stderr_seeds == pytest.approx(0.1 / math.sqrt(3))
    assert g.stderr_binomial == pytest.approx(math.sqrt(0.0024) / 3)
    assert g.stderr == pytest.approx(0.05774, abs=1e-5)  # the larger of the two


def test_one_run_falls_back_to_the_binomial_error():
    # one run: no spread; binomial sqrt(0.03^2 + 0.04^2) / 1 = 0.05
    g = gain_summary([RunResult("r", 0, 0.5, 0.03, 0.6, 0.04, 400, 1.0, ())])
    assert math.isnan(g.stderr_seeds)
    assert g.stderr == pytest.approx(0.05)
    assert g.mean_gain == pytest.approx(0.1)


def test_greedy_evaluation_is_summarised_like_the_headline():
    r = RunResult("r", 0, 0.4, 0.02, 0.6, 0.02, 400, 1.0, (), greedy=(0.5, 0.03, 0.55, 0.04))
    g = r.as_greedy()
    assert (g.sft, g.sft_stderr, g.rl, g.rl_stderr) == (0.5, 0.03, 0.55, 0.04)
    assert g.gain == pytest.approx(0.05)
    assert RunResult("r", 0, 0.4, 0.02, 0.6, 0.02, 400, 1.0, ()).as_greedy() is None
