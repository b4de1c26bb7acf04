"""Reading stored trajectories back: show one, export a run, replay one against its environment.

These sit on top of the store (``TrajectoryStore``) and serve ``branchgym show``, ``export`` and
``replay``. ``replay`` is the trust check: it rebuilds the environment the run used (id, keyword
arguments, wrappers, from the run's stored config), resets it from the stored seed, feeds it the
stored actions, and compares every observation and the return with what was stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Group as Renderables
from rich.text import Text

from branchgym import envs
from branchgym.collect import import_modules
from branchgym.envs.wrappers import RestateInstruction
from branchgym.rollouts.store import TrajectoryStore
from branchgym.train import with_advantages
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, Trajectory

_BLOCKS = "▁▂▃▄▅▆▇█"
_SCALE = 3.0  # nats at which the strip saturates: a near-uniform choice among ~20 tokens


def _entropy_style(h: float) -> str:
    return "green" if h < 0.5 else "yellow" if h < 1.5 else "red"


def entropy_strip(entropies: tuple[float, ...]) -> Text:
    """One block per token, its height and colour the token's entropy (green low, red high)."""
    strip = Text()
    for h in entropies:
        level = min(len(_BLOCKS) - 1, int(h / _SCALE * (len(_BLOCKS) - 1)))
        strip.append(_BLOCKS[level], style=_entropy_style(h))
    return strip


def _tokens_coloured(seg: Segment, tokenizer: Any) -> Text:
    out = Text()
    for tok, h in zip(seg.token_ids, seg.entropies, strict=True):
        out.append(tokenizer.decode([tok]), style=_entropy_style(h))
    return out


def show(group: Group, traj: Trajectory, title: str, tokenizer: Any = None) -> Renderables:
    """A trajectory turn by turn: observations, actions with per-token entropy, the outcome."""
    lines: list[Text] = [Text(title, style="bold")]
    turn = 0
    for seg in group.path(traj):
        if seg.kind is SegmentKind.ENV:
            tag = "prompt" if seg.parent_id is None else "result"
            lines.append(Text.assemble((f"{tag:>7} ", "bold green"), seg.text))
            continue
        turn += 1
        text = _tokens_coloured(seg, tokenizer) if tokenizer else Text(seg.text.strip())
        mean_h = sum(seg.entropies) / max(1, len(seg.entropies))
        lines.append(Text.assemble((f"{'act ' + str(turn):>7} ", "bold cyan"), text))
        lines.append(Text.assemble(" " * 8, entropy_strip(seg.entropies), f"  H̄={mean_h:.2f}"))
    lines.append(
        Text(
            f"end: {traj.end_reason.value}  return {traj.ret:.3f}  advantage "
            f"{traj.advantage:+.3f}  turns {traj.n_turns}  tool calls {traj.tool_calls}",
            style="bold yellow",
        )
    )
    return Renderables(*lines)


def export_records(store: TrajectoryStore, run_id: str) -> Iterator[dict]:
    """One SFT-ready record per trajectory: chat messages, tokens, loss mask and outcome.

    A path that ended in a failed environment or tool call (``env_error``, ``tool_error``)
    keeps the failure's text in ``error``, not as a last user message: the environment never
    said it."""
    store.run_config(run_id)  # an unknown run raises KeyError here
    for gid in store.groups(run_id):
        group = store.load_group(gid)
        for tid, traj in zip(store.trajectory_ids(gid), group.trajectories, strict=True):
            path = list(group.path(traj))
            error = path.pop().text if _ends_in_error(traj, path) else ""
            yield {
                "run": run_id,
                "group": gid,
                "trajectory": tid,
                "env_id": group.task.env_id,
                "seed": group.task.seed,
                "step": group.step,
                "policy_version": group.policy_version,
                "return": traj.ret,
                "advantage": traj.advantage,
                "end_reason": traj.end_reason.value,
                "error": error,
                "won": traj.won,
                "messages": [
                    {
                        "role": "assistant" if s.kind is SegmentKind.MODEL else "user",
                        "content": s.text.strip(),
                    }
                    for s in path
                ],
                "token_ids": [t for s in path for t in s.token_ids],
                "loss_mask": [s.kind is SegmentKind.MODEL for s in path for _ in s.token_ids],
            }


def _ends_in_error(traj: Trajectory, path: list[Segment]) -> bool:
    """Whether ``path`` ends in the token-less node a failed call leaves (its error text)."""
    last = path[-1] if path else None
    return (
        traj.end_reason.failed
        and last is not None
        and last.kind is SegmentKind.ENV
        and not last.token_ids
    )


def write_export(records: Iterator[dict], out: Path, fmt: str) -> int:
    """Write records as JSON lines or Parquet; returns how many were written."""
    rows = list(records)
    if fmt == "jsonl":
        with open(out, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ValueError(
                "Parquet export needs pyarrow: pip install 'branchgym[parquet]'"
            ) from exc
        pq.write_table(pa.Table.from_pylist(rows), out)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose jsonl or parquet")
    return len(rows)


@dataclass(frozen=True)
class ReplayResult:
    """What a replay checked, and every way the fresh run differed from the stored one.

    A stored path that ended with ``env_error`` / ``tool_error`` is replayed up to the failed
    call; ``note`` says so (that is not a mismatch).
    """

    trajectory: int
    steps: int
    mismatches: list[str] = field(default_factory=list)
    note: str = ""
    ret: float = 0.0  # the fresh run's return over the replayed steps

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _make_env(config: dict, env_id: str, **overrides: Any):
    import_modules(config.get("imports", ()))  # run configs of `branchgym rollout --import`
    env = envs.make(env_id, **{**config.get("env_kwargs", {}), **overrides})
    return RestateInstruction(env) if config.get("restate_instruction") else env


def replay(store: TrajectoryStore, traj_id: int) -> ReplayResult:
    """Re-run a stored trajectory's actions from its seed and compare what comes back."""
    run_id, gid, index = store.locate_trajectory(traj_id)
    group = store.load_group(gid)
    traj = group.trajectories[index]
    env = _make_env(store.run_config(run_id), group.task.env_id)
    try:
        return _replay_path(env, group, traj, traj_id)
    finally:
        env.close()


def _replay_path(env, group: Group, traj: Trajectory, traj_id: int) -> ReplayResult:
    path = list(group.path(traj))
    problems: list[str] = []
    if not path[0].token_ids:  # the stored reset itself failed
        return ReplayResult(traj_id, 0, [], f"the stored run failed to reset: {path[0].text}")
    obs, _ = env.reset(seed=group.task.seed, options={"task": group.task})
    if obs != path[0].text:
        problems.append(f"reset: observation differs:\n  stored {path[0].text!r}\n  fresh  {obs!r}")
    ret, steps, note = 0.0, 0, ""
    for i in range(1, len(path), 2):
        act, result = path[i], path[i + 1] if i + 1 < len(path) else None
        if act.kind is not SegmentKind.MODEL:  # an error node where a turn would be
            note = f"the stored path ended with an error after turn {steps}: {act.text}"
            break
        if result is None and traj.end_reason is EndReason.LENGTH:
            break  # the last action was cut off by the token budget: it never reached the env
        if result is not None and not result.token_ids:
            note = f"the stored call of turn {steps + 1} failed: {result.text}"
            break
        obs, reward, terminated, _, _ = env.step(act.text.strip())
        ret += float(reward)
        steps += 1
        if result is not None and obs != result.text:
            problems.append(
                f"turn {steps}: observation differs:\n  stored {result.text!r}\n  fresh  {obs!r}"
            )
        if terminated != (result is None and traj.end_reason is EndReason.TERMINATED):
            problems.append(f"turn {steps}: the fresh episode terminated={terminated}")
    if abs(ret - traj.ret) > 1e-6:
        problems.append(f"return differs: stored {traj.ret}, fresh {ret}")
    return ReplayResult(traj_id, steps, problems, note, ret)


def rescore(store: TrajectoryStore, run_id: str, reward: str, std_normalize: bool = True):
    """Re-score a run with another reward: replay every trajectory in an environment made with
    ``reward=NAME`` (SearchQA: ``em`` or ``f1``) and write the trees, with the new returns and
    GRPO advantages, to a new run ``RUN@NAME``. Returns ``(new run id, trajectories, changed)``.

    The new run's config keeps ``reward`` among its ``env_kwargs``, so ``replay`` of a
    re-scored trajectory uses the same reward. An existing ``RUN@NAME`` is never written twice,
    and nothing is written until every trajectory is replayed: a failure leaves no new run.
    """
    config = store.run_config(run_id)
    new_run = f"{run_id}@{reward}"
    if new_run in {r.id for r in store.list_runs()}:
        raise ValueError(f"run {new_run!r} exists already: {run_id} was re-scored with {reward}")
    rescored, n, changed = [], 0, 0
    for gid in store.groups(run_id):  # all replayed first: a failure leaves no partial run
        group = store.load_group(gid)
        env = _scoring_env(config, group.task.env_id, reward)
        try:
            rets = [_replay_path(env, group, t, 0).ret for t in group.trajectories]
        finally:
            env.close()
        rescored.append(_with_returns(group, rets, std_normalize))
        n += len(rets)
        changed += sum(abs(r - t.ret) > 1e-9 for r, t in zip(rets, group.trajectories, strict=True))
    kwargs = {**config.get("env_kwargs", {}), "reward": reward}
    store.create_run(new_run, {**config, "env_kwargs": kwargs, "rescored_from": run_id})
    store.write_groups(new_run, rescored)
    return new_run, n, changed


def _scoring_env(config: dict, env_id: str, reward: str):
    try:
        return _make_env(config, env_id, reward=reward)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{env_id} has no reward option {reward!r}: {exc}") from exc


def _with_returns(group: Group, rets: list[float], std_normalize: bool) -> Group:
    """The group with new returns (on trajectories and leaves) and their GRPO advantages."""
    trajs = tuple(replace(t, ret=r) for t, r in zip(group.trajectories, rets, strict=True))
    segments = list(group.segments)
    for t in trajs:
        segments[t.leaf_id] = replace(segments[t.leaf_id], reward=t.ret)
    rescored = replace(group, segments=tuple(segments), trajectories=trajs)
    return with_advantages(rescored, std_normalize)
