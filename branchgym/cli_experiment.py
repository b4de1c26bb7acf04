"""``branchgym experiment compare``: the methods side by side from shared cold starts. It
registers on ``branchgym.cli.app``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from branchgym.cli import _check_out_dir, app, console

experiment_app = typer.Typer(help="Experiments over methods, environments and seeds.")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("compare")
def experiment_compare(
    preset: Annotated[str, typer.Option(help="cpu | smoke")] = "cpu",
    out: Annotated[Path, typer.Option(help="folder for the runs and results.json")] = Path(
        "experiments/compare"
    ),
    env: Annotated[
        list[str] | None, typer.Option(help="only these of the preset's environments")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option(help="only these seeds")] = None,
    method: Annotated[list[str] | None, typer.Option(help="only these methods")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="a TOML, YAML or JSON file of overrides for every run, e.g. "
            "[rl] sil_warmup = 10 (give it its own --out: finished runs are kept)"
        ),
    ] = None,
) -> None:
    """GRPO, ARPO, AEPO, AEPO+SPEAR and GRPO+SPEAR from one shared cold start per environment
    and seed, at an equal budget of generated tokens; writes OUT/results.json and OUT/plots/.
    Stopped and started again, it keeps finished runs and resumes the unfinished one."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from branchgym.configio import ConfigError, read_mapping
    from branchgym.experiment import METHODS, compare, experiment, markdown, with_overrides

    _check_out_dir(out, "--out")

    try:
        exp = experiment(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    if config is not None:
        try:
            data = read_mapping(config)  # its errors name the file
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--config") from exc
        try:
            exp = with_overrides(exp, data)
        except ConfigError as exc:
            raise typer.BadParameter(f"{config}: {exc}", param_hint="--config") from exc
    for name, chosen, allowed in (
        ("--env", env, exp.envs),
        ("--seed", seed, exp.seeds),
        ("--method", method, tuple(METHODS)),
    ):
        unknown = [c for c in chosen or () if c not in allowed]
        if unknown:
            raise typer.BadParameter(f"{unknown} not in {list(allowed)}", param_hint=name)
    exp = replace(
        exp,
        envs=tuple(env or exp.envs),
        seeds=tuple(seed or exp.seeds),
        methods=tuple(method or exp.methods),
    )
    results = compare(exp, out, console)
    typer.echo(markdown(results))
