"""What a finished ``branchgym train`` run writes and prints: ``summary.json``'s fields and
the held-out evaluation table (``branchgym.report`` compares several runs afterwards)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from branchgym.config import TrainConfig
from branchgym.train import EvalResult


def eval_line(results: dict[str, EvalResult]) -> str:
    return ", ".join(
        f"{k} {r.success:.3f} ± {r.stderr:.3f}{_failed(r)}" for k, r in results.items()
    )


def _failed(r: EvalResult) -> str:
    if not r.failed:
        return ""
    return f" ({r.failed} episodes left out: the environment or tool failed)"


def run_summary(cfg: TrainConfig, sft: dict, rl: dict, t_start: float) -> dict:
    """``sft_success`` / ``rl_success`` are the sampled (headline) evaluation."""
    out = {
        "env_id": cfg.env_id,
        "sft_success": sft["sampled"].success,
        "sft_stderr": sft["sampled"].stderr,
        "rl_success": rl["sampled"].success,
        "rl_stderr": rl["sampled"].stderr,
        "heldout_episodes": rl["sampled"].episodes,
        "eval_temperature": cfg.eval.temperature,
        "seed": cfg.seed,
        "minutes": (time.time() - t_start) / 60,
    }
    if "greedy" in rl:
        out |= {
            "sft_greedy_success": sft["greedy"].success,
            "sft_greedy_stderr": sft["greedy"].stderr,
            "rl_greedy_success": rl["greedy"].success,
            "rl_greedy_stderr": rl["greedy"].stderr,
        }
    return out | {"sft": _as_dicts(sft), "rl": _as_dicts(rl)}


def _as_dicts(results: dict[str, EvalResult]) -> dict:
    return {k: asdict(r) for k, r in results.items()}


def print_results(console: Console, sft: dict, rl: dict, cfg: TrainConfig, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"held-out evaluation ({cfg.eval.episodes} episodes each)")
    for col in ("policy", "decoding", "success ± stderr", "mean turns", "mean entropy"):
        table.add_column(col)
    for name, results in (("SFT", sft), (f"SFT + {cfg.rollout.algo.upper()}", rl)):
        for kind, r in results.items():
            decoding = "greedy" if kind == "greedy" else f"sampled, T={cfg.eval.temperature}"
            table.add_row(
                name,
                decoding,
                f"{r.success:.3f} ± {r.stderr:.3f}{_failed(r)}",
                f"{r.mean_turns:.2f}",
                f"{r.mean_entropy:.3f}",
            )
    console.print(table)
    console.print(f"run folder: {run_dir}")
