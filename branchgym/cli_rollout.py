"""``branchgym rollout``: collect trajectory trees into the store without training. It
registers on ``branchgym.cli.app``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from branchgym.cli import BaseUrl, ServedModel, _fail, app, console


@app.command()
def rollout(
    config: Annotated[
        Path | None,
        typer.Option(help="a TOML, YAML or JSON file of `CollectConfig` keys; flags win over it"),
    ] = None,
    env: Annotated[str | None, typer.Option(help="any registered gymnasium id")] = None,
    algo: Annotated[str | None, typer.Option(help="grpo | arpo | aepo")] = None,
    n: Annotated[
        int | None, typer.Option(help="trajectories per task (ARPO/AEPO: the budget M)")
    ] = None,
    tasks: Annotated[int | None, typer.Option(help="how many tasks")] = None,
    split: Annotated[str | None, typer.Option(help="train | seen | unseen")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the store")] = None,
    model: Annotated[
        str | None, typer.Option(help="a policy folder; default: the untrained embedded model")
    ] = None,
    import_: Annotated[
        list[str] | None,
        typer.Option("--import", help="a module to import first (it registers environments)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed for the model, sampling and tasks")] = None,
    max_turns: Annotated[int | None, typer.Option(help="turns per path")] = None,
    env_kwargs: Annotated[
        str | None,
        typer.Option(help="JSON keyword arguments for the env, e.g. '{\"max_receptacles\": 8}'"),
    ] = None,
    restate: Annotated[
        bool | None,
        typer.Option("--restate/--no-restate", help="append the task to every observation"),
    ] = None,
    processes: Annotated[
        bool | None,
        typer.Option("--processes/--no-processes", help="each environment in its own process"),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="hf (in this process) | vllm (vLLM engine) | openai (a server)"),
    ] = None,
    base_url: BaseUrl = None,
    served_model: ServedModel = None,
    chat_template: Annotated[
        bool | None,
        typer.Option("--chat-template/--no-chat-template", help="the --model's own chat template"),
    ] = None,
) -> None:
    """Collect trajectory trees into the store without training; print their metrics as JSON.

    Defaults are ``CollectConfig``'s; a ``--config`` file overrides them, and flags override
    the file."""
    import json
    from dataclasses import replace

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from branchgym.collect import CollectConfig, collect
    from branchgym.configio import ConfigError, apply_overrides, read_mapping

    try:
        cfg = apply_overrides(CollectConfig(), read_mapping(config) if config else {})
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc
    flags = {
        "env_id": env,
        "algo": algo,
        "n": n,
        "tasks": tasks,
        "split": split,
        "db": db,
        "model_path": model,
        "seed": seed,
        "max_turns": max_turns,
        "restate_instruction": restate,
        "env_processes": processes,
        "chat_template": chat_template,
        "imports": tuple(import_) if import_ else None,
        "env_kwargs": _json_object(env_kwargs, "--env-kwargs") if env_kwargs else None,
    }
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    served = {"backend": backend, "base_url": base_url, "served_model": served_model}
    cfg = replace(cfg, backend=replace(cfg.backend, **{k: v for k, v in served.items() if v}))
    _check_collect(cfg)
    try:
        result = collect(cfg, progress=lambda done, total: console.print(f"{done}/{total} trees"))
    except Exception as exc:  # one readable line for the usual mistakes, not a traceback
        _fail(exc)
    typer.echo(json.dumps(result))


def _json_object(text: str, hint: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"not a JSON object: {text!r}", param_hint=hint)
    return value


def _check_collect(cfg) -> None:
    if cfg.algo not in ("grpo", "arpo", "aepo"):
        raise typer.BadParameter(f"unknown algorithm {cfg.algo!r}; choose grpo, arpo or aepo")
    for name, value in (("--n", cfg.n), ("--tasks", cfg.tasks), ("--max-turns", cfg.max_turns)):
        if value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
