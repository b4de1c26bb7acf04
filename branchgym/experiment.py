"""``branchgym experiment compare``: GRPO, ARPO, AEPO, AEPO+SPEAR and GRPO+SPEAR side by side.

For each environment and seed, one cold start (SFT on expert demonstrations, ``warm/``) is
shared by every method, so the methods differ only in their RL. Each method then trains from
that policy until it has generated the same number of tokens (``token_budget``), and is
evaluated on the same held-out episodes. Runs are ordinary ``branchgym train`` run folders::

    OUT/ENV/warm/seedN/<run>/         the shared cold start (its policy/ is every method's start)
    OUT/ENV/METHOD/seedN/<run>/       one method's RL run
    OUT/results.json                  per method and environment, over seeds
    OUT/plots/ENV-*.png               entropy by tokens spent, held-out success

The command can be stopped and started again: finished runs are kept, an unfinished one is
resumed from its checkpoint.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from branchgym.config import TrainConfig, preset, preset_for_env, validate
from branchgym.configio import ConfigError, apply_overrides
from branchgym.runlog import read_rows

AEPO_LEARNER = {"upper_clip": "entropy_balanced", "entropy_advantage": 0.2}
METHODS: dict[str, dict[str, Any]] = {
    "grpo": {"rollout": {"algo": "grpo"}},
    "arpo": {"rollout": {"algo": "arpo"}},
    "aepo": {"rollout": {"algo": "aepo"}, "learner": AEPO_LEARNER},
    "aepo+spear": {"rollout": {"algo": "aepo"}, "learner": AEPO_LEARNER, "rl": {"sil": True}},
    "grpo+spear": {"rollout": {"algo": "grpo"}, "rl": {"sil": True}},
}


@dataclass(frozen=True)
class ExperimentConfig:
    envs: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = tuple(METHODS)
    token_budget: dict[str, int] = field(default_factory=dict)  # per env: tokens per RL run
    overrides: dict[str, Any] = field(default_factory=dict)  # on every run's config
    base_preset: str | None = None  # default: the preset tuned for each env


def _cpu() -> ExperimentConfig:
    # Budgets: about 30 GRPO steps on the household kitchen, 40 on SearchQA.
    return ExperimentConfig(
        envs=("branchgym/Household-v0", "branchgym/SearchQA-v0"),
        token_budget={"branchgym/Household-v0": 120_000, "branchgym/SearchQA-v0": 60_000},
        overrides={"eval": {"episodes": 200, "greedy": False}},
    )


def _smoke() -> ExperimentConfig:
    return ExperimentConfig(
        envs=("branchgym/Household-v0",),
        seeds=(0,),
        token_budget={"branchgym/Household-v0": 200},
        base_preset="smoke",
    )


EXPERIMENTS = {"cpu": _cpu, "smoke": _smoke}


def experiment(name: str) -> ExperimentConfig:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment preset {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]()


def with_overrides(exp: ExperimentConfig, extra: Mapping[str, Any]) -> ExperimentConfig:
    """``exp`` with ``extra`` (a config file's tables) laid over its overrides for every run,
    e.g. ``{"rl": {"sil_warmup": 10}}`` for an ablation. Checked here, before any run starts:
    an unknown key or a bad value raises ``ConfigError``, and so does choosing the preset or
    environment, which the experiment picks per run."""
    picked = sorted(set(extra) & {"preset", "env_id", "env_kwargs"})
    if picked:
        raise ConfigError(f"{picked[0]}: set per run by the experiment; use --env to choose")
    exp = replace(exp, overrides=_deep_merge(exp.overrides, extra))
    for env_id in exp.envs:  # every run's config, as its run would check it
        for method in exp.methods:
            validate(_method_config(exp, env_id, exp.seeds[0], method, Path("policy")))
    return exp


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = _deep_merge(merged[key], value) if both else value
    return merged


def slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def compare(exp: ExperimentConfig, out: Path, console: Console | None = None) -> dict:
    """Run (or finish) every run of ``exp`` under ``out``; write and return ``results.json``."""
    console = console or Console()
    for env_id in exp.envs:
        for seed in exp.seeds:
            warm = _ensure(_warm_config(exp, env_id, seed), out / slug(env_id) / "warm", console)
            for method in exp.methods:
                cfg = _method_config(exp, env_id, seed, method, warm / "policy")
                _ensure(cfg, out / slug(env_id) / method, console)
    results = summarize(exp, out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "plots")
    return results


def _base(exp: ExperimentConfig, env_id: str, seed: int) -> TrainConfig:
    cfg = preset(exp.base_preset or preset_for_env(env_id))
    if cfg.env_id != env_id:
        cfg = replace(cfg, env_id=env_id, env_kwargs={})
    return replace(apply_overrides(cfg, exp.overrides), seed=seed)


def _warm_config(exp: ExperimentConfig, env_id: str, seed: int) -> TrainConfig:
    cfg = _base(exp, env_id, seed)
    return replace(cfg, rl=replace(cfg.rl, steps=0))


def _method_config(exp, env_id: str, seed: int, method: str, policy: Path) -> TrainConfig:
    cfg = apply_overrides(_base(exp, env_id, seed), METHODS[method])
    rl = replace(cfg.rl, steps=100_000, token_budget=exp.token_budget[env_id])
    return replace(cfg, model_path=str(policy), sft=replace(cfg.sft, epochs=0), rl=rl)


def _ensure(cfg: TrainConfig, folder: Path, console: Console) -> Path:
    """The finished run of ``cfg`` in ``folder/seedN``: kept, resumed, or trained now."""
    from branchgym.runner import resume, train

    seed_dir = folder / f"seed{cfg.seed}"
    runs = sorted(p for p in seed_dir.glob("*") if (p / "config.json").exists())
    if runs and (runs[-1] / "summary.json").exists():
        return runs[-1]
    console.rule(f"{folder.parent.name} / {folder.name} / seed {cfg.seed}")
    if runs:
        resume(runs[-1], console=console)
        return runs[-1]
    train(replace(cfg, out_dir=str(seed_dir)), console)
    return sorted(p for p in seed_dir.glob("*") if (p / "summary.json").exists())[-1]


# --------------------------------------------------------------------------- results


def summarize(exp: ExperimentConfig, out: Path) -> dict:
    """Per environment and method, over seeds: held-out success, tool calls per solved task,
    the entropy trajectory and the tokens used."""
    results: dict[str, Any] = {"seeds": list(exp.seeds), "envs": {}}
    for env_id in exp.envs:
        rows = {}
        for method in ("warm", *exp.methods):
            runs = [_finished(out / slug(env_id) / method / f"seed{s}") for s in exp.seeds]
            rows[method] = _method_result([r for r in runs if r is not None])
        results["envs"][env_id] = {"token_budget": exp.token_budget.get(env_id), **rows}
    return results


def _finished(seed_dir: Path) -> Path | None:
    runs = sorted(p for p in seed_dir.glob("*") if (p / "summary.json").exists())
    return runs[-1] if runs else None


def _method_result(runs: Sequence[Path]) -> dict:
    if not runs:
        return {"seeds": 0}
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    curves = [read_rows(r) for r in runs]
    success = [s["rl_success"] for s in summaries]
    calls = [s["rl"]["sampled"].get("tool_calls_per_success") for s in summaries]
    calls = [c for c in calls if c is not None]
    return {
        "seeds": len(runs),
        "success": statistics.fmean(success),
        "success_stderr": _stderr(success),
        "success_per_seed": success,
        "tool_calls_per_solved": statistics.fmean(calls) if calls else None,
        "tokens": statistics.fmean(sum(r["rollout/tokens_generated"] for r in c) for c in curves),
        "steps": statistics.fmean(len(c) for c in curves),
        "entropy": _mean_curve(curves, "rollout/entropy"),
        "cumulative_tokens": _mean_curve(curves, "rollout/tokens_generated", cumulative=True),
    }


def _stderr(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def _mean_curve(curves: Sequence[list[dict]], key: str, cumulative: bool = False) -> list[float]:
    """Step by step mean over seeds, up to the shortest run."""
    n = min((len(c) for c in curves), default=0)
    series = []
    for c in curves:
        values = [float(r.get(key, 0.0)) for r in c[:n]]
        if cumulative:
            values = [sum(values[: i + 1]) for i in range(n)]
        series.append(values)
    return [statistics.fmean(v[i] for v in series) for i in range(n)]


def plot(results: dict, folder: Path) -> list[Path]:
    """Per environment: entropy against tokens spent, and held-out success with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for env_id, rows in results["envs"].items():
        methods = [m for m in rows if m not in ("token_budget", "warm") and rows[m]["seeds"]]
        if not methods:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for m in methods:
            ax.plot(rows[m]["cumulative_tokens"], rows[m]["entropy"], label=m)
        ax.set(title=f"Rollout entropy ({env_id})", xlabel="tokens generated", ylabel="nats")
        ax.legend(fontsize="small")
        written.append(_save(fig, folder / f"{slug(env_id)}-entropy.png", plt))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = ["warm", *methods] if rows["warm"]["seeds"] else methods
        ax.bar(
            names,
            [rows[m]["success"] for m in names],
            yerr=[rows[m]["success_stderr"] or 0.0 for m in names],
        )
        ax.set(title=f"Held-out success ({env_id})", ylabel="sampled success")
        ax.tick_params(axis="x", labelsize="small", labelrotation=20)  # long names overlapped
        written.append(_save(fig, folder / f"{slug(env_id)}-success.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown(results: dict) -> str:
    """The comparison table for the README."""
    lines = [
        "| env | method | seeds | held-out success | tool calls per solve | tokens | RL steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, rows in results["envs"].items():
        for method, r in rows.items():
            if method == "token_budget" or not r["seeds"]:
                continue
            se = f" ± {r['success_stderr']:.3f}" if r["success_stderr"] is not None else ""
            calls = r["tool_calls_per_solved"]
            lines.append(
                f"| {env_id} | {method} | {r['seeds']} | {r['success']:.3f}{se} | "
                f"{'-' if calls is None else f'{calls:.2f}'} | {r['tokens']:.0f} | "
                f"{r['steps']:.1f} |"
            )
    return "\n".join(lines)


__all__ = ["EXPERIMENTS", "METHODS", "ExperimentConfig", "compare", "experiment", "markdown"]
