"""Compare finished ``branchgym train`` runs: per-seed results, the mean RL gain, and curves.

Reads what each run folder already holds (``summary.json`` and ``metrics.jsonl``), so it sits
after training in the data flow and never touches a model. ``branchgym report runs/*`` prints
it; the README's results section is this module's markdown output.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from branchgym.runlog import read_rows


@dataclass(frozen=True)
class RunResult:
    """One run's held-out results and its RL learning curve."""

    name: str
    seed: int
    sft: float
    sft_stderr: float
    rl: float
    rl_stderr: float
    episodes: int
    minutes: float
    curve: tuple[dict, ...]  # metrics.jsonl rows, one per RL step
    greedy: tuple[float, float, float, float] | None = None  # sft, sft se, rl, rl se

    @property
    def gain(self) -> float:
        return self.rl - self.sft

    def as_greedy(self) -> RunResult | None:
        """The same run with its greedy evaluation in the headline fields, if it has one."""
        if self.greedy is None:
            return None
        sft, sft_se, rl, rl_se = self.greedy
        return replace(self, sft=sft, sft_stderr=sft_se, rl=rl, rl_stderr=rl_se, greedy=None)


@dataclass(frozen=True)
class GainSummary:
    """Mean gain of RL over SFT across runs, with two standard errors.

    ``stderr_seeds`` is the spread of the per-run gains (``stdev / sqrt(n)``, needs two runs);
    ``stderr_binomial`` propagates each evaluation's binomial error as if SFT and RL were
    evaluated independently (``sqrt(sum(se_sft^2 + se_rl^2)) / n``), which overstates it, since
    both are evaluated on the same episodes. ``stderr`` is the larger of the two.
    """

    runs: int
    mean_gain: float
    stderr_seeds: float
    stderr_binomial: float

    @property
    def stderr(self) -> float:
        if math.isnan(self.stderr_seeds):
            return self.stderr_binomial
        return max(self.stderr_seeds, self.stderr_binomial)


def load_run(run_dir: Path) -> RunResult:
    """Read one run folder; raises ``FileNotFoundError`` if the run did not finish."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_rows(run_dir)
    keys = ("sft_greedy_success", "sft_greedy_stderr", "rl_greedy_success", "rl_greedy_stderr")
    greedy = tuple(summary[k] for k in keys) if all(k in summary for k in keys) else None
    return RunResult(
        name=run_dir.name,
        seed=summary["seed"],
        sft=summary["sft_success"],
        sft_stderr=summary["sft_stderr"],
        rl=summary["rl_success"],
        rl_stderr=summary["rl_stderr"],
        episodes=summary["heldout_episodes"],
        minutes=summary["minutes"],
        curve=tuple(rows),
        greedy=greedy,
    )


def gain_summary(runs: list[RunResult]) -> GainSummary:
    gains = [r.gain for r in runs]
    n = len(gains)
    seeds = statistics.stdev(gains) / math.sqrt(n) if n > 1 else math.nan
    binomial = math.sqrt(sum(r.sft_stderr**2 + r.rl_stderr**2 for r in runs)) / n
    return GainSummary(n, statistics.fmean(gains), seeds, binomial)


def _pm(value: float, stderr: float) -> str:
    return f"{value:.3f} ± {stderr:.3f}"


def _gain_text(g: GainSummary) -> str:
    ratio = f"{g.mean_gain / g.stderr:.1f}" if g.stderr > 0 else "undefined"
    return (
        f"**{g.mean_gain:+.3f}**, standard error {g.stderr:.3f} (spread of the gains "
        f"{g.stderr_seeds:.3f}; binomial {g.stderr_binomial:.3f}); gain / stderr = {ratio}."
    )


def _greedy_line(runs: list[RunResult]) -> list[str]:
    greedy = [g for r in runs if (g := r.as_greedy()) is not None]
    if not greedy:
        return []
    return [f"Greedy decoding, mean gain: {_gain_text(gain_summary(greedy))}"]


def curve_windows(run: RunResult, window: int) -> list[tuple[int, float, float]]:
    """(first step, mean training success, mean share of groups with signal) per window."""
    out = []
    for start in range(0, len(run.curve), window):
        rows = run.curve[start : start + window]
        success = statistics.fmean(r["success"] for r in rows)
        signal = statistics.fmean(r["signal_groups"] / r["groups"] for r in rows)
        out.append((rows[0]["step"], success, signal))
    return out


def markdown(runs: list[RunResult], window: int = 20) -> str:
    """The results table, the mean gain and the learning curves, as markdown."""
    lines = [
        "| run | seed | SFT success | RL success | gain | greedy SFT | greedy RL | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        greedy = ["", ""]
        if r.greedy:
            greedy = [
                f"{r.greedy[0]:.3f} ± {r.greedy[1]:.3f}",
                f"{r.greedy[2]:.3f} ± {r.greedy[3]:.3f}",
            ]
        lines.append(
            f"| {r.name} | {r.seed} | {r.sft:.3f} ± {r.sft_stderr:.3f} | "
            f"{r.rl:.3f} ± {r.rl_stderr:.3f} | {r.gain:+.3f} | {' | '.join(greedy)} | "
            f"{r.minutes:.1f} |"
        )
    lines += [
        "",
        f"Mean gain over {len(runs)} runs: {_gain_text(gain_summary(runs))}",
        "",
        *_greedy_line(runs),
        "",
        f"Learning curves: training success (share of sampled trajectories that won) and, in "
        f"brackets, the share of groups with any signal, each a mean over {window} RL steps:",
        "",
    ]
    curves = [curve_windows(r, window) for r in runs]
    steps = [w[0] for w in max(curves, key=len)]
    lines.append("| steps | " + " | ".join(f"seed {r.seed}" for r in runs) + " |")
    lines.append("|---" * (len(runs) + 1) + "|")
    for i, step in enumerate(steps):
        cells = [f"{c[i][1]:.3f} ({c[i][2]:.2f})" if i < len(c) else "" for c in curves]
        lines.append(f"| {step}-{step + window - 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
