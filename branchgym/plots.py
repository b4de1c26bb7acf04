"""PNG plots of a run's learning curves, drawn from its ``metrics.jsonl``.

``plot_run(RUN_DIR)`` writes ``RUN_DIR/plots/NAME.png`` for each panel below that the run has
data for, and returns their paths; ``branchgym train`` calls it at the end of a run and
``branchgym plot RUN`` at any time (also on an unfinished run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from branchgym.runlog import read_rows

# panel name -> (title, y label, metric keys drawn in it)
PANELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "success": ("Training success", "share of trajectories won", ("success",)),
    "entropy": (
        "Policy entropy",
        "nats per token",
        ("rollout/entropy", "rollout/entropy_before_tool", "rollout/entropy_after_tool"),
    ),
    "tool_calls": ("Tool calls", "per trajectory", ("rollout/tool_calls_per_trajectory",)),
    "branches": (
        "Branching",
        "per tree",
        ("rollout/branch_points_per_tree", "rollout/distinct_trajectories_per_tree"),
    ),
    "sil_share": ("Self-imitation share", "replayed / trained sequences", ("sil/share",)),
}


def plot_run(run_dir: Path, window: int = 1) -> list[Path]:
    """Draw the run's panels (a moving average over ``window`` steps); returns the files."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    rows = read_rows(Path(run_dir))
    out_dir = Path(run_dir) / "plots"
    written = []
    for name, (title, ylabel, keys) in PANELS.items():
        series = {k: _series(rows, k) for k in keys}
        series = {k: v for k, v in series.items() if v[0]}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, (steps, values) in series.items():
            ax.plot(steps, moving_average(values, window), label=key)
        ax.set(title=f"{title} ({Path(run_dir).name})", xlabel="RL step", ylabel=ylabel)
        if len(series) > 1:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _series(rows: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], float(r[key])) for r in rows if key in r]
    return [s for s, _ in pairs], [v for _, v in pairs]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


__all__ = ["PANELS", "moving_average", "plot_run"]
