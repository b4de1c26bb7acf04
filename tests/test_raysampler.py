"""RaySampler's bookkeeping with a stand-in for Ray: which weight hand-overs a step waits for."""

from __future__ import annotations

from types import SimpleNamespace

from branchgym.distributed import RaySampler


class FakeRay:
    """Records what each ``get`` waited on; ``put`` returns its argument."""

    def __init__(self) -> None:
        self.waited: list[list] = []

    def get(self, refs):
        self.waited.append(list(refs))
        return [[] for ref in refs if ref[0] == "rollout"]

    def put(self, value):
        return value


def _remote(fn):
    return SimpleNamespace(remote=fn)


def _sampler() -> tuple[RaySampler, FakeRay]:
    ray = FakeRay()
    worker = SimpleNamespace(
        rollout=_remote(lambda tasks, step, version: ("rollout", step, version)),
        load_weights=_remote(lambda version, ref: ("load", version)),
    )
    sampler = object.__new__(RaySampler)  # no Ray: only the bookkeeping is under test
    sampler.ray, sampler.servers, sampler.workers, sampler.env_workers = ray, True, [worker], []
    sampler._loads, sampler._confirmed, sampler.pending = [], 0, {}
    return sampler, ray


def test_a_step_waits_only_for_the_weights_sent_before_its_rollouts():
    # max_staleness 2: step s's rollouts are sent with steps s+1 and s+2 queued behind them;
    # the weights of version v (sent after step v-1's update) queue behind step v+1's
    # rollouts. Waiting for all of them at step v made the learner wait for rollouts of a
    # later step, so staleness 2 overlapped no more than staleness 1.
    sampler, ray = _sampler()
    store = SimpleNamespace(load_group=lambda gid: gid)
    waited_loads = []
    for step in range(5):
        ray.waited.clear()
        sampler.step(store, step, min(step + 2, 4), version=step, draw=lambda: ["task"])
        waited_loads.append([r for refs in ray.waited for r in refs if r[0] == "load"])
        sampler.sync(None, step + 1)  # the update after this step's rollouts
    # version v's weights were sent after step v-1's update, just before step v+2's rollouts
    # were submitted: step v+2 confirms them, and no step waits for a later hand-over (the old
    # code waited at step 1 for version 1, queued behind step 2's rollouts)
    assert waited_loads == [[], [], [], [("load", 1)], [("load", 2)]]
    assert sampler._loads == [("load", 3), ("load", 4), ("load", 5)]
    assert sampler._confirmed == 2
