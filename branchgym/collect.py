"""``branchgym rollout``: collect trajectory trees into the store, without training.

    branchgym rollout --env branchgym/Household-v0 --algo arpo --n 16 --db sqlite:///trees.db

Builds the policy (a saved policy folder, or the untrained embedded model with a tokenizer
trained on the environment's text), samples one tree per task with the chosen algorithm, writes
every tree to the store in its own transaction and returns the run id and the tree metrics.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from branchgym import envs
from branchgym.agents.backends import BackendConfig, check_backend, remote_policy, remote_tokenizer
from branchgym.agents.hf import HFPolicy
from branchgym.agents.policy import Policy
from branchgym.agents.protocol import TurnCodec, turn_format
from branchgym.config import TrainConfig
from branchgym.envs.subprocess import SubprocessEnv
from branchgym.envs.wrappers import RestateInstruction
from branchgym.rollouts.branching import AEPOConfig, ARPOConfig
from branchgym.rollouts.manager import Algo, RolloutConfig, RolloutManager, require_snapshots
from branchgym.rollouts.metrics import tree_stats
from branchgym.rollouts.store import TrajectoryStore
from branchgym.tasks.suite import task_refs
from branchgym.train import build_policy_model, with_advantages


@dataclass(frozen=True)
class CollectConfig:
    """Everything ``branchgym rollout`` does."""

    env_id: str = "branchgym/Household-v0"
    env_kwargs: dict = field(default_factory=dict)
    restate_instruction: bool = False  # True for policies trained by `branchgym train`
    algo: Algo = "grpo"
    n: int = 16  # trajectories per task: GRPO's n, ARPO's and AEPO's budget M
    tasks: int = 8
    split: str = "train"
    db: str = "sqlite:///branchgym.db"
    model_path: str | None = None  # a policy folder (e.g. runs/<id>/policy); None: untrained
    seed: int = 0
    max_turns: int = RolloutConfig.max_turns
    batch: int = 8  # tasks rolled out together
    env_timeout: float = RolloutConfig.env_timeout  # seconds before a call ends its path
    imports: tuple[str, ...] = ()  # modules imported first, so they can register environments
    env_processes: bool = False  # one process per environment (SubprocessEnv), for heavy envs
    backend: BackendConfig = field(default_factory=BackendConfig)  # hf, vllm or openai
    chat_template: bool = False  # turns in the model's own chat template (needs model_path)

    def rollout_config(self) -> RolloutConfig:
        """ARPO spends half of ``n`` on full samples (the authors' M=16, N=8)."""
        return RolloutConfig(
            algo=self.algo,
            samples_per_task=self.n,
            arpo=ARPOConfig(budget=self.n, initial=max(1, self.n // 2)),
            aepo=AEPOConfig(budget=self.n),
            max_turns=self.max_turns,
            seed=self.seed,
            env_timeout=self.env_timeout,
        )


def import_modules(names: Sequence[str]) -> None:
    """Import each module by name (``--import``); a missing one is a clear error.

    The current folder is searched first, as ``python -m`` does, so a module next to you works.
    """
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # missing, or broken: a SyntaxError, a raise at import time
            raise ValueError(f"cannot import {name!r} (--import): {exc!r}") from exc


def _policy(cfg: CollectConfig, make_env) -> tuple[Policy, object]:
    if cfg.backend.backend != "hf":
        assert cfg.model_path is not None
        tokenizer, vocab_size = remote_tokenizer(cfg.model_path, cfg.chat_template)
        return remote_policy(cfg.backend, cfg.model_path, vocab_size, cfg.seed), tokenizer
    model, tokenizer = build_policy_model(
        TrainConfig(
            env_id=cfg.env_id,
            rollout=RolloutConfig(env_timeout=cfg.env_timeout),  # the warm start's texts
            seed=cfg.seed,
            model_path=cfg.model_path,
            chat_template=cfg.chat_template,
        ),
        make_env,
    )
    return HFPolicy(model, tokenizer, tokenizer.pad_token_id, seed=cfg.seed), tokenizer


def collect(cfg: CollectConfig, progress=None) -> dict:
    """Roll out ``cfg.tasks`` tasks and store their trees; returns the run id and metrics."""
    import_modules(cfg.imports)
    check_backend(cfg.backend, cfg.model_path)
    torch.manual_seed(cfg.seed)

    def make_env():
        if cfg.env_processes:
            env = SubprocessEnv(cfg.env_id, cfg.env_kwargs, cfg.imports)
        else:
            env = envs.make(cfg.env_id, **cfg.env_kwargs)
        return RestateInstruction(env) if cfg.restate_instruction else env

    try:  # an unknown id or bad keyword arguments fail here, before the store is touched
        make_env().close()
    except TypeError as exc:
        raise ValueError(f"cannot make {cfg.env_id} with {cfg.env_kwargs}: {exc}") from exc
    if cfg.algo != "grpo":
        require_snapshots(make_env, cfg.algo)
    policy, tokenizer = _policy(cfg, make_env)
    codec = TurnCodec(tokenizer, turn_format(tokenizer, cfg.chat_template))
    manager = RolloutManager(make_env, policy, codec, cfg.rollout_config())
    # a random tail: two collections started in the same second must not share one run
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"rollout-{stamp}-{cfg.algo}-seed{cfg.seed}-{secrets.token_hex(3)}"
    tasks = task_refs(cfg.env_id, cfg.split, cfg.tasks, start=cfg.seed * cfg.tasks)
    groups = []
    try:
        with TrajectoryStore(cfg.db) as store:  # opened first: a bad URL fails before any work
            for start in range(0, len(tasks), cfg.batch):
                batch = manager.rollout(tasks[start : start + cfg.batch])
                batch = [with_advantages(g, std_normalize=True) for g in batch]
                if not groups:  # registered with its first groups: a failed start leaves no run
                    store.create_run(run_id, {**asdict(cfg), "kind": "rollout"})
                store.write_groups(run_id, batch)
                groups += batch
                if progress is not None:
                    progress(len(groups), len(tasks))
    finally:
        if hasattr(policy, "close"):  # vLLM's engine processes: not left to interpreter exit
            policy.close()
    return {"run": run_id, "db": cfg.db, **tree_stats(groups).as_dict()}
