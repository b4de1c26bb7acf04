"""Rollout throughput on Ray with 1 and 2 rollout workers, against rollouts in the learner's
own process, plus what starting Ray costs.

    branchgym bench scale

Every configuration samples the same ``rounds`` x ``tasks`` GRPO groups of ``samples``
trajectories on the household kitchen with the embedded tiny model (random weights, so
episodes run to the turn limit), and writes them to one SQLite store, as ``train --ray`` does
through ``RaySampler``: with environment workers (one per rollout worker), and with the
environments inside the rollout workers (``ray.env_workers = 0``). ``ray_start_s`` is the time
of ``ray.init``; ``*_start_s`` the time until a configuration's workers hold the weights.
Throughput is trajectories per second after one warm-up round. On a 2-core machine two workers
can at best double one; the learner process competes for the same cores.

``sync_steps_per_s`` / ``async_steps_per_s``: whole RL steps (two workers roll out a step's
groups, the learner takes a PPO step on them and hands the weights over) as ``train --ray``
takes them through ``RaySampler.step``, with ``ray.max_staleness`` 0 and 1: asynchronous, the
workers sample the next step while the learner updates. ``async_speedup`` is their ratio.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

ENV = "branchgym/Household-v0"


def _config(db: str, workers: int, samples: int, max_turns: int, env_workers: int | None = None):
    from branchgym.config import TrainConfig

    cfg = TrainConfig(env_id=ENV, env_kwargs={"max_receptacles": 8}, db=db)
    rollout = dataclasses.replace(cfg.rollout, samples_per_task=samples, max_turns=max_turns)
    envs = workers if env_workers is None else env_workers
    ray = dataclasses.replace(cfg.ray, enabled=True, rollout_workers=workers, env_workers=envs)
    return dataclasses.replace(cfg, rollout=rollout, ray=ray)


def _rate(collect, rounds: int, tasks_per_round: int, samples: int, start_seed: int) -> float:
    from branchgym.tasks.suite import task_refs

    collect(task_refs(ENV, "train", tasks_per_round, start=start_seed))  # warm-up
    start = time.perf_counter()
    for r in range(rounds):
        collect(task_refs(ENV, "train", tasks_per_round, start=start_seed + (r + 1) * 1000))
    return rounds * tasks_per_round * samples / (time.perf_counter() - start)


def _steps_per_s(cfg, tokenizer, model, store, steps: int, tasks: int) -> float:
    """RL steps per second through ``RaySampler.step``, after one warm-up step."""
    import copy
    import random

    from branchgym.agents.learner import Learner, samples_from_groups
    from branchgym.config import config_json, steps_ahead
    from branchgym.distributed import RaySampler
    from branchgym.tasks.suite import task_refs

    learner = Learner(copy.deepcopy(model), tokenizer.pad_token_id, cfg.learner)
    sampler = RaySampler(cfg, config_json(cfg), "scale", tokenizer, learner.model, version=0)
    rng, seeds = random.Random(0), iter(range(50_000, 10**9, 1_000))

    def draw() -> list:
        return task_refs(ENV, "train", tasks, start=next(seeds))

    start = 0.0
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        last = min(step + steps_ahead(cfg), steps)
        groups, _ = sampler.step(store, step, last, learner.version, draw)
        learner.rl_step(samples_from_groups(groups, "soft"), rng)
        sampler.sync(learner.model, learner.version)
    rate = steps / (time.perf_counter() - start)
    sampler.close()
    return rate


def main(
    rounds: int = 3, tasks: int = 8, samples: int = 4, max_turns: int = 6, steps: int = 6
) -> dict:
    from branchgym.agents.hf import HFPolicy
    from branchgym.agents.model import TinyModelConfig, tiny_model
    from branchgym.agents.protocol import TurnCodec
    from branchgym.agents.tokenizer import train_tokenizer
    from branchgym.config import config_json
    from branchgym.demos import env_corpus
    from branchgym.distributed import RaySampler, start
    from branchgym.rollouts.manager import RolloutManager
    from branchgym.rollouts.store import TrajectoryStore
    from branchgym.runner import env_factory

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    db = f"sqlite:///{folder / 'scale.db'}"
    cfg = _config(db, 1, samples, max_turns)
    make_env = env_factory(cfg)
    tokenizer = train_tokenizer(env_corpus(make_env, 60, 0), 600)
    codec = TurnCodec(tokenizer)
    model = tiny_model(len(tokenizer), tokenizer.pad_token_id, codec.stop_id, TinyModelConfig())
    store = TrajectoryStore(db)
    store.create_run("scale", {})
    result: dict = {"env": ENV, "trajectories_per_round": tasks * samples}

    policy = HFPolicy(model, tokenizer, tokenizer.pad_token_id, seed=0)
    manager = RolloutManager(make_env, policy, codec, cfg.rollout)

    def local(task_list):
        store.write_groups("scale", manager.rollout(task_list))
        policy.reset_cache()

    result["local_traj_per_s"] = round(_rate(local, rounds, tasks, samples, 0), 2)

    t0 = time.perf_counter()
    ray = start(cfg.ray)
    result["ray_start_s"] = round(time.perf_counter() - t0, 2)
    for workers, env_workers in ((1, 1), (2, 2), (1, 0), (2, 0)):
        name = f"ray_{workers}_workers" + ("_envs_inside" if env_workers == 0 else "")
        wcfg = _config(db, workers, samples, max_turns, env_workers)
        t0 = time.perf_counter()
        sampler = RaySampler(wcfg, config_json(wcfg), "scale", tokenizer, model, version=0)
        result[f"{name}_start_s"] = round(time.perf_counter() - t0, 2)

        def remote(task_list, sampler=sampler):
            sampler.collect(store, task_list, step=0, version=0)

        rate = _rate(remote, rounds, tasks, samples, 10_000 * (len(result) + 1))
        result[f"{name}_traj_per_s"] = round(rate, 2)
        sampler.close()
    for staleness in (0, 1):
        wcfg = _config(db, 2, samples, max_turns, 0)
        wcfg = dataclasses.replace(wcfg, ray=dataclasses.replace(wcfg.ray, max_staleness=staleness))
        rate = _steps_per_s(wcfg, tokenizer, model, store, steps, tasks)
        result[f"{'a' if staleness else ''}sync_steps_per_s"] = round(rate, 3)
    result["async_speedup"] = round(result["async_steps_per_s"] / result["sync_steps_per_s"], 3)
    ray.shutdown()
    store.close()
    for suffix in ("", "_envs_inside"):
        one, two = (result[f"ray_{n}_workers{suffix}_traj_per_s"] for n in (1, 2))
        result[f"speedup_2_over_1{suffix}"] = round(two / one, 3)
        result[f"ray_2_over_local{suffix}"] = round(two / result["local_traj_per_s"], 3)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
