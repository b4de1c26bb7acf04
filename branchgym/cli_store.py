"""The store commands of the ``branchgym`` CLI: list, draw, show, export, replay, view and
re-score stored trajectories. They register on ``branchgym.cli.app``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from branchgym.cli import _fail, app, console


def _load_tokenizer(path: str | None):
    """A policy folder's tokenizer, or None; a bad folder is a ValueError naming it."""
    if not path:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load a tokenizer from {path!r} (--tokenizer)") from exc


@app.command()
def runs(
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
) -> None:
    """List the runs in a store: groups, trajectories and mean return."""
    from branchgym.rollouts.store import TrajectoryStore

    try:
        with TrajectoryStore(db, create=False) as store:
            listed = store.list_runs()
    except Exception as exc:
        _fail(exc)
    if not listed:  # on stderr, password masked: `runs | cut -f1` must not take it for a run
        typer.echo(f"no runs in {store.url}", err=True)
    for r in listed:
        mean = "-" if r.mean_return is None else f"{r.mean_return:.3f}"
        typer.echo(
            f"{r.id}\t{r.n_groups} groups\t{r.n_trajectories} trajectories\tmean return {mean}"
        )


@app.command()
def inspect(
    run: Annotated[str, typer.Argument(help="a run id (see `branchgym runs`)")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
    group: Annotated[int | None, typer.Option(help="one group's id; default: every group")] = None,
    step: Annotated[int | None, typer.Option(help="only this training step's groups")] = None,
) -> None:
    """Draw a run's trajectory trees: branch points, end reasons, returns and advantages."""
    from branchgym.rollouts.render import tree_view
    from branchgym.rollouts.store import TrajectoryStore

    try:
        with TrajectoryStore(db, create=False) as store:
            store.run_config(run)
            ids = [group] if group is not None else _step_groups(store, run, step)
            if group is not None and group not in store.groups(run):
                raise KeyError(f"run {run!r} has no group {group}")
            for gid in ids:
                tids = store.trajectory_ids(gid)
                console.print(tree_view(store.load_group(gid), f"group {gid}", traj_ids=tids))
    except Exception as exc:
        _fail(exc)


def _step_groups(store, run: str, step: int | None) -> list[int]:
    """A run's groups (one step's, if ``step``); a KeyError saying so when there are none."""
    ids = store.groups(run, step)
    if ids:
        return ids
    if step is None:
        raise KeyError(f"run {run!r} has no groups yet")
    steps = store.steps(run)
    held = f"steps {steps[0]}..{steps[-1]}" if steps else "no groups yet"
    raise KeyError(f"run {run!r} has no step {step} ({held})")


@app.command()
def show(
    traj: Annotated[int, typer.Argument(help="a trajectory id (the #N on `inspect` leaves)")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
    tokenizer: Annotated[
        str | None, typer.Option(help="a policy folder: colour each token by its entropy")
    ] = None,
) -> None:
    """Print a trajectory's turns, tool results and per-token entropy."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it, on import
    from branchgym.inspection import show as render
    from branchgym.rollouts.store import TrajectoryStore

    try:
        tok = _load_tokenizer(tokenizer)
        with TrajectoryStore(db, create=False) as store:
            run_id, gid, index = store.locate_trajectory(traj)
            group = store.load_group(gid)
        task = group.task
        title = f"trajectory {traj} · run {run_id} · group {gid} · {task.env_id} seed {task.seed}"
        console.print(render(group, group.trajectories[index], title, tok))
    except Exception as exc:
        _fail(exc)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="a run id (see `branchgym runs`)")],
    out: Annotated[Path, typer.Option(help="the file to write")] = Path("trajectories.jsonl"),
    fmt: Annotated[str, typer.Option("--format", help="jsonl | parquet")] = "jsonl",
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
) -> None:
    """Write a run's trajectories as SFT-ready records: messages, tokens, loss mask, outcome."""
    from branchgym.inspection import export_records, write_export
    from branchgym.rollouts.store import TrajectoryStore

    try:
        with TrajectoryStore(db, create=False) as store:
            n = write_export(export_records(store, run), out, fmt)
    except Exception as exc:
        _fail(exc)
    typer.echo(f"wrote {n} trajectories to {out}")


@app.command()
def replay(
    traj: Annotated[list[int], typer.Argument(help="trajectory ids")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
) -> None:
    """Re-run stored actions against a fresh environment from the stored seed; check that every
    observation and the return match. Exit code 1 if any trajectory differs."""
    from branchgym.inspection import replay as run_replay
    from branchgym.rollouts.store import TrajectoryStore

    try:
        with TrajectoryStore(db, create=False) as store:
            results = [run_replay(store, t) for t in traj]
    except Exception as exc:
        _fail(exc)
    for r in results:
        status = "[green]matches[/green]" if r.ok else "[red]DIFFERS[/red]"
        console.print(f"trajectory {r.trajectory}: {r.steps} steps replayed, {status}")
        if r.note:
            console.print(f"  {r.note}", markup=False)
        for problem in r.mismatches:
            console.print(f"  {problem}", markup=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def view(
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1")] = 8765,
    tokenizer: Annotated[
        str | None, typer.Option(help="a policy folder: show each token's text in the heat map")
    ] = None,
) -> None:
    """Serve the read-only trajectory viewer on http://127.0.0.1:PORT (runs, trees, entropy)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it, on import
    try:
        import uvicorn

        from branchgym.viewer import create_app
    except ImportError as exc:
        console.print(
            f"[red]error:[/red] the viewer needs: pip install 'branchgym[viewer]' ({exc})"
        )
        raise typer.Exit(2) from exc
    from branchgym.rollouts.store import TrajectoryStore

    try:
        TrajectoryStore(db, create=False).close()  # a mistyped --db: say so, create nothing
        tok = _load_tokenizer(tokenizer)
        web = create_app(db, tok)
    except Exception as exc:
        _fail(exc)
    console.print(f"branchgym viewer on http://127.0.0.1:{port} (read-only; Ctrl-C stops it)")
    uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning")


@app.command()
def rescore(
    run: Annotated[str, typer.Argument(help="a run id (see `branchgym runs`)")],
    reward: Annotated[str, typer.Option(help="the environment's reward option, e.g. f1")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the store")] = "sqlite:///branchgym.db",
) -> None:
    """Re-score a run with another reward (replayed from the stored actions) into run@REWARD."""
    from branchgym.inspection import rescore as run_rescore
    from branchgym.rollouts.store import TrajectoryStore

    try:
        with TrajectoryStore(db, create=False) as store:
            new_run, n, changed = run_rescore(store, run, reward)
    except Exception as exc:
        _fail(exc)
    typer.echo(f"{new_run}: {n} trajectories re-scored, {changed} returns changed")
