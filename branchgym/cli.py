"""The ``branchgym`` command line."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="Train tool-using LLM agents with branching RL.", no_args_is_help=True)
console = Console()


# options that `train` and `rollout` share
BaseUrl = Annotated[
    str | None,
    typer.Option(
        help="openai backend: the server, e.g. http://127.0.0.1:8000/v1 (with --ray, several, "
        "comma-separated)"
    ),
]
ServedModel = Annotated[
    str | None, typer.Option(help="openai backend: the served model name (default: --model)")
]


@app.callback()
def _root() -> None:
    """branchgym: environments, branching rollouts, a trajectory store and RL learners."""


@app.command()
def train(
    preset: Annotated[
        str | None,
        typer.Option(
            help="quickstart | searchqa | smoke (default: the config file's, else the one "
            "tuned for --env, else quickstart)"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="a TOML, YAML or JSON file of overrides (see `branchgym config`)"),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="continue an interrupted run (its folder, or its id under --out)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed for the model, sampling and tasks")] = None,
    env: Annotated[
        str | None,
        typer.Option(help="environment id (see `branchgym envs`; default: the preset's)"),
    ] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the trajectory store")] = None,
    out: Annotated[
        str | None, typer.Option(help="folder that receives the run folder (default: runs)")
    ] = None,
    rl_steps: Annotated[int | None, typer.Option(help="override the preset's RL steps")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="a Hugging Face model folder to train instead of the embedded model"),
    ] = None,
    algo: Annotated[
        str | None, typer.Option(help="rollout sampler: grpo | arpo | aepo (default: preset's)")
    ] = None,
    sil: Annotated[
        bool | None,
        typer.Option("--sil/--no-sil", help="SPEAR self-imitation replay (default: preset's)"),
    ] = None,
    chat_template: Annotated[
        bool, typer.Option(help="turns in the --model's own chat template, not branchgym's")
    ] = False,
    ray: Annotated[
        bool | None,
        typer.Option("--ray/--no-ray", help="rollouts on Ray actors; needs a PostgreSQL --db"),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="a Ray cluster to join (default: start Ray here)")
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(help="rollout workers (and environment workers) on Ray")
    ] = None,
    max_staleness: Annotated[
        int | None,
        typer.Option(
            help="--ray: rollouts run ahead while the learner updates, on weights at most N "
            "versions old (default 0: synchronous)"
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="the generator: hf (this process) | vllm (vLLM engine) | openai (a vLLM server "
            "that takes weights; see README, Policy backends)"
        ),
    ] = None,
    base_url: BaseUrl = None,
    served_model: ServedModel = None,
) -> None:
    """Cold-start SFT on expert demonstrations, then RL (GRPO-style updates on the sampled
    trees), with held-out evaluation. Flags override the config file, which overrides the
    preset."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from branchgym.agents.model import ModelLoadError
    from branchgym.agents.openai import ServerError
    from branchgym.agents.protocol import TemplateError
    from branchgym.checkpoint import CheckpointError
    from branchgym.configio import ConfigError
    from branchgym.demos import ExpertDataError
    from branchgym.envs.snapshots import BranchingUnsupported
    from branchgym.rollouts.store import StoreError
    from branchgym.runner import ResumeError
    from branchgym.runner import resume as resume_run
    from branchgym.runner import train as run_train

    try:
        if resume is not None:
            _no_overrides_on_resume(
                preset, config, seed, env, db, rl_steps, model, algo, sil, ray, ray_address,
                ray_workers, max_staleness, backend, base_url, served_model, chat_template or None,
            )  # fmt: skip
            resume_run(resume, out or "runs", console)
            return
        cfg = _train_config(preset, config, env)
        overrides = {"seed": seed, "db": db, "model_path": model, "out_dir": out}
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if chat_template:
            cfg = replace(cfg, chat_template=True)
        if rl_steps is not None:
            cfg = replace(cfg, rl=replace(cfg.rl, steps=rl_steps))
        if algo is not None:
            if algo not in ("grpo", "arpo", "aepo"):
                raise typer.BadParameter(f"unknown algorithm {algo!r}", param_hint="--algo")
            cfg = replace(cfg, rollout=replace(cfg.rollout, algo=algo))
        if sil is not None:
            cfg = replace(cfg, rl=replace(cfg.rl, sil=sil))
        ray_cfg = _ray_options(cfg.ray, ray, ray_address, ray_workers, max_staleness)
        cfg = replace(cfg, ray=ray_cfg)
        generator = {"backend": backend, "base_url": base_url, "served_model": served_model}
        generator = {k: v for k, v in generator.items() if v is not None}
        cfg = replace(cfg, backend=replace(cfg.backend, **generator))
        if cfg.chat_template and not cfg.model_path:
            raise typer.BadParameter("needs --model: the embedded model has no chat template")
        run_train(_ready(cfg, out_hint=_out_source(out, config, cfg)), console)
    except TemplateError as exc:
        raise typer.BadParameter(str(exc), param_hint="--chat-template") from exc
    except ServerError as exc:  # the openai backend's server: down, or cannot take weights
        raise typer.BadParameter(str(exc), param_hint="--base-url") from exc
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from exc
    except ModelLoadError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc
    except (ResumeError, CheckpointError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--resume") from exc
    except ConfigError as exc:  # a value out of range, from the preset, file or flags
        raise typer.BadParameter(str(exc)) from exc
    except BranchingUnsupported as exc:  # --algo arpo/aepo on an env without snapshots
        _fail(exc)
    except ExpertDataError as exc:  # the env cannot give texts or demonstrations for the warm start
        raise typer.BadParameter(str(exc), param_hint="--env") from exc
    except ImportError as exc:
        if "pip install" not in str(exc):  # not a missing extra: a bug, keep its traceback
            raise
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _train_config(preset: str | None, config: Path | None, env: str | None):
    """The preset, the config file's overrides on it, then ``--env``."""
    from branchgym.config import preset as get_preset
    from branchgym.config import preset_for_env, validate_fields
    from branchgym.configio import ConfigError, apply_overrides

    data, named = _read_config(config)
    from_file = preset is None and named is not None
    if preset is None:
        preset = named or (preset_for_env(env) if env is not None else "quickstart")
    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        if from_file:
            raise typer.BadParameter(f"{config}: preset: {exc}", param_hint="--config") from exc
        raise typer.BadParameter(str(exc), param_hint="--preset") from exc
    if config is not None:
        try:
            cfg = validate_fields(apply_overrides(cfg, data))
            if env is None:  # else --env replaces it
                _check_env_id(cfg.env_id, "env_id: ")
        except ConfigError as exc:
            raise typer.BadParameter(f"{config}: {exc}", param_hint="--config") from exc
    return _with_env(cfg, env) if env is not None else cfg


def _read_config(config: Path | None) -> tuple[dict, str | None]:
    """The config file's overrides, and the preset it names (None: it names none)."""
    from branchgym.configio import ConfigError, read_mapping

    try:
        data = read_mapping(config) if config is not None else {}
        named = data.pop("preset", None)
        if named is not None and not isinstance(named, str):
            raise ConfigError(f"{config}: preset: expected a preset name, got {named!r}")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc
    return data, named


def _ready(cfg, out_hint: str = "--out"):
    """``cfg`` once a run can start with it: valid, with a folder for its runs and an
    environment its ``env_kwargs`` make; the checks run before anything is written.
    ``out_hint`` names where ``cfg.out_dir`` came from, for its error."""
    from branchgym.config import validate

    validate(cfg)
    _check_out_dir(Path(cfg.out_dir), out_hint)
    warm = cfg.sft.epochs > 0 and cfg.sft.demos > 0  # the warm start imitates the expert
    _check_env(cfg.env_id, cfg.env_kwargs, needs_expert=warm)
    return cfg


def _out_source(out: str | None, config: Path | None, cfg) -> str:
    """Where ``cfg.out_dir`` came from: ``--out``, the config file, or the default."""
    from branchgym.config import TrainConfig

    if out is None and config is not None and cfg.out_dir != TrainConfig().out_dir:
        return f"--config ({config}: out_dir)"
    return "--out"


def _check_out_dir(out: Path, hint: str) -> None:
    """A one-line error if ``out``, or the nearest folder above it that exists, is a file."""
    for existing in (p for p in (out, *out.parents) if p.exists()):
        if not existing.is_dir():
            raise typer.BadParameter(f"{existing} is a file, not a folder", param_hint=hint)
        return


def _check_env(env_id: str, env_kwargs: dict, needs_expert: bool) -> None:
    """Make the environment once, so that keyword arguments it does not take (or data it
    cannot find) fail here, in one line, rather than in the middle of a run; with
    ``needs_expert``, also reset it once and check that its info has the ``expert_plan`` the
    warm start imitates (a reset that fails is left to the run, which skips such episodes)."""
    import warnings

    import gymnasium as gym

    from branchgym import envs
    from branchgym.demos import ExpertDataError, check_expert

    try:
        with warnings.catch_warnings():  # the run's own make warns, if there is cause
            warnings.simplefilter("ignore")
            env = envs.make(env_id, **env_kwargs)
    except (TypeError, ValueError, OSError, gym.error.Error) as exc:
        reason = str(exc).split(" was raised from the environment creator")[0]  # gym's tail
        raise typer.BadParameter(
            f"cannot make {env_id} with env_kwargs {env_kwargs}: {reason}"
        ) from exc
    try:
        if needs_expert:
            check_expert(env, env_id)
    except ExpertDataError as exc:
        raise typer.BadParameter(str(exc), param_hint="--env") from exc
    finally:
        env.close()


def _check_env_id(env_id: str, where: str = "") -> None:
    """``ConfigError`` unless ``env_id`` is registered; ``where`` prefixes the message."""
    from branchgym import envs
    from branchgym.configio import ConfigError

    if env_id not in envs.env_ids():
        known = ", ".join(envs.env_ids())
        raise ConfigError(f"{where}no environment {env_id!r}; known: {known}")


def _ray_options(
    ray_cfg, enabled: bool | None, address: str | None, workers: int | None, staleness: int | None
):
    changes = {"enabled": enabled, "address": address, "max_staleness": staleness}
    if workers is not None:
        changes |= {"rollout_workers": workers, "env_workers": workers}
    return replace(ray_cfg, **{k: v for k, v in changes.items() if v is not None})


def _no_overrides_on_resume(*values) -> None:
    if any(v is not None for v in values):
        raise typer.BadParameter(
            "a resumed run keeps its own config (its config.json); drop the other options",
            param_hint="--resume",
        )


@app.command("config")
def show_config(
    preset: Annotated[str, typer.Argument(help="quickstart | searchqa | smoke")] = "quickstart",
) -> None:
    """Print a preset as a TOML config file: save it, edit it, pass it to `train --config`."""
    from branchgym.config import preset as get_preset
    from branchgym.configio import to_toml

    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PRESET") from exc
    typer.echo(to_toml(cfg, preset=preset), nl=False)


@app.command()
def plot(
    run: Annotated[Path, typer.Argument(help="a run folder written by `branchgym train`")],
    window: Annotated[int, typer.Option(min=1, help="moving average over this many RL steps")] = 1,
) -> None:
    """Draw a run's learning curves (success, entropy, tool calls, branching, SIL share) as
    PNG files in RUN/plots/ (also for a run that is still going)."""
    from branchgym.plots import plot_run
    from branchgym.runlog import METRICS

    if not (run / METRICS).is_file():
        raise typer.BadParameter(f"{run} holds no {METRICS}: not a run folder", param_hint="RUN")
    written = plot_run(run, window)
    if not written:
        raise typer.BadParameter(f"{run}: {METRICS} holds no RL steps yet", param_hint="RUN")
    for path in written:
        typer.echo(str(path))


def _with_env(cfg, env_id: str):
    """The config on another environment: the preset's env options belong to its own env."""
    from branchgym.configio import ConfigError

    try:
        _check_env_id(env_id)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--env") from exc
    kwargs = cfg.env_kwargs if env_id == cfg.env_id else {}
    return replace(cfg, env_id=env_id, env_kwargs=kwargs)


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders written by `branchgym train`")],
    window: Annotated[
        int, typer.Option(min=1, help="RL steps per row of the learning curves")
    ] = 20,
) -> None:
    """Per-run held-out results, the mean gain of RL over SFT, and learning curves (markdown)."""
    from branchgym.report import load_run, markdown

    finished = [r for r in runs if (r / "summary.json").exists()]
    for missing in sorted(set(runs) - set(finished)):
        console.print(f"[yellow]skipping {missing}: no summary.json (unfinished run?)[/yellow]")
    if not finished:
        raise typer.BadParameter("none of these folders holds a finished run", param_hint="RUNS")
    typer.echo(markdown([load_run(r) for r in finished], window))


def _fail(exc: Exception) -> None:
    """Turn the errors a user can fix into one line and exit 2; re-raise anything else."""
    import gymnasium as gym

    from branchgym.agents.model import ModelLoadError
    from branchgym.agents.openai import ServerError
    from branchgym.demos import ExpertDataError
    from branchgym.rollouts.manager import BranchingUnsupported
    from branchgym.rollouts.store import StoreError

    known = (
        gym.error.Error,
        ExpertDataError,
        ModelLoadError,
        StoreError,
        BranchingUnsupported,
        ServerError,
        ImportError,
        ValueError,
        KeyError,
        OSError,
    )
    if not isinstance(exc, known):
        raise exc
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(2)


@app.command()
def envs() -> None:
    """List every registered environment id (built-in and plugins), with one line on each."""
    from branchgym.envs import broken_plugins, registered

    with warnings.catch_warnings():  # a broken plugin is listed below: its warning would repeat it
        warnings.filterwarnings("ignore", message="the branchgym.envs plugin")
        listed = registered()
    width = max(map(len, listed))
    for env_id, line in listed.items():
        typer.echo(f"{env_id:<{width}}  {line}")
    for name, why in broken_plugins().items():
        typer.echo(f"plugin {name!r} failed to load: {why}")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="a benchmark in benchmarks/, e.g. branching")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE passed to the benchmark's main(), e.g. tasks=8"),
    ] = None,
) -> None:
    """Run a benchmark from the source checkout's benchmarks/ folder; print its JSON result."""
    import json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from branchgym.benchrun import BenchError, run_benchmark

    try:
        result = run_benchmark(name, set_ or [])
    except BenchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(result, indent=2))


serve_app = typer.Typer(help="Serve an environment's site for a browser.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("shop")
def serve_shop(
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on the host")] = 3000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    catalogue_seed: Annotated[int, typer.Option(help="which generated catalogue")] = 0,
) -> None:
    """Run WebShop-v0's site on http://HOST:PORT/ (the pages the environment browses)."""
    from branchgym.envs.webshop import serve

    serve(host=host, port=port, catalogue_seed=catalogue_seed)


# ``rollout``, ``experiment`` and the store commands (runs, inspect, show, export, replay,
# view, rescore) register on ``app``
from branchgym import cli_experiment, cli_rollout, cli_store  # noqa: E402, F401


def main() -> None:
    app()


if __name__ == "__main__":  # run the importable module's app, on which every command sits
    from branchgym.cli import main as _main

    _main()
