"""The training recipe, top to bottom: tokenizer -> model -> SFT cold start -> GRPO -> eval.

    branchgym train --preset quickstart --seed 0

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

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from branchgym import envs
from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, TokenSample, samples_from_groups
from branchgym.agents.losses import grpo_advantages, sil_weight
from branchgym.agents.model import load_pretrained, n_params, tiny_model
from branchgym.agents.protocol import TurnCodec, turn_format
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.config import TrainConfig
from branchgym.envs.wrappers import RestateInstruction
from branchgym.rollouts.manager import RolloutManager
from branchgym.rollouts.metrics import tree_stats
from branchgym.rollouts.replay import ReplayBuffer
from branchgym.rollouts.store import StoreError, TrajectoryStore
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import Group, TaskRef, flatten

SEED_RANGE = 10_000_000  # training tasks are drawn from the first SEED_RANGE train seeds


@dataclass(frozen=True)
class EvalResult:
    success: float
    stderr: float
    episodes: int
    mean_turns: float
    mean_entropy: float


def env_corpus(make_env: Callable, n_episodes: int, seed: int) -> list[str]:
    """Texts for the tokenizer: expert episodes plus random admissible commands.

    An environment without ``expert_plan`` / ``admissible_commands`` in its info (a third-party
    one, say) gives its opening observations only; byte fallback covers the rest.
    """
    rng = random.Random(seed)
    env = make_env()
    texts: list[str] = []
    for ep in range(n_episodes):
        obs, info = env.reset(seed=10**9 + ep)
        texts.append(obs)
        for turn in range(12):
            plan, admissible = info.get("expert_plan"), info.get("admissible_commands")
            if not plan and not admissible:
                break
            use_expert = plan and (ep % 2 == 0 or turn % 3 == 2 or not admissible)
            action = plan[0] if use_expert else rng.choice(admissible)
            texts.append(" " + action)
            obs, _, done, _, info = env.step(action)
            texts.append(" " + obs)
            if done:
                break
            # held objects are rarely examined at random; their texts must still be words
            examine = [c for c in info.get("admissible_commands") or () if c.startswith("examine ")]
            for command in examine:
                snap = env.unwrapped.snapshot()
                texts.append(" " + env.step(command)[0])
                env.unwrapped.restore(snap)
    env.close()
    return texts


def expert_demos(
    make_env: Callable, tasks: Sequence[TaskRef], codec: TurnCodec, noise: float, seed: int
) -> list[TokenSample]:
    """One token sequence per task: the expert's actions between observations, all trained.

    The expert is privileged: it walks straight to the object. A clone of it has never seen a
    receptacle without the object, so it learns "arrive, then take" whatever it sees. So while
    the object is still to be found, each ``go to`` is, with probability ``noise``, replaced
    by a search step to a receptacle not yet visited (opening it if it is closed), as a searcher
    that does not know where the object is would do; the expert's plan resumes from wherever
    that leads. These DART-style demonstrations show both "the object is here: take it" and
    "it is not here: look elsewhere", which the policy needs before RL can improve its search.
    """
    rng = random.Random(seed)
    env = make_env()
    demos = []
    for task in tasks:
        obs, info = env.reset(seed=task.seed, options={"task": task})
        ids = codec.observation_ids(obs, first=True)
        mask = [False] * len(ids)
        searched, visited = False, set()
        for _ in range(40):
            action = _demo_action(info, rng, noise, searched, visited)
            if action is None:
                break
            searched = action.startswith("go to ") and action != info["expert_plan"][0]
            visited.add(action)
            act = codec.action_ids(action)
            ids, mask = ids + act, mask + [True] * len(act)
            obs, _, done, _, info = env.step(action)
            if done:
                break
            nxt = codec.observation_ids(obs)
            ids, mask = ids + nxt, mask + [False] * len(nxt)
        demos.append(TokenSample(tuple(ids), (0.0,) * len(ids), tuple(mask)))
    env.close()
    return demos


def _demo_action(
    info: dict, rng: random.Random, noise: float, searched: bool, visited: set[str]
) -> str | None:
    plan = info["expert_plan"]
    if not plan:
        return None
    commands = info.get("admissible_commands") or []  # tool envs have none: follow the plan
    if searched:  # a searcher looks inside the closed receptacle it just reached
        opening = [c for c in commands if c.startswith("open ")]
        if opening:
            return opening[0]
    still_searching = any(step.startswith("take ") for step in plan)
    if still_searching and plan[0].startswith("go to ") and rng.random() < noise:
        detours = [
            c for c in commands if c.startswith("go to ") and c != plan[0] and c not in visited
        ]
        if detours:
            return rng.choice(detours)
    return plan[0]


def with_advantages(group: Group, std_normalize: bool) -> Group:
    adv = grpo_advantages(torch.tensor(group.returns), std_normalize=std_normalize).tolist()
    trajs = tuple(replace(t, advantage=a) for t, a in zip(group.trajectories, adv, strict=True))
    return replace(group, trajectories=trajs)


def evaluate(manager: RolloutManager, tasks: Sequence[TaskRef], batch: int) -> EvalResult:
    """Success rate (with binomial standard error), turns and entropy over ``tasks``."""
    groups: list[Group] = []
    for start in range(0, len(tasks), batch):
        groups += manager.rollout(tasks[start : start + batch], step=-1)
    trajs = [(g, t) for g in groups for t in g.trajectories]
    wins = [float(t.won) for _, t in trajs]
    p = sum(wins) / len(wins)
    ents = [e for g, t in trajs for s in g.path(t) for e in s.entropies]
    return EvalResult(
        success=p,
        stderr=math.sqrt(p * (1 - p) / len(wins)),
        episodes=len(wins),
        mean_turns=sum(t.n_turns for _, t in trajs) / len(trajs),
        mean_entropy=sum(ents) / max(len(ents), 1),
    )


def evaluate_policy(
    make_env: Callable, policy: HFPolicy, codec: TurnCodec, cfg: TrainConfig
) -> dict[str, EvalResult]:
    """The held-out evaluations ``cfg.eval`` asks for: ``sampled``, and ``greedy`` if set.

    The sampler is reseeded first, so the SFT and the RL policy meet the same random stream
    on the same episodes, and the difference between them is not sampling noise alone.
    """
    tasks = task_refs(cfg.env_id, cfg.eval.split, cfg.eval.episodes)
    temps = {"sampled": cfg.eval.temperature} | ({"greedy": 0.0} if cfg.eval.greedy else {})
    results = {}
    for name, temp in temps.items():
        policy.generator.manual_seed(cfg.seed + 1)
        rollout = replace(cfg.rollout, samples_per_task=1, temperature=temp)
        results[name] = evaluate(
            RolloutManager(make_env, policy, codec, rollout), tasks, cfg.eval.batch_size
        )
        policy.reset_cache()
    return results


def _progress(console: Console) -> Progress:
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
    learner.set_lr(cfg.learner.lr)


def sil_step(learner: Learner, buffer: ReplayBuffer, step: int, cfg: TrainConfig, rng) -> dict:
    """SPEAR's self-imitation: once the buffer holds enough, a PPO step on replayed samples.

    Replayed samples keep the log-probs they were sampled with, so the PPO ratio and clip
    bound how far an old trajectory can pull the policy. The SIL weight ``w(t)`` scales their
    recalibrated advantages, which scales their loss (the surrogate is linear in A).
    """
    buffer.evict(learner.version)
    weight = sil_weight(step, cfg.rl.sil_coef, cfg.rl.sil_warmup)
    out = {"sil/buffer": float(len(buffer)), "sil/replayed": 0.0, "sil/weight": weight}
    if weight <= 0 or not buffer.ready():  # w(0) = 0: keep the entries for later steps
        return out
    replayed = []
    for sample in buffer.take(rng):
        ids, logps, mask = flatten(sample.group, sample.trajectory)
        adv = weight * sample.advantage
        replayed.append(TokenSample(tuple(ids), tuple(logps), tuple(mask), adv))
    stats = learner.rl_step(replayed, rng)
    out |= {f"sil/{k}": v for k, v in stats.items()}
    return out | {"sil/replayed": float(len(replayed))}


def run_rl(learner, manager, store, run_id, policy, cfg: TrainConfig, bar, log) -> None:
    rng = random.Random(cfg.seed)
    buffer = ReplayBuffer(store, run_id, cfg.replay) if cfg.rl.sil else None
    task_bar = bar.add_task(cfg.rollout.algo.upper(), total=cfg.rl.steps, info="")
    for step in range(cfg.rl.steps):
        t0 = time.time()
        tasks = [
            task_refs(cfg.env_id, "train", 1, start=rng.randrange(SEED_RANGE))[0]
            for _ in range(cfg.rl.tasks_per_step)
        ]
        groups = [
            with_advantages(g, cfg.rl.std_normalize)
            for g in manager.rollout(tasks, step=step, version=learner.version)
        ]
        group_ids = store.write_groups(run_id, groups)
        useful = [g for g in groups if len(set(g.returns)) > 1 or not cfg.rl.drop_uniform_groups]
        samples = samples_from_groups(useful, cfg.rl.attribution)
        metrics = learner.rl_step(samples, rng) if useful else {}
        if buffer is not None:
            buffer.admit(group_ids)
            metrics |= sil_step(learner, buffer, step, cfg, rng)
        policy.reset_cache()
        success = sum(t.won for g in groups for t in g.trajectories) / sum(
            len(g.trajectories) for g in groups
        )
        row = {"step": step, "success": success, "groups": len(groups)}
        row |= {"signal_groups": len(useful), **metrics, **_rollout_metrics(groups)}
        row["seconds"] = time.time() - t0
        log.write(json.dumps(row) + "\n")
        log.flush()
        bar.update(task_bar, advance=1, info=f"success {success:.2f} signal {len(useful)}")
        if (step + 1) % 10 == 0:
            bar.console.print(
                f"GRPO step {step + 1}: training success {success:.2f}, "
                f"{len(useful)}/{len(groups)} groups with signal, {row['seconds']:.1f} s"
            )


def _rollout_metrics(groups: Sequence[Group]) -> dict:
    """The tree metrics of one step, flat, under a ``rollout/`` prefix."""
    stats = tree_stats(groups).as_dict()
    ends = stats.pop("end_reasons")
    return {f"rollout/{k}": v for k, v in stats.items()} | {f"end/{k}": v for k, v in ends.items()}


def build_policy_model(cfg: TrainConfig, make_env: Callable):
    """``cfg.model_path`` loaded with the turn protocol's tokens, or the embedded tiny model
    with a tokenizer trained on the environment's own text."""
    if cfg.model_path:
        return load_pretrained(cfg.model_path, chat_template=cfg.chat_template)
    if cfg.chat_template:
        raise ValueError("--chat-template needs --model: the embedded model has no chat template")
    tokenizer = train_tokenizer(env_corpus(make_env, 400, cfg.seed), cfg.vocab_size)
    stop_id = TurnCodec(tokenizer).stop_id
    return tiny_model(len(tokenizer), tokenizer.pad_token_id, stop_id, cfg.model), tokenizer


def train(cfg: TrainConfig, console: Console | None = None) -> dict:
    """Run the whole recipe; returns the summary that is also written to ``summary.json``."""
    console = console or Console()
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)

    def make_env():
        env = envs.make(cfg.env_id, **cfg.env_kwargs)
        return RestateInstruction(env) if cfg.restate_instruction else env

    model, tokenizer = build_policy_model(cfg, make_env)  # before the run folder: fail fast
    codec = TurnCodec(tokenizer, turn_format(tokenizer, cfg.chat_template))
    pad_id = tokenizer.pad_token_id
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{cfg.seed}"
    run_dir = Path(cfg.out_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    store = _open_store(cfg, run_id, run_dir)
    console.print(
        f"run {run_id}: model {n_params(model) / 1e6:.2f}M params, vocab {len(tokenizer)}"
    )
    policy = HFPolicy(model, tokenizer, pad_id, seed=cfg.seed)
    learner = Learner(model, pad_id, cfg.learner, temperature=cfg.rollout.temperature)
    manager = RolloutManager(make_env, policy, codec, cfg.rollout)

    def held_out() -> dict[str, EvalResult]:
        return evaluate_policy(make_env, policy, codec, cfg)

    with _progress(console) as bar, open(run_dir / "metrics.jsonl", "w") as log:
        demo_tasks = task_refs(cfg.env_id, "train", cfg.sft.demos, start=cfg.seed * cfg.sft.demos)
        demos = expert_demos(make_env, demo_tasks, codec, cfg.sft.noise, cfg.seed)
        run_sft(learner, demos, cfg, bar)
        sft = held_out()
        console.print(f"SFT policy: held-out success {_line(sft)}")
        run_rl(learner, manager, store, run_id, policy, cfg, bar, log)
        rl = held_out()

    model.save_pretrained(run_dir / "policy")
    tokenizer.save_pretrained(run_dir / "policy")
    summary = _summary(cfg, sft, rl, t_start)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    store.close()
    _print_table(console, sft, rl, cfg, run_dir)
    return summary


def _open_store(cfg: TrainConfig, run_id: str, run_dir: Path) -> TrajectoryStore:
    """Open the store before any training, so a bad ``--db`` fails in seconds, leaving nothing."""
    try:
        store = TrajectoryStore(cfg.db or f"sqlite:///{run_dir / 'trajectories.db'}")
    except StoreError:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    store.create_run(run_id, _jsonable(cfg))
    return store


def _line(results: dict[str, EvalResult]) -> str:
    return ", ".join(f"{k} {r.success:.3f} ± {r.stderr:.3f}" for k, r in results.items())


def _summary(cfg: TrainConfig, sft: dict, rl: dict, t_start: float) -> dict:
    """``sft_success`` / ``rl_success`` are the sampled (headline) evaluation."""
    out = {
        "env_id": cfg.env_id,
        "sft_success": sft["sampled"].success,
        "sft_stderr": sft["sampled"].stderr,
        "rl_success": rl["sampled"].success,
        "rl_stderr": rl["sampled"].stderr,
        "heldout_episodes": rl["sampled"].episodes,
        "eval_temperature": cfg.eval.temperature,
        "seed": cfg.seed,
        "minutes": (time.time() - t_start) / 60,
    }
    if "greedy" in rl:
        out |= {
            "sft_greedy_success": sft["greedy"].success,
            "sft_greedy_stderr": sft["greedy"].stderr,
            "rl_greedy_success": rl["greedy"].success,
            "rl_greedy_stderr": rl["greedy"].stderr,
        }
    return out | {"sft": _asdicts(sft), "rl": _asdicts(rl)}


def _asdicts(results: dict[str, EvalResult]) -> dict:
    return {k: asdict(r) for k, r in results.items()}


def _print_table(console: Console, sft: dict, rl: dict, cfg: TrainConfig, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"held-out evaluation ({cfg.eval.episodes} episodes each)")
    for col in ("policy", "decoding", "success ± stderr", "mean turns", "mean entropy"):
        table.add_column(col)
    for name, results in (("SFT", sft), ("SFT + GRPO", rl)):
        for kind, r in results.items():
            decoding = "greedy" if kind == "greedy" else f"sampled, T={cfg.eval.temperature}"
            table.add_row(
                name,
                decoding,
                f"{r.success:.3f} ± {r.stderr:.3f}",
                f"{r.mean_turns:.2f}",
                f"{r.mean_entropy:.3f}",
            )
    console.print(table)
    console.print(f"run folder: {run_dir}")


def _jsonable(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))
