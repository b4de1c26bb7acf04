"""Group rollouts: n paths per task, stepped turn by turn, returned as trajectory trees.

Every open path of every task is advanced together: one batched ``policy.generate`` call per
turn, then one environment step per path. A path whose environment raises ends alone with
``env_error``; the rest of the batch goes on. Each group comes back as a frozen ``Group`` whose
segments alternate env (prompt, observations: masked) and model (sampled action tokens).

This is the GRPO sampler (independent samples, a single-path tree each). The branching samplers
of ARPO and AEPO build on the same ``_Path`` bookkeeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import gymnasium as gym

from branchgym.agents.policy import Generation, GenerationRequest, Policy, SamplingParams
from branchgym.agents.protocol import TurnCodec
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

EnvFactory = Callable[[], gym.Env]
_path_counter = itertools.count()


@dataclass(frozen=True)
class RolloutConfig:
    """Budgets of one rollout."""

    samples_per_task: int = 8
    max_turns: int = 15
    max_action_tokens: int = 16
    max_total_tokens: int = 1024
    temperature: float = 1.0


@dataclass
class _Path:
    """One path under construction: its env, its tokens so far and its segments."""

    task_idx: int
    env: gym.Env
    session: str
    tokens: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    ret: float = 0.0
    turns: int = 0
    won: bool = False
    end: EndReason | None = None

    def add(self, seg_kind: SegmentKind, ids: Sequence[int], text: str, gen=None) -> None:
        parent = self.segments[-1].id if self.segments else None
        extra = {}
        if gen is not None:
            extra = {"logprobs": gen.logprobs, "entropies": gen.entropies}
        self.segments.append(
            Segment(len(self.segments), parent, seg_kind, tuple(ids), text, **extra)
        )
        self.tokens.extend(ids)


class RolloutManager:
    """Samples groups of trajectories for a batch of tasks with one policy."""

    def __init__(
        self, env_factory: EnvFactory, policy: Policy, codec: TurnCodec, cfg: RolloutConfig
    ) -> None:
        self.env_factory = env_factory
        self.policy = policy
        self.codec = codec
        self.cfg = cfg

    def rollout(self, tasks: Sequence[TaskRef], step: int = 0, version: int = 0) -> list[Group]:
        """``cfg.samples_per_task`` independent paths per task, as one group per task."""
        paths = [
            self._start(i, task)
            for i, task in enumerate(tasks)
            for _ in range(self.cfg.samples_per_task)
        ]
        while active := [p for p in paths if p.end is None]:
            gens = self.policy.generate([self._request(p) for p in active])
            for path, gen in zip(active, gens, strict=True):
                self._advance(path, gen)
        for p in paths:
            p.env.close()
        return [self._group(task, i, paths, step, version) for i, task in enumerate(tasks)]

    def _start(self, task_idx: int, task: TaskRef) -> _Path:
        path = _Path(task_idx, self.env_factory(), f"p{next(_path_counter)}")
        try:
            obs, _ = path.env.reset(seed=task.seed, options={"task": task})
        except Exception as exc:  # a broken task must not take the batch down
            obs, path.end = f"environment failed to reset: {exc!r}", EndReason.ENV_ERROR
        path.add(SegmentKind.ENV, self.codec.observation_ids(obs), obs)
        return path

    def _request(self, path: _Path) -> GenerationRequest:
        params = SamplingParams(
            max_new_tokens=self.cfg.max_action_tokens,
            temperature=self.cfg.temperature,
            stop_token_ids=(self.codec.stop_id,),
        )
        return GenerationRequest(tuple(path.tokens), params, session=path.session)

    def _advance(self, path: _Path, gen: Generation) -> None:
        path.add(SegmentKind.MODEL, gen.token_ids, gen.text, gen)
        path.turns += 1
        if gen.finish_reason != "stop":
            path.end = EndReason.LENGTH
            return
        try:
            obs, reward, terminated, truncated, info = path.env.step(
                self.codec.action_text(gen.token_ids)
            )
        except Exception as exc:
            path.end = EndReason.ENV_ERROR
            path.add(SegmentKind.ENV, (), f"environment error: {exc!r}")
            return
        path.ret += float(reward)
        path.won = bool(info.get("won", False))
        path.end = self._end_reason(path, terminated, truncated)
        if path.end is None:
            path.add(SegmentKind.ENV, self.codec.observation_ids(obs), obs)
            if len(path.tokens) + self.cfg.max_action_tokens > self.cfg.max_total_tokens:
                path.end = EndReason.LENGTH

    def _end_reason(self, path: _Path, terminated: bool, truncated: bool) -> EndReason | None:
        if terminated:
            return EndReason.TERMINATED
        if truncated or path.turns >= self.cfg.max_turns:
            return EndReason.TURN_LIMIT
        return None

    def _group(self, task: TaskRef, idx: int, paths: list[_Path], step: int, version: int):
        """Put a task's paths into one tree: a shared prompt root, then one chain per path.

        A path whose reset failed never saw the prompt: it becomes a root of its own.
        """
        mine = [p for p in paths if p.task_idx == idx]
        healthy = [p for p in mine if p.end is not EndReason.ENV_ERROR or len(p.segments) > 1]
        root = (healthy or mine)[0].segments[0]
        segments: list[Segment] = [root] if healthy else []
        trajectories = []
        for path in mine:
            shared = (
                bool(healthy)
                and len(path.segments) > 1
                and path.segments[0].token_ids == root.token_ids
            )
            first = path.segments[1:] if shared else path.segments
            parent: int | None = root.id if shared else None
            ids = [root.id] if shared else []
            for seg in first:
                segments.append(_renumber(seg, len(segments), parent))
                ids.append(parent := len(segments) - 1)
            leaf = segments[ids[-1]]
            segments[ids[-1]] = _renumber(leaf, leaf.id, leaf.parent_id, path.end, path.ret)
            trajectories.append(
                Trajectory(
                    leaf_id=ids[-1],
                    segment_ids=tuple(ids),
                    ret=path.ret,
                    end_reason=path.end or EndReason.ENV_ERROR,
                    won=path.won,
                    n_turns=path.turns,
                )
            )
        return Group(task, step, version, tuple(segments), tuple(trajectories))


def _renumber(seg: Segment, new_id: int, parent: int | None, end=None, reward=None) -> Segment:
    changes: dict = {"id": new_id, "parent_id": parent}
    if end is not None:
        changes["end_reason"] = end
    if reward is not None:
        changes["reward"] = reward
    return replace(seg, **changes)
