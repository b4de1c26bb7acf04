"""The steps of the training recipe: tokenizer -> model -> SFT cold start -> GRPO -> eval.

``branchgym.runner`` runs them in order (``branchgym train --preset quickstart --seed 0``),
with checkpoints, metric logs and ``--resume``:

0. Every environment is wrapped in ``RestateInstruction`` (the task follows each observation).
1. Train a byte-level tokenizer on the environment's own text and build a tiny Llama-style model.
2. Warm-start it by supervised fine-tuning on the expert's demonstrations, with search detours.
3. Evaluate it on held-out seeds: sampled at the rollout temperature (the headline), and greedy.
4. GRPO: every step, roll out ``samples_per_task`` paths for ``tasks_per_step`` fresh training
   tasks, give each path its group-normalised advantage, write each group to the store in one
   transaction, and take PPO-clip steps on the groups that carry signal.
5. Evaluate the RL policy on the same held-out seeds, write ``summary.json``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from branchgym.agents.backends import reseed_policy
from branchgym.agents.learner import Learner, TokenSample
from branchgym.agents.losses import grpo_advantages, sil_weight, tool_call_bonus
from branchgym.agents.model import load_pretrained, tiny_model
from branchgym.agents.policy import Policy
from branchgym.agents.protocol import TurnCodec
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.config import RLConfig, TrainConfig
from branchgym.demos import env_corpus, episode_timeout
from branchgym.rollouts.manager import RolloutManager
from branchgym.rollouts.metrics import tree_stats
from branchgym.rollouts.replay import ReplayBuffer
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import Group, TaskRef, Trajectory, flatten

SEED_RANGE = 10_000_000  # training tasks are drawn from the first SEED_RANGE train seeds


@dataclass(frozen=True)
class EvalResult:
    success: float
    stderr: float
    episodes: int
    mean_turns: float
    mean_entropy: float
    tool_calls_per_success: float | None = None  # mean tool calls of the won episodes
    failed: int = 0  # episodes the environment or tool failed: not in ``episodes`` nor success


def with_advantages(
    group: Group, std_normalize: bool, bonus: Callable[[Trajectory], float] | None = None
) -> Group:
    """Each trajectory with its group-relative advantage; ``bonus`` (SPEAR's tool-call
    curriculum) is added to each return first. Stored returns stay the environment's.

    A path whose environment or tool failed (``env_error``, ``tool_error``) gets advantage 0
    and stays out of the baseline: the failure is not the policy's doing, and scoring it as a
    loss would credit the group's other paths for it."""
    healthy = [t for t in group.trajectories if not t.end_reason.failed]
    returns = torch.tensor([t.ret + (bonus(t) if bonus else 0.0) for t in healthy])
    scored = iter(grpo_advantages(returns, std_normalize=std_normalize).tolist())
    adv = [0.0 if t.end_reason.failed else next(scored) for t in group.trajectories]
    trajs = tuple(replace(t, advantage=a) for t, a in zip(group.trajectories, adv, strict=True))
    return replace(group, trajectories=trajs)


def scored_groups(groups: Sequence[Group], rl: RLConfig, step: int) -> list[Group]:
    """A step's groups with their advantages, after SPEAR's tool-call bonus when
    ``rl.tool_bonus_horizon`` turns it on."""
    horizon = rl.tool_bonus_horizon

    def bonus(t: Trajectory) -> float:
        return tool_call_bonus(t.tool_calls, step, horizon)

    return [with_advantages(g, rl.std_normalize, bonus if horizon else None) for g in groups]


def evaluate(manager: RolloutManager, tasks: Sequence[TaskRef], batch: int) -> EvalResult:
    """Success rate (with binomial standard error), turns and entropy over ``tasks``.

    Episodes that ended in an environment or tool failure (``env_error``, ``tool_error``)
    measure the environment, not the policy: they are counted in ``failed`` and left out of
    everything else, as training leaves them out of the advantages."""
    groups: list[Group] = []
    for start in range(0, len(tasks), batch):
        groups += manager.rollout(tasks[start : start + batch], step=-1)
    every = [(g, t) for g in groups for t in g.trajectories]
    trajs = [(g, t) for g, t in every if not t.end_reason.failed]
    n = max(len(trajs), 1)
    p = sum(float(t.won) for _, t in trajs) / n
    ents = [e for g, t in trajs for s in g.path(t) for e in s.entropies]
    won_calls = [t.tool_calls for _, t in trajs if t.won]
    return EvalResult(
        success=p,
        stderr=math.sqrt(p * (1 - p) / n),
        episodes=len(trajs),
        mean_turns=sum(t.n_turns for _, t in trajs) / n,
        mean_entropy=sum(ents) / max(len(ents), 1),
        tool_calls_per_success=sum(won_calls) / len(won_calls) if won_calls else None,
        failed=len(every) - len(trajs),
    )


def evaluate_policy(
    make_env: Callable, policy: Policy, codec: TurnCodec, cfg: TrainConfig
) -> dict[str, EvalResult]:
    """The held-out evaluations ``cfg.eval`` asks for: ``sampled``, and ``greedy`` if set.

    The sampler is reseeded first, so the SFT and the RL policy meet the same random stream
    on the same episodes, and the difference between them is not sampling noise alone. Each
    episode is one independent sample, whatever sampler RL trains with: an ARPO / AEPO tree
    would count its correlated branches as extra episodes.
    """
    tasks = task_refs(cfg.env_id, cfg.eval.split, cfg.eval.episodes)
    temps = {"sampled": cfg.eval.temperature} | ({"greedy": 0.0} if cfg.eval.greedy else {})
    results = {}
    for name, temp in temps.items():
        reseed_policy(policy, cfg.seed + 1)
        rollout = replace(cfg.rollout, algo="grpo", samples_per_task=1, temperature=temp)
        results[name] = evaluate(
            RolloutManager(make_env, policy, codec, rollout), tasks, cfg.eval.batch_size
        )
        policy.reset_cache()
    return results


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


def sft_lr(base: float, step: int, total: int) -> float:
    """Cosine decay to 10% of ``base``: the late epochs do not undo the early ones."""
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * step / total)))


def run_sft(learner: Learner, demos: list[TokenSample], cfg: TrainConfig, bar) -> None:
    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(demos) / cfg.sft.batch_size)
    total = steps_per_epoch * cfg.sft.epochs
    task = bar.add_task("SFT", total=total, info="")
    learner.set_lr(cfg.sft.lr)
    for step in range(total):
        if step % steps_per_epoch == 0:
            rng.shuffle(demos)
        learner.set_lr(sft_lr(cfg.sft.lr, step, total))
        i = (step % steps_per_epoch) * cfg.sft.batch_size
        loss = learner.sft_step(demos[i : i + cfg.sft.batch_size])
        bar.update(task, advance=1, info=f"loss {loss:.3f}")
        if (step + 1) % steps_per_epoch == 0:  # a log line too: bars stay blank in a log file
            bar.console.print(f"SFT epoch {(step + 1) // steps_per_epoch}: loss {loss:.3f}")
    learner.reset_optimizer(cfg.learner.lr)


def replay_samples(
    buffer: ReplayBuffer, version: int, step: int, cfg: TrainConfig, rng
) -> tuple[list[TokenSample], dict]:
    """SPEAR's replay: once the buffer holds enough, samples taken from it, with metrics.

    Replayed samples keep the log-probs they were sampled with, so the PPO ratio and clip
    bound how far an old trajectory can pull the policy. The SIL weight ``w(t)`` scales their
    recalibrated advantages, which scales their loss (the surrogate is linear in A).
    """
    buffer.evict(version)
    weight = sil_weight(step, cfg.rl.sil_coef, cfg.rl.sil_warmup)
    out = {"sil/buffer": float(len(buffer)), "sil/replayed": 0.0, "sil/weight": weight}
    if weight <= 0 or not buffer.ready():  # w(0) = 0: keep the entries for later steps
        return [], out
    replayed = []
    for sample in buffer.take(rng):
        ids, logps, mask = flatten(sample.group, sample.trajectory)
        adv = weight * sample.advantage
        replayed.append(TokenSample(tuple(ids), tuple(logps), tuple(mask), adv))
    return replayed, out | {"sil/replayed": float(len(replayed))}


def sil_step(learner: Learner, buffer: ReplayBuffer, step: int, cfg: TrainConfig, rng) -> dict:
    """SPEAR's self-imitation as its own PPO step on the replayed samples (``sil_mode =
    "separate"``); ``"mixed"`` puts them into the step's minibatches instead."""
    replayed, out = replay_samples(buffer, learner.version, step, cfg, rng)
    if replayed:
        out |= {f"sil/{k}": v for k, v in learner.rl_step(replayed, rng, replay=True).items()}
    return out


def rollout_metrics(groups: Sequence[Group]) -> dict:
    """The tree metrics of one step, flat, under a ``rollout/`` prefix."""
    stats = tree_stats(groups).as_dict()
    ends = stats.pop("end_reasons")
    ents = [e for g in groups for s in g.segments for e in s.entropies]
    stats["entropy"] = sum(ents) / max(len(ents), 1)  # over every sampled token
    return {f"rollout/{k}": v for k, v in stats.items()} | {f"end/{k}": v for k, v in ends.items()}


def build_policy_model(cfg: TrainConfig, make_env: Callable):
    """``cfg.model_path`` loaded with the turn protocol's tokens, or the embedded tiny model
    with a tokenizer trained on the environment's own text."""
    if cfg.model_path:
        return load_pretrained(cfg.model_path, chat_template=cfg.chat_template)
    if cfg.chat_template:
        raise ValueError("--chat-template needs --model: the embedded model has no chat template")
    timeout = episode_timeout(cfg.rollout.env_timeout)
    tokenizer = train_tokenizer(env_corpus(make_env, 400, cfg.seed, timeout), cfg.vocab_size)
    stop_id = TurnCodec(tokenizer).stop_id
    return tiny_model(len(tokenizer), tokenizer.pad_token_id, stop_id, cfg.model), tokenizer
