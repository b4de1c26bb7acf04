"""``branchgym train``: a fresh run, or ``--resume`` of one that was interrupted.

A run folder holds everything a run needs to go on after a crash:

- ``config.json``: the full typed config (read back strictly on resume);
- ``tokenizer/``: the tokenizer trained for the run;
- ``checkpoint.json`` and ``ckpt-NNNNNN/``: the weights, optimiser, RNG states, policy version
  and replay buffer after the last checkpointed step (``branchgym.checkpoint``);
- ``trajectories.db`` (unless ``--db``), ``metrics.jsonl``, ``tb/``, and at the end
  ``policy/``, ``summary.json`` and ``plots/``;
- with ``--backend vllm`` (or ``openai``), ``generator/``: the weights handed to the generator
  (``backend.weights_dir`` elsewhere), one ``v<version>/`` folder at a time; removed at the end.

Resuming restores the checkpoint and forgets what the steps after it wrote (their groups in the
store, their replay-buffer changes, their metric rows), then runs them again. Every random
stream is restored too, so a resumed run takes the same steps as one that was never
interrupted. Without a checkpoint (killed during SFT) the recipe starts over in the same folder.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from branchgym import checkpoint, envs
from branchgym.agents.backends import preflight, sampler_state, set_sampler_state
from branchgym.agents.hf import HFPolicy
from branchgym.agents.learner import Learner, samples_from_groups
from branchgym.agents.lora import is_lora, load_lora, with_lora
from branchgym.agents.model import n_params
from branchgym.agents.protocol import TurnCodec, turn_format
from branchgym.agents.weightsync import policy_version, sync_policy
from branchgym.config import TrainConfig, config_json, steps_ahead, validate
from branchgym.configio import apply_overrides
from branchgym.demos import episode_timeout, expert_demos
from branchgym.envs.snapshots import require_snapshots
from branchgym.envs.wrappers import RestateInstruction
from branchgym.rollouts.manager import RolloutManager
from branchgym.rollouts.replay import ReplayBuffer
from branchgym.rollouts.store import StoreError, TrajectoryStore
from branchgym.runlog import RunLog, read_rows
from branchgym.runsummary import eval_line, print_results, run_summary
from branchgym.tasks.suite import task_refs
from branchgym.train import (
    SEED_RANGE,
    EvalResult,
    build_policy_model,
    evaluate_policy,
    progress_bars,
    replay_samples,
    rollout_metrics,
    run_sft,
    scored_groups,
)

CONFIG = "config.json"
TOKENIZER = "tokenizer"
SUMMARY = "summary.json"
BASE = "base"  # with LoRA: the frozen base model, saved once
REFERENCE = "reference"  # with learner.kl_coef: the policy RL started from
GENERATOR = "generator"  # vllm / openai backends: the weights handed to the generator


class ResumeError(RuntimeError):
    """A run that cannot be resumed; the message says why and what to do."""


def env_factory(cfg: TrainConfig) -> Callable:
    def make_env():
        env = envs.make(cfg.env_id, **cfg.env_kwargs)
        return RestateInstruction(env) if cfg.restate_instruction else env

    return make_env


def train(cfg: TrainConfig, console: Console | None = None) -> dict:
    """Run the whole recipe in a new run folder; returns the summary (also ``summary.json``)."""
    console = console or Console()
    validate(cfg)
    _require_extras(cfg)
    _seed(cfg)
    model, tokenizer = build_policy_model(cfg, env_factory(cfg))  # before the folder: fail fast
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{cfg.seed}"
    run_dir = _new_run_dir(Path(cfg.out_dir), name)
    store = _open_store(cfg, run_dir)
    run_dir = _claim_run(store, run_dir, name, cfg)
    (run_dir / CONFIG).write_text(json.dumps(config_json(cfg), indent=2))
    tokenizer.save_pretrained(run_dir / TOKENIZER)
    model = _adapt(cfg, model, run_dir)
    return _Run(cfg, run_dir, store, model, tokenizer, console).go(None)


def resume(run: str | Path, out_dir: str = "runs", console: Console | None = None) -> dict:
    """Continue an interrupted run from its last checkpoint. ``run`` is a run folder, or a
    run id under ``out_dir``.

    Raises:
        ResumeError: no such run, a run that finished, or a config that no longer loads.
    """
    console = console or Console()
    run_dir = find_run(run, out_dir)
    if (run_dir / SUMMARY).exists():
        raise ResumeError(f"run {run_dir} finished (it has {SUMMARY}); there is nothing to resume")
    cfg = load_run_config(run_dir)
    _require_extras(cfg)
    ckpt = checkpoint.latest(run_dir)
    if ckpt is None:  # killed before the first checkpoint: start the recipe over, in place
        _seed(cfg)
        model, tokenizer = build_policy_model(cfg, env_factory(cfg))
        tokenizer.save_pretrained(run_dir / TOKENIZER)
        model = _adapt(cfg, model, run_dir)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(cfg.threads)
        if cfg.lora.rank:
            model = load_lora(AutoModelForCausalLM.from_pretrained(run_dir / BASE), ckpt.path)
        else:
            model = AutoModelForCausalLM.from_pretrained(ckpt.path)
        tokenizer = AutoTokenizer.from_pretrained(run_dir / TOKENIZER)
    store = _open_store(cfg, run_dir)
    store.create_run(run_dir.name, config_json(cfg))  # already there unless killed before it
    where = "the start" if ckpt is None else f"RL step {ckpt.step}"
    console.print(f"resuming run {run_dir.name} from {where}")
    return _Run(cfg, run_dir, store, model, tokenizer, console).go(ckpt)


def _new_run_dir(out_dir: Path, name: str) -> Path:
    """A folder no other run has: two runs started in the same second get ``-2``, ``-3``..."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = out_dir / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ResumeError(f"{out_dir}: no free run folder name for {name}")


def find_run(run: str | Path, out_dir: str = "runs") -> Path:
    """The folder of ``run``: a path to a run folder, or a run id under ``out_dir``."""
    for candidate in (Path(run), Path(out_dir) / str(run)):
        if (candidate / CONFIG).is_file():
            return candidate
    raise ResumeError(
        f"no run {str(run)!r}: give a run folder (one holding {CONFIG}) or a run id under "
        f"{out_dir!r} (--out)"
    )


def load_run_config(run_dir: Path) -> TrainConfig:
    try:
        data = json.loads((run_dir / CONFIG).read_text())
        return apply_overrides(TrainConfig(), data)
    except (OSError, ValueError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
        raise ResumeError(f"cannot read the run's config {run_dir / CONFIG}: {exc}") from exc


def _require_extras(cfg: TrainConfig) -> None:
    """Fail in the first second, not after SFT, when the config needs an extra not installed
    (the ImportError says which ``pip install`` brings it) or a server that is not there."""
    if cfg.ray.enabled:  # a wrong --ray-address fails here, not when RL starts after SFT
        from branchgym.distributed import start

        start(cfg.ray)
    if cfg.lora.rank:
        from branchgym.agents.lora import require_peft

        require_peft()
    preflight(cfg.backend)  # vLLM installed, or the server up and able to take weights
    if cfg.rollout.algo != "grpo":  # branching needs snapshots: say so before SFT, not after
        require_snapshots(env_factory(cfg), cfg.rollout.algo)


def _has_signal(group) -> bool:
    return any(t.advantage != 0 for t in group.trajectories)


def _adapt(cfg: TrainConfig, model, run_dir: Path):
    """With ``cfg.lora.rank``: keep the frozen base in the run folder, add fresh adapters."""
    if not cfg.lora.rank:
        return model
    model.save_pretrained(run_dir / BASE)
    return with_lora(model, cfg.lora)


def _seed(cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)


class _Run:
    """One run's parts, wired together; ``go`` runs (or finishes) the recipe."""

    def __init__(self, cfg, run_dir: Path, store: TrajectoryStore, model, tokenizer, console):
        self.cfg, self.run_dir, self.store, self.console = cfg, run_dir, store, console
        self.run_id = run_dir.name
        self.model, self.tokenizer = model, tokenizer
        self.codec = TurnCodec(tokenizer, turn_format(tokenizer, cfg.chat_template))
        pad_id = tokenizer.pad_token_id
        self.make_env = env_factory(cfg)
        self.policy = _generator(cfg, model, tokenizer, run_dir)
        self.learner = Learner(model, pad_id, cfg.learner, temperature=cfg.rollout.temperature)
        self.manager = RolloutManager(self.make_env, self.policy, self.codec, cfg.rollout)
        self.buffer = ReplayBuffer(store, self.run_id, cfg.replay) if cfg.rl.sil else None
        self.rng = random.Random(cfg.seed)  # tasks, minibatch order, replay sampling
        self.sampler = None  # RaySampler with --ray, made when RL starts
        self.ray_state: list | None = None  # the Ray workers' random streams, to restore
        self.t_start = time.time()
        self.sft: dict[str, EvalResult] = {}

    def go(self, ckpt: checkpoint.Checkpoint | None) -> dict:
        start = 0 if ckpt is None else ckpt.step
        try:  # from here on the engine and the store are closed whatever fails
            if ckpt is not None:
                self._restore(ckpt.state)
            self.store.delete_groups(self.run_id, start)  # steps taken after the checkpoint
            self._sync()
            self.console.print(
                f"run {self.run_id}: model {n_params(self.model) / 1e6:.2f}M params, "
                f"vocab {len(self.tokenizer)}"
            )
            with (
                progress_bars(self.console) as bar,
                RunLog(self.run_dir, self.run_id, config_json(self.cfg), start) as log,
            ):
                if ckpt is None:
                    self._sft(bar)
                self._rl(start, bar, log)
                rl = self._evaluate()
        except KeyboardInterrupt:
            self.console.print(
                f"[yellow]interrupted; continue with: branchgym train --resume {self.run_dir}"
            )
            raise
        finally:
            if self.sampler is not None:
                self.sampler.close()
            if hasattr(self.policy, "close"):  # the vLLM engine's processes
                self.policy.close()
            self.store.close()
        return self._finish(rl)

    # -- phases

    def _sft(self, bar) -> None:
        cfg = self.cfg
        if cfg.sft.epochs > 0:  # 0: the model is warm already (--model), evaluate it as it is
            start = cfg.seed * cfg.sft.demos
            demo_tasks = task_refs(cfg.env_id, "train", cfg.sft.demos, start=start)
            timeout = episode_timeout(cfg.rollout.env_timeout)
            demos = expert_demos(
                self.make_env, demo_tasks, self.codec, cfg.sft.noise, cfg.seed, timeout
            )
            run_sft(self.learner, demos, cfg, bar)
            self._sync()
        self.sft = self._evaluate()
        self.console.print(f"SFT policy: held-out success {eval_line(self.sft)}")
        if cfg.learner.kl_coef:  # the KL term's anchor, kept for resumed runs
            reference = copy.deepcopy(self.model)
            if is_lora(reference):
                reference = reference.merge_and_unload()
            reference.save_pretrained(self.run_dir / REFERENCE)
            self.learner.set_reference(reference)
        self._checkpoint(0)

    def _rl(self, start: int, bar, log: RunLog) -> None:
        """RL steps from ``start`` until ``rl.steps``, or until ``rl.token_budget`` tokens were
        generated (counting the steps before ``start``, from the log)."""
        cfg = self.cfg
        if cfg.ray.enabled:
            from branchgym.distributed import RaySampler

            args = (config_json(cfg), self.run_id, self.tokenizer, self.model, self.learner.version)
            self.sampler = RaySampler(cfg, *args)
            if self.ray_state is not None:
                self.sampler.set_state(self.ray_state)
        budget = cfg.rl.token_budget
        spent = sum(r.get("rollout/tokens_generated", 0) for r in read_rows(self.run_dir))
        total, done = (budget, spent) if budget else (cfg.rl.steps, start)
        task_bar = bar.add_task(cfg.rollout.algo.upper(), total=total, info="")
        bar.update(task_bar, completed=done)
        for step in range(start, cfg.rl.steps):
            if budget and spent >= budget:
                break
            row = self._rl_step(step)
            log.write(row)
            spent += row["rollout/tokens_generated"]
            info = f"success {row['success']:.2f} signal {row['signal_groups']}"
            advance = row["rollout/tokens_generated"] if budget else 1
            bar.update(task_bar, advance=advance, info=info)
            if (step + 1) % 10 == 0:  # a log line too: bars stay blank in a log file
                bar.console.print(
                    f"{cfg.rollout.algo.upper()} step {step + 1}: training success "
                    f"{row['success']:.2f}, {row['signal_groups']}/{row['groups']} groups with "
                    f"signal, {row['seconds']:.1f} s"
                )
            last = step + 1 == cfg.rl.steps or (budget and spent >= budget)
            if (step + 1) % cfg.rl.checkpoint_every == 0 or last:
                self._checkpoint(step + 1)
        if self.sampler is not None and (first := self.sampler.drain()) is not None:
            self.store.delete_groups(self.run_id, first)  # sampled ahead, never trained on

    def _rl_step(self, step: int) -> dict:
        """Roll out, store, update (and replay): one RL step; returns its metrics row."""
        cfg, t0 = self.cfg, time.time()
        groups, group_ids = self._collect(step)
        behind = self.learner.version - min(g.policy_version for g in groups)
        useful = [g for g in groups if _has_signal(g) or not cfg.rl.drop_uniform_groups]
        samples = samples_from_groups(useful, cfg.rl.attribution)
        metrics, replayed = {}, []
        mixed = self.buffer is not None and cfg.rl.sil_mode == "mixed"
        if mixed:  # replayed samples join this step's minibatches
            replayed, metrics = self._replay(group_ids, step)
        if samples or replayed:
            metrics |= self.learner.rl_step(samples + replayed, self.rng)
        if self.buffer is not None and not mixed:  # SPEAR's own step, after the RL step
            replayed, sil = self._replay(group_ids, step)
            metrics |= sil
            if replayed:
                stats = self.learner.rl_step(replayed, self.rng)
                metrics |= {f"sil/{k}": v for k, v in stats.items()}
        if self.buffer is not None:
            metrics["sil/share"] = len(replayed) / max(len(replayed) + len(samples), 1)
        self._sync()
        if self.sampler is not None:
            self.sampler.sync(self.model, self.learner.version)
        n_trajs = sum(len(g.trajectories) for g in groups)
        success = sum(t.won for g in groups for t in g.trajectories) / n_trajs
        row = {"step": step, "success": success, "groups": len(groups)}
        row |= {"signal_groups": len(useful), "staleness": behind}
        row |= {**metrics, **rollout_metrics(groups)}
        return row | {"seconds": time.time() - t0}

    def _tasks(self) -> list:
        cfg = self.cfg
        return [
            task_refs(cfg.env_id, "train", 1, start=self.rng.randrange(SEED_RANGE))[0]
            for _ in range(cfg.rl.tasks_per_step)
        ]

    def _collect(self, step: int) -> tuple[list, list[int]]:
        """This step's groups, with advantages, written to the store: here, or on Ray. They
        carry the version of the weights they were sampled with.

        On Ray with ``ray.max_staleness``, the rollouts of the next ``steps_ahead`` steps are
        sent before this step's are read, so the workers sample them while the learner
        updates; they take each new version as soon as their queued rollouts are done."""
        version = policy_version(self.policy, self.learner.version)
        if self.sampler is None:
            rollouts = self.manager.rollout(self._tasks(), step=step, version=version)
            groups = scored_groups(rollouts, self.cfg.rl, step)
            return groups, self.store.write_groups(self.run_id, groups)
        last = min(step + steps_ahead(self.cfg), self.cfg.rl.steps - 1)
        return self.sampler.step(self.store, step, last, version, self._tasks)

    def _replay(self, group_ids: list[int], step: int) -> tuple[list, dict]:
        self.buffer.admit(group_ids)
        return replay_samples(self.buffer, self.learner.version, step, self.cfg, self.rng)

    def _sync(self) -> None:
        """Hand the current weights to the generator (vllm, openai) as the learner's version;
        the hf policy shares the model and only drops its cache."""
        sync_policy(self.policy, self.model, self.learner.version)

    def _evaluate(self) -> dict[str, EvalResult]:
        return evaluate_policy(self.make_env, self.policy, self.codec, self.cfg)

    # -- checkpoints

    def _checkpoint(self, step: int) -> None:
        state = {
            "learner": self.learner.state_dict(),
            "manager": self.manager.state_dict(),
            "rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": sampler_state(self.policy),
            "replay": self.buffer.snapshot() if self.buffer is not None else None,
            "ray": self._ray_streams(),
            "sft": {k: asdict(v) for k, v in self.sft.items()},
            "elapsed": time.time() - self.t_start,
        }
        checkpoint.save(self.run_dir, step, self.model, state)

    def _restore(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        if self.cfg.learner.kl_coef:
            from transformers import AutoModelForCausalLM

            ref = AutoModelForCausalLM.from_pretrained(self.run_dir / REFERENCE)
            self.learner.set_reference(ref)
        self.manager.load_state_dict(state["manager"])
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        set_sampler_state(self.policy, state["sampler_rng"])
        if self.buffer is not None:
            self.buffer.restore(state["replay"] or {"entries": [], "baselines": []})
        self.sft = {k: EvalResult(**v) for k, v in state["sft"].items()}
        self.ray_state = state.get("ray")  # checkpoints from before 2026-11-25 have none
        self.t_start = time.time() - state["elapsed"]

    def _ray_streams(self) -> list | None:
        """The Ray workers' random streams, so a resumed run samples as the uninterrupted one.
        Not with rollouts in flight (``ray.max_staleness``): those are sampled already, and a
        resumed run samples them again with other streams, so it is not step-identical."""
        if self.sampler is None or self.sampler.pending:
            return None
        return self.sampler.state()

    # -- the end

    def _finish(self, rl: dict[str, EvalResult]) -> dict:
        model = self.model
        if is_lora(model):  # the adapters alone, and the merged model as the policy
            model.save_pretrained(self.run_dir / "adapter")
            model = model.merge_and_unload()
        model.save_pretrained(self.run_dir / "policy")
        self.tokenizer.save_pretrained(self.run_dir / "policy")
        if self.cfg.backend.backend != "hf" and not self.cfg.backend.weights_dir:
            shutil.rmtree(self.run_dir / GENERATOR, ignore_errors=True)  # copies of the weights
        summary = run_summary(self.cfg, self.sft, rl, self.t_start)
        (self.run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
        from branchgym.plots import plot_run

        plot_run(self.run_dir, window=max(1, self.cfg.rl.steps // 20))
        print_results(self.console, self.sft, rl, self.cfg, self.run_dir)
        return summary


def _generator(cfg: TrainConfig, model, tokenizer, run_dir: Path):
    """The policy rollouts and evaluation sample with: ``HFPolicy`` on the learner's own model,
    or a vLLM engine or server that takes the weights after each update."""
    if cfg.backend.backend == "hf":
        return HFPolicy(model, tokenizer, tokenizer.pad_token_id, seed=cfg.seed)
    from branchgym.agents.backends import training_policy

    weights_dir = Path(cfg.backend.weights_dir or run_dir / GENERATOR)
    return training_policy(
        cfg.backend, model, tokenizer, weights_dir, cfg.seed, cfg.model_path, cfg.chat_template
    )


def _open_store(cfg: TrainConfig, run_dir: Path) -> TrajectoryStore:
    """Open the store before any training, so a bad ``--db`` fails in seconds, leaving nothing."""
    try:
        return TrajectoryStore(cfg.db or f"sqlite:///{run_dir / 'trajectories.db'}")
    except StoreError:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def _claim_run(store: TrajectoryStore, run_dir: Path, name: str, cfg: TrainConfig) -> Path:
    """The run folder whose name is a run id no other run holds in the store. A shared
    ``--db`` may hold runs from other ``--out`` folders: a run started in the same second
    with the same seed moves on to ``name-2``, ``name-3``... rather than write into theirs."""
    for n in range(2, 1000):
        if store.create_run(run_dir.name, config_json(cfg)):
            return run_dir
        run_dir.rmdir()  # still empty: the store is elsewhere
        run_dir = _new_run_dir(run_dir.parent, f"{name}-{n}")
    store.close()
    raise ResumeError(f"{store.url}: no free run id for {name}")


__all__ = ["ResumeError", "env_factory", "find_run", "load_run_config", "resume", "train"]
