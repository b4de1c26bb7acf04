"""Group rollouts as trajectory trees: GRPO's independent samples, ARPO and AEPO's branching.

For each task the manager grows one tree. It starts some full samples from the prompt, and
every turn it advances every open path of every task together: one batched
``policy.generate`` call, then all environment calls at once on a thread pool with a timeout
(``EnvCalls``). After a tool result it may *branch* a path: the new path shares every token up to
and including that result, restores the environment from the parent's snapshot taken at that
point, and samples its own continuation; the parent goes on too. ``algo`` picks the rule:

- ``grpo``: ``samples_per_task`` full samples, no branches.
- ``arpo``: ``initial`` full samples, then up to ``budget - initial`` branches where the entropy
  of the ``k`` tokens generated right after a tool result rose above the path's own first-turn
  entropy. With the default ``schedule="deferred"`` the full samples finish first and the slots
  go to the tree's strongest decisions; ``"online"`` grants them as decisions arrive. When
  every path has ended with budget left, the rest becomes fresh full samples.
- ``aepo``: the split between full samples and branches comes from entropy pre-monitoring (a
  probe sample per task, or the task's statistics from the previous call), and the branch
  probability is damped by the number of consecutive branches on the same path.

A path whose environment raises, hangs or returns garbage ends alone with ``env_error``
(``tool_error`` when the environment raised ``ToolError``: its tool failed). Every group comes back
as a frozen ``Group``; shared prefixes are stored, and were generated, exactly once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym

from branchgym.agents.policy import Generation, GenerationRequest, Policy, SamplingParams
from branchgym.agents.protocol import TurnCodec
from branchgym.envs.snapshots import BranchingUnsupported, require_snapshots
from branchgym.envs.toolcall import stop_strings
from branchgym.rollouts import branching as rules
from branchgym.rollouts.branching import AEPOConfig, ARPOConfig
from branchgym.rollouts.envcalls import (
    EnvCalls,
    EnvTimeout,
    checked_step,
    failure_reason,
    run_work,
    snapshot_of,
)
from branchgym.rollouts.metrics import entropy_profile
from branchgym.rollouts.tree import Path, Point, Tree, freeze, strength
from branchgym.trajectory import EndReason, Group, SegmentKind, TaskRef

EnvFactory = Callable[[], gym.Env]
Algo = Literal["grpo", "arpo", "aepo"]
_path_counter = itertools.count()
_Work = tuple["Path", Callable[[], Any], Callable[["Path", Any], None]]
_HISTORY_CAP = 100_000  # AEPO pre-monitoring statistics kept, most recent tasks first
__all__ = ["BranchingUnsupported", "RolloutConfig", "RolloutManager", "require_snapshots"]


@dataclass(frozen=True)
class RolloutConfig:
    """How trees are sampled, and the budgets of every path."""

    algo: Algo = "grpo"
    samples_per_task: int = 8  # GRPO's n
    arpo: ARPOConfig = field(default_factory=ARPOConfig)
    aepo: AEPOConfig = field(default_factory=AEPOConfig)
    max_turns: int = 15
    max_action_tokens: int = 16
    max_total_tokens: int = 1024
    temperature: float = 1.0
    env_workers: int = 8  # threads running environment calls concurrently
    env_timeout: float = 60.0  # seconds before a call ends its path with env_error
    seed: int = 0  # the coin of rule="sample" and the tie-break between equal branch bids


class RolloutManager:
    """Samples one trajectory tree per task with one policy."""

    def __init__(
        self, env_factory: EnvFactory, policy: Policy, codec: TurnCodec, cfg: RolloutConfig
    ) -> None:
        self.env_factory = env_factory
        self.policy = policy
        self.codec = codec
        self.cfg = cfg
        self.vocab_size: int | None = getattr(policy, "vocab_size", None)
        self._rng = random.Random(cfg.seed)
        self._history: dict[TaskRef, tuple[float, float]] = {}  # AEPO pre-monitoring
        self._snapshots_checked = cfg.algo == "grpo"  # branching needs snapshot() / restore()

    def state_dict(self) -> dict:
        """What a resumed run needs to sample as the uninterrupted one would: the branching
        coin's state and AEPO's per-task entropy history."""
        return {"rng": self._rng.getstate(), "history": dict(self._history)}

    def load_state_dict(self, state: dict) -> None:
        self._rng.setstate(state["rng"])
        self._history = dict(state["history"])

    def rollout(self, tasks: Sequence[TaskRef], step: int = 0, version: int = 0) -> list[Group]:
        """One tree per task, as one ``Group`` per task in the order given."""
        trees = [Tree(task) for task in tasks]
        with EnvCalls(self.cfg.env_workers, self.cfg.env_timeout) as calls:
            self._check_snapshots(calls)
            try:
                if self.cfg.algo == "aepo":
                    self._pre_monitor(trees, calls)
                else:
                    self._plan(trees)
                self._run(trees, calls)
            finally:
                self._close(trees, calls)
        groups = [freeze(tree, step, version) for tree in trees]
        if self.cfg.algo == "aepo":
            for group in groups:
                self._history.pop(group.task, None)  # re-insert: the dict stays oldest-first
                self._history[group.task] = entropy_profile(group.segments, self.cfg.aepo.k)
            while len(self._history) > _HISTORY_CAP:
                del self._history[next(iter(self._history))]
        return groups

    def _check_snapshots(self, calls: EnvCalls) -> None:
        """Raise ``BranchingUnsupported`` before branching an env without snapshots: checked
        once, on one env made for it. An env that fails or hangs while being made is not this
        check's to report (its paths end with ``env_error``); it is checked again next call."""
        if self._snapshots_checked:
            return
        (outcome,) = calls.run([lambda: require_snapshots(self.env_factory, self.cfg.algo)])
        if isinstance(outcome, BranchingUnsupported):
            raise outcome
        self._snapshots_checked = not isinstance(outcome, BaseException)

    # -- budgets -----------------------------------------------------------------------------

    def _plan(self, trees: list[Tree]) -> None:
        cfg = self.cfg
        for tree in trees:
            if cfg.algo == "arpo":
                tree.full_left = min(cfg.arpo.initial, cfg.arpo.budget)
                tree.branch_left = cfg.arpo.budget - tree.full_left
            else:
                tree.full_left = cfg.samples_per_task

    def _pre_monitor(self, trees: list[Tree], calls: EnvCalls) -> None:
        """AEPO: split each task's budget from H_root and H_tool, probing where asked."""
        aepo = self.cfg.aepo
        probing = aepo.pre_monitor == "probe" and aepo.keep_probe
        if aepo.pre_monitor == "probe":
            for tree in trees:  # a kept probe collects branch points for the split to use
                tree.full_left, tree.probing = 1, probing
                tree.branch_left = aepo.budget - 1 if probing else 0
            self._run(trees, calls)
        for tree in trees:
            if aepo.pre_monitor == "probe":
                h_root, h_tool = entropy_profile(tree.nodes, aepo.k)
            else:  # unseen task: no evidence either way, so an even split
                h_root, h_tool = self._history.get(tree.task, (0.0, 0.0))
            m = rules.aepo_global_samples(aepo.budget, h_root, h_tool, aepo.split_beta)
            kept = 1 if aepo.pre_monitor == "probe" and aepo.keep_probe else 0
            if aepo.pre_monitor == "probe" and not aepo.keep_probe:
                tree.dropped += tree.paths
                tree.paths = []
                tree.nodes.clear()
            tree.full_left, tree.branch_left = m - kept, aepo.budget - m
            tree.started = tree.probing = False
            usable = -(-tree.branch_left // aepo.branches)  # the probe's strongest points
            tree.points = sorted(tree.points, key=strength)[:usable]

    # -- the turn loop -----------------------------------------------------------------------

    def _run(self, trees: list[Tree], calls: EnvCalls) -> None:
        while True:
            self._refill(trees, calls)
            active = [p for t in trees for p in t.paths if p.end is None]
            if not active:
                if any(t.full_left + t.branch_left for t in trees if not t.probing):
                    continue  # nothing left to branch from: the next refill spends the budget
                return
            gens = self.policy.generate([self._request(p) for p in active])
            for path, gen in zip(active, gens, strict=True):
                self._record(path, gen)
            self._step(active, self._branch(active, gens), calls)

    def _refill(self, trees: list[Tree], calls: EnvCalls) -> None:
        """Start the phase's full samples, and spend budget left in finished trees.

        A finished tree first grants its kept branch points (deferred schedule); with none
        left, its unspent slots become fresh full samples. Every grant spends at least one
        slot and the fresh samples spend the rest, so ``_run`` always ends."""
        work: list[_Work] = []
        for tree in trees:
            if any(p.end is None for p in tree.paths) or (tree.probing and tree.started):
                continue
            if tree.started and tree.branch_left > 0 and tree.points:
                for point in self._grant(tree):
                    work += [
                        (c, self._restore_call(c, point.snap), self._restored)
                        for c in point.children
                    ]
                continue
            refill = tree.started  # every path of this phase ended: unspent slots start afresh
            n = tree.full_left + (tree.branch_left if refill else 0)
            tree.full_left, tree.started = 0, True
            if refill:
                tree.branch_left = 0
            for _ in range(n):
                path = self._new_path(tree)
                work.append((path, self._reset_call(path), self._begin))
        run_work(work, calls)

    def _new_path(self, tree: Tree) -> Path:
        path = Path(tree, f"p{next(_path_counter)}")
        tree.paths.append(path)
        return path

    def _reset_call(self, path: Path) -> Callable[[], tuple[gym.Env, str]]:
        def call() -> tuple[gym.Env, str]:
            env = self.env_factory()
            path.env = env  # closed at the end even if reset fails
            if path.end is not None:  # the call timed out meanwhile: nobody will close it
                env.close()
                raise EnvTimeout("reset abandoned after its timeout")
            obs, _ = env.reset(seed=path.tree.task.seed, options={"task": path.tree.task})
            return env, obs

        return call

    def _begin(self, path: Path, outcome: Any) -> None:
        if not isinstance(outcome, BaseException) and not isinstance(outcome[1], str):
            outcome = TypeError(f"reset() returned a {type(outcome[1]).__name__}, not a str")
        if not isinstance(outcome, BaseException):
            env, obs = outcome
            try:
                ids = self._observation_ids(obs, first=True)
            except ValueError as exc:
                outcome = exc
        if isinstance(outcome, BaseException):
            path.end = failure_reason(outcome)
            path.error = f"environment failed to reset: {outcome!r}"
            return
        if len(ids) + self.cfg.max_action_tokens > self.cfg.max_total_tokens:
            path.end = EndReason.ENV_ERROR  # every path of the task would: the config's doing
            path.error = _too_long(obs, len(ids), self.cfg)
            return
        path.stop = stop_strings(env)
        root = path.tree.nodes[0] if path.tree.nodes else None
        if root is not None and root.parent_id is None and list(root.token_ids) == ids:
            path.nodes, path.tokens = [root.id], list(ids)  # the prompt is shared
        else:
            path.add(SegmentKind.ENV, ids, obs)

    def _request(self, path: Path) -> GenerationRequest:
        params = SamplingParams(
            max_new_tokens=self.cfg.max_action_tokens,
            temperature=self.cfg.temperature,
            stop_token_ids=(self.codec.stop_id,),
            stop=path.stop,
        )
        return GenerationRequest(tuple(path.tokens), params, path.session, path.parent_session)

    def _record(self, path: Path, gen: Generation) -> None:
        path.add(SegmentKind.MODEL, gen.token_ids, gen.text, gen)
        path.turns += 1
        path.finish = gen.finish_reason
        path.parent_session = None
        if path.h_init is None:
            path.h_init = rules.head_entropy(gen.entropies, self._k())

    # -- branching ---------------------------------------------------------------------------

    @property
    def _rules(self) -> ARPOConfig | AEPOConfig:
        """The branching config in force (ARPO's for ``grpo``, which never branches)."""
        return self.cfg.aepo if self.cfg.algo == "aepo" else self.cfg.arpo

    def _k(self) -> int:
        return self._rules.k

    def _bid(self, path: Path, gen: Generation) -> float | None:
        """The branch probability after a tool result, or None where no decision is due."""
        fresh, path.fresh_branch = path.fresh_branch, False
        if self.cfg.algo == "grpo" or not path.after_tool or fresh or path.tree.branch_left <= 0:
            return None
        k = self._k()
        rise = rules.entropy_rise(
            rules.head_entropy(gen.entropies, k),
            path.h_init or 0.0,
            self.vocab_size if self._rules.normalize else None,
        )
        if self.cfg.algo == "arpo":
            return rules.arpo_probability(rise, self.cfg.arpo.alpha, self.cfg.arpo.beta)
        a = self.cfg.aepo
        return rules.aepo_probability(rise, a.alpha, a.gamma, path.streak, a.penalty)

    def _branch(self, active: list[Path], gens: list[Generation]) -> list[Point]:
        """Decide every due branch; the online schedule also grants slots, strongest bid first.

        Handing slots out in batch order (as the released ARPO code does) would spend a tree's
        budget on whichever paths happen to come first; the strongest entropy rise wins here.
        The deferred schedule, and AEPO's kept probe whatever the schedule, only collect the
        points (``_grant`` spends them later)."""
        cfg = self._rules
        bids: dict[int, list[Point]] = {}
        collected: list[Point] = []
        for path, gen in zip(active, gens, strict=True):
            p = self._bid(path, gen)
            if p is None:
                continue
            if not rules.decide(p, cfg.rule, cfg.tau, self._rng):
                path.streak = 0
                continue
            deferred = cfg.schedule == "deferred" or path.tree.probing
            if deferred:
                path.streak += 1
            n_new = len(gen.token_ids)
            point = Point(  # the parent as it stood before this turn: the tool result last
                parent=path,
                bid=p,
                tie=self._rng.random(),
                n_nodes=len(path.nodes) - 1,
                n_tokens=len(path.tokens) - n_new,
                ret=path.ret,
                turns=path.turns - 1,
                tool_calls=path.tool_calls,
                streak=path.streak,
            )
            if deferred:
                collected.append(point)
            else:
                bids.setdefault(id(path.tree), []).append(point)
        granted: list[Point] = []
        for points in bids.values():
            for point in sorted(points, key=strength):
                path = point.parent
                n = min(cfg.branches, path.tree.branch_left)
                path.streak = point.streak = path.streak + 1 if n else 0
                if n:
                    path.tree.branch_left -= n
                    point.children = [self._child(point) for _ in range(n)]
                    granted.append(point)
        return collected + granted

    def _keep(self, tree: Tree, point: Point) -> None:
        """Keep a deferred point, and only as many of the strongest as the slots left can use
        (so a tree holds a bounded number of snapshots; the weaker ones would never be granted)."""
        tree.points.append(point)
        usable = -(-tree.branch_left // self._rules.branches)  # ceil(slots / branches each)
        if len(tree.points) > usable:
            tree.points = sorted(tree.points, key=strength)[:usable]

    def _grant(self, tree: Tree) -> list[Point]:
        """Deferred schedule: spend the tree's slots on its strongest kept points."""
        granted = []
        for point in sorted(tree.points, key=strength):
            if tree.branch_left <= 0:
                break
            n = min(self._rules.branches, tree.branch_left)
            tree.branch_left -= n
            point.children = [self._child(point) for _ in range(n)]
            granted.append(point)
        tree.points = [p for p in tree.points if not p.children]
        return granted

    def _child(self, point: Point) -> Path:
        """A new path that shares the parent's nodes up to (and including) the tool result."""
        parent = point.parent
        child = self._new_path(parent.tree)
        child.parent_session = parent.session
        child.nodes = parent.nodes[: point.n_nodes]
        child.tokens = parent.tokens[: point.n_tokens]
        child.ret, child.turns, child.tool_calls = point.ret, point.turns, point.tool_calls
        child.h_init, child.streak = parent.h_init, point.streak
        child.after_tool, child.fresh_branch = True, True
        child.stop = parent.stop
        return child

    # -- environment calls -------------------------------------------------------------------

    def _step(self, active: list[Path], points: list[Point], calls: EnvCalls) -> None:
        """Snapshot at the branch points, then step every path and restore every child.

        A point without children (deferred schedule) keeps its snapshot in its tree for
        ``_grant``; one whose snapshot failed is dropped."""
        snaps = calls.run([lambda p=pt.parent: snapshot_of(p.env) for pt in points])
        work: list[_Work] = []
        for point, snap in zip(points, snaps, strict=True):
            if isinstance(snap, EnvTimeout):  # its env may still be busy: it cannot step either
                point.parent.end = EndReason.ENV_ERROR
                point.parent.add(SegmentKind.ENV, (), f"environment error: {snap!r}")
            if not isinstance(snap, BaseException) and not point.children:
                point.snap = snap
                self._keep(point.parent.tree, point)
            for child in point.children:
                if isinstance(snap, BaseException):
                    child.end, child.error = EndReason.ENV_ERROR, f"snapshot failed: {snap!r}"
                    child.add(SegmentKind.ENV, (), child.error)
                else:
                    work.append((child, self._restore_call(child, snap), self._restored))
        for path in active:
            if path.end is None:
                if path.finish != "stop":
                    path.end = EndReason.LENGTH
                else:
                    work.append((path, self._step_call(path), self._stepped))
        run_work(work, calls)

    def _step_call(self, path: Path) -> Callable[[], tuple]:
        action = self.codec.action_text(path.tree.nodes[path.nodes[-1]].token_ids)
        env = path.env
        assert env is not None
        return lambda: env.step(action)

    def _stepped(self, path: Path, outcome: Any) -> None:
        failure = outcome if isinstance(outcome, BaseException) else None
        if failure is None:
            try:  # all that the env sent is checked before the path changes: bad data ends it
                obs, reward, terminated, truncated, info = checked_step(outcome)
                won, tool_call = bool(info.get("won", False)), bool(info.get("tool_call", True))
                end = self._end_reason(path, terminated, truncated)
                ids = self._observation_ids(obs) if end is None else []
            except Exception as exc:
                failure = exc
        if failure is not None:
            path.end = failure_reason(failure)
            kind = "tool" if path.end is EndReason.TOOL_ERROR else "environment"
            path.add(SegmentKind.ENV, (), f"{kind} error: {failure!r}")
            return
        path.ret += reward
        path.won = won
        path.tool_calls += tool_call
        path.end = end
        if path.end is None:
            ids = self._turn_close(path) + ids
            if len(path.tokens) + len(ids) + self.cfg.max_action_tokens > self.cfg.max_total_tokens:
                path.end = EndReason.LENGTH  # not stored: the budget bounds what is trained on
                path.add(SegmentKind.ENV, (), _too_long(obs, len(ids), self.cfg))
                return
            path.add(SegmentKind.ENV, ids, obs, tool_result=tool_call)
            path.after_tool = tool_call  # decisions follow tool results, not format errors

    def _observation_ids(self, obs: str, first: bool = False) -> list[int]:
        """The observation's tokens, or a ValueError: an env's text may be beyond the tokenizer
        (a lone surrogate, say), and that must end only its own path."""
        try:
            return self.codec.observation_ids(obs, first)
        except Exception as exc:
            raise ValueError(f"the observation could not be tokenized: {exc!r}") from exc

    def _turn_close(self, path: Path) -> list[int]:
        """The stop token, masked, after an action that ended at a stop string (a closing tool
        tag) rather than at the stop token: every turn then ends the same way, as in the
        demonstrations, though the model never sampled that token."""
        return [] if path.tokens[-1:] == [self.codec.stop_id] else [self.codec.stop_id]

    def _restore_call(self, child: Path, snap: Any) -> Callable[[], gym.Env]:
        def call() -> gym.Env:
            env = self.env_factory()
            child.env = env
            if child.end is not None:  # timed out meanwhile
                env.close()
                raise EnvTimeout("restore abandoned after its timeout")
            env.reset(seed=child.tree.task.seed, options={"task": child.tree.task})
            env.get_wrapper_attr("restore")(snap)
            return env

        return call

    def _restored(self, child: Path, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            child.end = failure_reason(outcome)
            child.add(SegmentKind.ENV, (), f"branch restore failed: {outcome!r}")

    def _end_reason(self, path: Path, terminated: bool, truncated: bool) -> EndReason | None:
        if terminated:
            return EndReason.TERMINATED
        if truncated or path.turns >= self.cfg.max_turns:
            return EndReason.TURN_LIMIT
        return None

    def _close(self, trees: list[Tree], calls: EnvCalls) -> None:
        envs = [p.env for t in trees for p in t.paths + t.dropped if p.env is not None]
        calls.run([env.close for env in envs])

    # -- the finished tree -------------------------------------------------------------------


def _too_long(obs: str, n_tokens: int, cfg: RolloutConfig) -> str:
    """The text left where an observation did not fit the path's token budget."""
    return (
        f"observation of {n_tokens} tokens not kept: with rollout.max_action_tokens "
        f"({cfg.max_action_tokens}) it does not fit rollout.max_total_tokens "
        f"({cfg.max_total_tokens}); it began {obs[:200]!r}"
    )
