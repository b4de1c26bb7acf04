"""``branchgym train --ray``: rollouts on Ray actors, one learner, one shared SQL store.

Nothing here is home-made scheduling: Ray runs the actors and moves the weights, the database
(PostgreSQL) is the only channel for trajectories.

- **Environment workers** (``EnvWorker``): actors that host environments. A rollout worker
  reaches them through ``RayEnv``, a gym proxy whose ``reset`` / ``step`` / ``snapshot`` /
  ``restore`` are remote calls; CPU-heavy simulators so run beside, not inside, generation.
  Each call costs a Ray round trip (about a millisecond), far more than a household step, so
  with ``ray.env_workers = 0`` each rollout worker hosts its environments itself.
- **Rollout workers** (``RolloutWorker``): actors that each hold a copy of the policy (or, with
  ``backend.backend = "openai"``, a client of one of the vLLM servers in ``backend.base_url``,
  round robin) and a ``RolloutManager``. ``rollout(tasks, step, version)`` samples the trees,
  gives each group its advantages, writes the groups to the store (each in one transaction,
  tagged with the worker's name and the policy version) and returns their ids.
- **The learner** is the ``branchgym train`` process. ``RaySampler.submit`` spreads a step's
  tasks over the rollout workers and ``wait`` reads the written groups back from the store;
  ``RaySampler.sync`` puts the updated weights into Ray's object store once (the trainable
  ones only: with LoRA, just the adapters) and every worker loads them before its next rollout.
  With servers, the learner's own generator has loaded the new weights into every server
  (``OpenAIPolicy`` mirrors) and the workers only learn the version.
- **Asynchronous rollouts** (``ray.max_staleness``): ``RaySampler.step`` sends the next
  steps' rollouts before it waits for the current one's, so workers sample while the learner
  updates. Ray runs an actor's calls in the order they were sent, so a worker loads a new
  version right after the rollouts queued before it.

Multi-node: start a Ray cluster (``ray start --head`` on one node, ``ray start --address
HEAD:6379`` on the others), run PostgreSQL where every node reaches it, and run
``branchgym train --ray --ray-address HEAD:6379 --db postgresql://...`` on the head. Workers
need no shared files: the first hand-over carries every weight, later ones the trainable ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from branchgym.agents.lora import decoder
from branchgym.envs.subprocess import ProxyEnv


@dataclass(frozen=True)
class RayConfig:
    enabled: bool = False
    address: str = ""  # a Ray cluster's address; empty: start Ray on this machine
    rollout_workers: int = 2
    env_workers: int = 2  # 0: each rollout worker hosts its environments in its own process
    num_cpus: int = 0  # for a local Ray: CPUs it may use (0: all of them)
    max_staleness: int = 0  # > 0: rollouts run ahead on weights at most this many versions old


def require_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--ray needs Ray: pip install 'branchgym[ray]'") from exc
    return ray


def start(cfg: RayConfig) -> Any:
    """Connect to ``cfg.address``, or start a local Ray without dashboard; returns ``ray``."""
    ray = require_ray()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token written to the home folder
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if cfg.address:
            kwargs["address"] = cfg.address
        elif cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        ray.init(**kwargs)
    return ray


# --------------------------------------------------------------------------- environments


class EnvWorker:
    """Hosts any number of one environment's instances, each under a key.

    It runs as a threaded actor (``env_actor_class``): a call that hangs holds one thread, not
    the whole worker, so the other environments it hosts go on; its path ends at the timeout.
    """

    def __init__(self, env_id: str, env_kwargs: dict, restate: bool) -> None:
        self.env_id, self.env_kwargs, self.restate = env_id, env_kwargs, restate
        self.envs: dict[int, gym.Env] = {}
        self.keys = itertools.count()

    def open(self) -> tuple[int, bool, tuple[str, ...]]:
        from branchgym import envs
        from branchgym.envs.snapshots import can_snapshot
        from branchgym.envs.toolcall import stop_strings
        from branchgym.envs.wrappers import RestateInstruction

        env = envs.make(self.env_id, **self.env_kwargs)
        env = RestateInstruction(env) if self.restate else env
        key = next(self.keys)
        self.envs[key] = env
        return key, can_snapshot(env), stop_strings(env)

    def call(self, key: int, method: str, args: tuple, kwargs: dict) -> Any:
        env = self.envs[key]
        if method in ("snapshot", "restore"):
            return env.get_wrapper_attr(method)(*args)
        return getattr(env, method)(*args, **kwargs)

    def close(self, key: int) -> None:
        env = self.envs.pop(key, None)
        if env is not None:
            env.close()


class RayEnv(ProxyEnv):
    """A gym proxy for one environment hosted by an ``EnvWorker`` actor."""

    def __init__(self, worker: Any, timeout: float = 120.0) -> None:
        self.ray, self.worker, self.timeout = require_ray(), worker, timeout
        self.key, self.supports_snapshot, self.stop_strings = self._get(worker.open.remote())

    def close(self) -> None:
        self.worker.close.remote(self.key)  # fire and forget

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._get(self.worker.call.remote(self.key, method, args, kwargs))

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref, timeout=self.timeout)
        except self.ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None  # the env's own exception


# --------------------------------------------------------------------------- rollouts


class RolloutWorker:
    """One policy copy and one rollout manager; writes its groups to the shared store."""

    def __init__(self, name: str, cfg_json: dict, run_id: str, tokenizer, model_cfg):
        import torch
        from transformers import AutoModelForCausalLM

        from branchgym.agents.hf import HFPolicy
        from branchgym.agents.lora import with_lora
        from branchgym.agents.protocol import TurnCodec, turn_format
        from branchgym.config import TrainConfig
        from branchgym.configio import apply_overrides
        from branchgym.rollouts.manager import RolloutManager
        from branchgym.rollouts.store import TrajectoryStore

        torch.set_num_threads(1)
        self.name, self.run_id = name, run_id
        self.cfg = cfg = apply_overrides(TrainConfig(), cfg_json)
        index = int(name.rsplit("-", 1)[-1])
        seed = cfg.seed + 1_000 * (index + 1)  # its own random stream
        if cfg.backend.backend == "openai":  # a vLLM server samples; the learner syncs it
            self.model = None
            self.policy = _server_policy(cfg, index, model_cfg.vocab_size, seed)
        else:
            model = AutoModelForCausalLM.from_config(model_cfg)
            self.model = with_lora(model, cfg.lora) if cfg.lora.rank else model
            self.policy = HFPolicy(self.model, tokenizer, tokenizer.pad_token_id, seed=seed)
        codec = TurnCodec(tokenizer, turn_format(tokenizer, cfg.chat_template))
        self.env_workers: list[Any] = []
        self.turn = itertools.count()
        rollout = dataclasses.replace(cfg.rollout, seed=seed)
        self.manager = RolloutManager(self._make_env, self.policy, codec, rollout)
        self.store = TrajectoryStore(cfg.db)
        self.version = -1

    def attach(self, env_workers: list[Any]) -> None:
        self.env_workers = env_workers

    def _make_env(self) -> gym.Env:
        if not self.env_workers:  # env_workers = 0: environments live in this worker
            from branchgym.runner import env_factory

            return env_factory(self.cfg)()
        worker = self.env_workers[next(self.turn) % len(self.env_workers)]
        return RayEnv(worker, timeout=self.cfg.rollout.env_timeout)

    def load_weights(self, version: int, weights: dict | None) -> None:
        """Take ``weights`` (None: a server samples, and the learner has synced it)."""
        if weights is not None:
            self.model.load_state_dict(weights, strict=False)
        self.version = version
        self.policy.reset_cache()

    def state(self) -> dict:
        """The worker's random streams (branching coin, sampler), for a checkpoint."""
        from branchgym.agents.backends import sampler_state

        return {"manager": self.manager.state_dict(), "sampler": sampler_state(self.policy)}

    def set_state(self, state: dict) -> None:
        from branchgym.agents.backends import set_sampler_state

        self.manager.load_state_dict(state["manager"])
        set_sampler_state(self.policy, state["sampler"])

    def rollout(self, tasks: list, step: int, version: int) -> list[int]:
        from branchgym.train import scored_groups

        if version != self.version:
            raise RuntimeError(f"{self.name} holds policy v{self.version}, asked for v{version}")
        groups = self.manager.rollout(tasks, step=step, version=version)
        shaped = scored_groups(groups, self.cfg.rl, step)
        groups = [dataclasses.replace(g, worker=self.name) for g in shaped]
        self.policy.reset_cache()
        return self.store.write_groups(self.run_id, groups)


def _server_policy(cfg, index: int, vocab_size: int, seed: int):
    """Rollout worker ``index``'s client of the servers in ``backend.base_url``, round robin."""
    from branchgym.agents.backends import server_urls
    from branchgym.agents.openai import OpenAIPolicy, ServerConfig

    urls = server_urls(cfg.backend)
    served = cfg.backend.served_model or cfg.model_path or ""
    server = ServerConfig(urls[index % len(urls)], served, timeout=cfg.backend.timeout)
    return OpenAIPolicy(server, vocab_size=vocab_size, seed=seed)


def env_actor_class(ray: Any, cfg) -> Any:
    """``EnvWorker`` as a Ray actor: threaded, with a thread for every environment call the
    rollout workers may have in flight at once, and restarted if its process dies (the envs
    it held are gone: their paths end with ``env_error``)."""
    threads = max(8, cfg.rollout.env_workers * cfg.ray.rollout_workers)
    return ray.remote(num_cpus=0, max_concurrency=threads, max_restarts=-1)(EnvWorker)


class RaySampler:
    """The learner's side: spreads tasks over rollout workers and hands them the weights."""

    def __init__(self, cfg, cfg_json: dict, run_id: str, tokenizer, model, version: int) -> None:
        self.ray = ray = start(cfg.ray)
        self.servers = cfg.backend.backend == "openai"
        config = decoder(model).config
        env_actor = env_actor_class(ray, cfg)
        rollout_actor = ray.remote(num_cpus=0)(RolloutWorker)
        self.env_workers = [
            env_actor.remote(cfg.env_id, cfg.env_kwargs, cfg.restate_instruction)
            for _ in range(cfg.ray.env_workers)
        ]
        self.workers = [
            rollout_actor.remote(f"rollout-{i}", cfg_json, run_id, tokenizer, config)
            for i in range(cfg.ray.rollout_workers)
        ]
        self._loads: list = []  # weight hand-overs sent but not yet confirmed
        self._confirmed = 0  # hand-overs confirmed so far (the ones before ``_loads``)
        self.pending: dict[int, tuple[list, int]] = {}  # step -> its rollouts, sent and not
        # yet read, and how many hand-overs had been sent before them
        try:  # a worker that cannot start (no database, a bad config) takes the rest down
            ray.get([w.attach.remote(self.env_workers) for w in self.workers])
            self.sync(model, version, everything=True)  # the first time: base weights too
        except BaseException:
            self.close()
            raise

    def sync(self, model, version: int, everything: bool = False) -> None:
        """Hand ``model``'s weights to every worker (one copy in the object store); with
        vLLM servers the learner's generator has loaded them into every server already, and
        the workers only learn the version.

        Only the first hand-over waits. Later ones queue behind the rollouts a worker is
        running (an actor runs its calls in the order they were sent), so the learner goes
        on; ``wait`` surfaces a failed load."""
        if self.servers:
            loads = [w.load_weights.remote(version, None) for w in self.workers]
        else:
            params = {
                k: v.detach().cpu()
                for k, v in model.state_dict(keep_vars=True).items()
                if everything or getattr(v, "requires_grad", False)
            }
            ref = self.ray.put(params)
            loads = [w.load_weights.remote(version, ref) for w in self.workers]
        if everything:
            self.ray.get(loads)
        else:
            self._loads += loads

    def submit(self, tasks: list, step: int, version: int) -> list:
        """Start a step's rollouts: each worker takes a contiguous share of ``tasks`` (it
        samples them after every call sent to it before). Returns what ``wait`` takes."""
        n = len(self.workers)
        shares = [tasks[i * len(tasks) // n : (i + 1) * len(tasks) // n] for i in range(n)]
        return [
            w.rollout.remote(share, step, version)
            for w, share in zip(self.workers, shares, strict=True)
            if share
        ]

    def wait(self, store, pending: list, sent: int | None = None) -> tuple[list, list[int]]:
        """The groups of submitted rollouts, read back from the store in task order.

        ``sent``: how many weight hand-overs had been sent when they were submitted (default:
        all so far). Those are confirmed here, done by now since each worker runs its calls in
        order; a later one may queue behind rollouts of later steps and is not waited for."""
        ids = [gid for part in self.ray.get(pending) for gid in part]
        n = len(self._loads) if sent is None else sent - self._confirmed
        loads, self._loads = self._loads[:n], self._loads[n:]
        self.ray.get(loads)  # surfaces a failed load
        self._confirmed += n
        return [store.load_group(gid) for gid in ids], ids

    def collect(self, store, tasks: list, step: int, version: int) -> tuple[list, list[int]]:
        """Roll out one step's tasks and wait for its groups."""
        return self.wait(store, self.submit(tasks, step, version))

    def step(
        self, store, step: int, last: int, version: int, draw: Callable[[], list]
    ) -> tuple[list, list[int]]:
        """Step ``step``'s groups, after sending the rollouts of every step up to ``last`` not
        sent yet, on tasks from ``draw`` and the weights of ``version``. With ``last > step``
        the workers sample those while the caller updates (asynchronous rollouts)."""
        for ahead in range(max(self.pending, default=step - 1) + 1, last + 1):
            sent = self._confirmed + len(self._loads)
            self.pending[ahead] = (self.submit(draw(), ahead, version), sent)
        return self.wait(store, *self.pending.pop(step))

    def drain(self) -> int | None:
        """Wait for rollouts sent ahead that will not be trained on (the run stopped before
        their steps); returns the first such step, or None."""
        first = min(self.pending, default=None)
        self.ray.get([ref for refs, _ in self.pending.values() for ref in refs])
        self.pending.clear()
        return first

    def state(self) -> list[dict]:
        """Every rollout worker's random streams, for a checkpoint (after their queued work)."""
        return self.ray.get([w.state.remote() for w in self.workers])

    def set_state(self, states: list[dict]) -> None:
        if len(states) != len(self.workers):
            raise ValueError(
                f"the checkpoint holds {len(states)} rollout workers' random streams and this "
                f"run has {len(self.workers)}: resume with ray.rollout_workers = {len(states)}"
            )
        self.ray.get([w.set_state.remote(st) for w, st in zip(self.workers, states, strict=True)])

    def close(self) -> None:
        for actor in self.workers + self.env_workers:
            self.ray.kill(actor)


__all__ = [
    "EnvWorker",
    "RayConfig",
    "RayEnv",
    "RaySampler",
    "RolloutWorker",
    "require_ray",
    "start",
]
