"""The ``branchgym`` command line."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Train tool-using LLM agents with branching RL.", no_args_is_help=True)
console = Console()


@app.callback()
def _root() -> None:
    """branchgym: environments, branching rollouts, a trajectory store and RL learners."""


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="quickstart | smoke")] = "quickstart",
    seed: Annotated[int, typer.Option(help="seed for the model, sampling and tasks")] = 0,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the trajectory store")] = None,
    out: Annotated[str, typer.Option(help="folder that receives the run folder")] = "runs",
    rl_steps: Annotated[int | None, typer.Option(help="override the preset's RL steps")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="a Hugging Face model folder to train instead of the embedded model"),
    ] = None,
) -> None:
    """Cold-start SFT on expert demonstrations, then GRPO, with held-out evaluation."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from branchgym.agents.model import ModelLoadError
    from branchgym.config import preset as get_preset
    from branchgym.rollouts.store import StoreError
    from branchgym.train import train as run_train

    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    cfg = replace(cfg, seed=seed, db=db, out_dir=out, model_path=model)
    if rl_steps is not None:
        cfg = replace(cfg, rl=replace(cfg.rl, steps=rl_steps))
    try:
        run_train(cfg, console)
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from exc
    except ModelLoadError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders written by `branchgym train`")],
    window: Annotated[int, typer.Option(help="RL steps per row of the learning curves")] = 20,
) -> None:
    """Per-run held-out results, the mean gain of RL over SFT, and learning curves (markdown)."""
    from branchgym.report import load_run, markdown

    finished = [r for r in runs if (r / "summary.json").exists()]
    for missing in sorted(set(runs) - set(finished)):
        console.print(f"[yellow]skipping {missing}: no summary.json (unfinished run?)[/yellow]")
    if not finished:
        raise typer.BadParameter("none of these folders holds a finished run", param_hint="RUNS")
    typer.echo(markdown([load_run(r) for r in finished], window))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
