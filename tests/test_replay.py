"""SPEAR's replay buffer as store queries: admission, eviction, recalibration, trigger, restart.

Three groups are written, one per policy version (returns / advantages / tool calls):
  v0: R = [1, 0, 0, 1], A = [+1, -1, -1, +1], calls [2, 0, 1, 0]  mean 0.5, std 0.5
  v1: R = [1, 1, 1, 0], A = [+.5, +.5, +.5, -1.5], calls 1 each  mean 0.75, std 0.4330
  v2: R = [0, 0, 0, 0], A = 0                                    mean 0, std 0
(std is the population std: sqrt(0.1875) = 0.4330 for v1.)
"""

from __future__ import annotations

import math
import random

import pytest

from branchgym.rollouts.replay import ReplayBuffer, ReplayConfig, recalibrate
from branchgym.rollouts.store import TrajectoryStore
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

RUN = "r"
SPEC = [
    ([1, 0, 0, 1], [1, -1, -1, 1], [2, 0, 1, 0]),
    ([1, 1, 1, 0], [0.5, 0.5, 0.5, -1.5], [1, 1, 1, 1]),
    ([0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]),
]


def group(version: int, rets, advs, calls) -> Group:
    segs = [Segment(0, None, SegmentKind.ENV, (1, 2), "prompt")]
    trajs = []
    for i, (r, a, c) in enumerate(zip(rets, advs, calls, strict=True)):
        segs.append(Segment(i + 1, 0, SegmentKind.MODEL, (3,), "act", (-0.5,), (0.7,)))
        trajs.append(
            Trajectory(i + 1, (0, i + 1), float(r), EndReason.TERMINATED, float(a), bool(r), 1, c)
        )
    return Group(TaskRef("e", version), version, version, tuple(segs), tuple(trajs))


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'replay.db'}"


def filled(store: TrajectoryStore, cfg: ReplayConfig) -> ReplayBuffer:
    store.create_run(RUN, {})
    buffer = ReplayBuffer(store, RUN, cfg)
    for version, spec in enumerate(SPEC):
        gid = store.write_group(RUN, group(version, *spec))
        buffer.admit([gid])
    return buffer


def test_admission_by_positive_advantage_and_tool_use(url):
    with TrajectoryStore(url) as store:
        assert len(filled(store, ReplayConfig())) == 2 + 3 + 0
    with TrajectoryStore(url.replace("replay.db", "tools.db")) as store:
        # v0's second positive trajectory made no tool call: only 1 + 3 are admitted
        assert len(filled(store, ReplayConfig(require_tool_use=True))) == 1 + 3


def test_recalibration_uses_the_median_baseline(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig())
        b, s = buffer.baseline()
        assert b == 0.5  # median(0.5, 0.75, 0)
        assert s == pytest.approx(math.sqrt(0.1875))  # median(0.5, 0.4330, 0)
        # every admitted entry has R = 1: A~ = 1 - 0.5 = 0.5
        assert [a for _, a in buffer.recalibrated()] == [0.5] * 5
        # with std normalisation: 0.5 / (0.4330 + 1e-6) = 1.15470
        norm = ReplayBuffer(store, RUN, ReplayConfig(std_normalize=True))
        assert norm.recalibrated()[0][1] == pytest.approx(1.154698, abs=1e-5)
    assert recalibrate(0.4, 0.5, 0.0, std_normalize=False) == pytest.approx(-0.1)


def test_entries_below_the_baseline_are_not_replayed(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig())
        gid = store.write_group(
            RUN, group(3, [0.4, 0.0, 0.0, 0.0], [0.3, -0.1, -0.1, -0.1], [1] * 4)
        )
        buffer.admit([gid])  # baseline now: means (.5, .75, 0, .1) -> b = 0.3
        assert len(buffer) == 6
        assert sorted(a for _, a in buffer.recalibrated()) == pytest.approx([0.1] + [0.7] * 5)


def test_baseline_table_keeps_only_the_latest_entries(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig(baseline_entries=2))
        assert buffer.baseline()[0] == pytest.approx(0.375)  # median(0.75, 0)


def test_eviction_by_policy_version_age(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig(tolerate_steps=10))
        assert buffer.evict(10) == 0  # oldest allowed version 0
        assert buffer.evict(11) == 2  # v0's two entries go
        assert buffer.evict(12) == 3 and len(buffer) == 0


def test_trigger_and_take_clears(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig(batch_size=4))
        assert not buffer.ready()  # 5 admissible, not more than 1.5 x 4 = 6
        small = ReplayBuffer(store, RUN, ReplayConfig(batch_size=3))
        assert small.ready()  # 5 > 4.5
        taken = small.take(random.Random(0))
        assert len(taken) == 2  # the largest power of two <= min(5, 3)
        assert len({t.trajectory_id for t in taken}) == 2
        for sample in taken:
            assert sample.trajectory.ret == 1.0 and sample.advantage == 0.5
            assert sample.group.segment(sample.trajectory.leaf_id).logprobs == (-0.5,)
        assert len(buffer) == 0


def test_the_buffer_survives_a_restart(url):
    with TrajectoryStore(url) as store:
        before = filled(store, ReplayConfig()).recalibrated()
    with TrajectoryStore(url) as store:
        assert ReplayBuffer(store, RUN, ReplayConfig()).recalibrated() == before


def test_admitting_another_runs_group_is_refused(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig())
        store.create_run("other", {})
        gid = store.write_group("other", group(0, *SPEC[0]))
        with pytest.raises(KeyError, match="no group"):
            buffer.admit([gid])
        assert len(buffer) == 5  # nothing of the refused call was kept


def test_sil_step_replays_with_the_scheduled_weight(url, tiny_lm, tiny_tok):
    from dataclasses import replace

    from branchgym.agents.learner import Learner, LearnerConfig
    from branchgym.config import TrainConfig
    from branchgym.train import sil_step

    cfg = TrainConfig()
    cfg = replace(cfg, rl=replace(cfg.rl, sil=True), replay=ReplayConfig(batch_size=2))
    learner = Learner(tiny_lm, tiny_tok.pad_token_id, LearnerConfig(minibatch_size=2))
    with TrajectoryStore(url) as store:
        buffer = filled(store, cfg.replay)  # 5 admissible entries > 1.5 x 2
        out = sil_step(learner, buffer, 0, cfg, random.Random(0))
        assert out["sil/weight"] == 0.0 and out["sil/replayed"] == 0.0
        assert len(buffer) == 5  # w(0) = 0: nothing taken, nothing lost
        version = learner.version
        out = sil_step(learner, buffer, 100, cfg, random.Random(0))
        # w(100) = (1 - cos(pi / 2)) / 2 = 0.5; 2 samples replayed; one PPO step
        assert out["sil/weight"] == pytest.approx(0.5) and out["sil/replayed"] == 2.0
        assert learner.version == version + 1 and len(buffer) == 0
        assert math.isfinite(out["sil/loss"])


def test_snapshot_and_restore_undo_admissions_takes_and_evictions(url):
    """A resumed run puts the buffer back as its checkpoint saw it."""
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig(batch_size=2, trigger_factor=0.5))
        snap = buffer.snapshot()
        before = (buffer.recalibrated(), buffer.baseline())
        buffer.take(random.Random(0))
        buffer.evict(version=100)
        assert len(buffer) == 0
        buffer.restore(snap)
        assert (buffer.recalibrated(), buffer.baseline()) == before
        assert buffer.snapshot() == snap  # same rows in the same order


def test_deleting_later_steps_removes_their_groups_and_buffer_rows(url):
    with TrajectoryStore(url) as store:
        buffer = filled(store, ReplayConfig())  # the groups of SPEC sit at steps 0, 1, 2
        assert store.delete_groups(RUN, from_step=1) == 2
        assert [store.load_group(g).step for g in store.groups(RUN)] == [0]
        assert len(buffer) == 2  # v0's two entries; v1's three went with their group
        assert buffer.baseline() == (0.5, 0.5)


def test_failed_paths_stay_out_of_the_baseline(url):
    # v1 again, plus a path whose environment crashed (return 0): the baseline must still be
    # v1's mean 0.75 and std 0.4330, not (3 / 5, ...); a group of failures adds no baseline
    crashed = group(1, *SPEC[1])
    bad = Trajectory(9, (0, 9), 0.0, EndReason.ENV_ERROR, 0.0, False, 1, 0)
    error = Segment(9, 0, SegmentKind.ENV, (), "environment error: RuntimeError('boom')")
    crashed = Group(crashed.task, 1, 1, (*crashed.segments, error), (*crashed.trajectories, bad))
    prompt = Segment(0, None, SegmentKind.ENV, (), "environment failed to reset: boom")
    lone = Trajectory(0, (0,), 0.0, EndReason.ENV_ERROR)
    all_failed = Group(TaskRef("e", 5), 2, 2, (prompt,), (lone,))
    with TrajectoryStore(url) as store:
        store.create_run(RUN, {})
        buffer = ReplayBuffer(store, RUN, ReplayConfig())
        assert buffer.admit([store.write_group(RUN, crashed)]) == 3
        assert buffer.admit([store.write_group(RUN, all_failed)]) == 0
        b, s = buffer.baseline()
    assert b == pytest.approx(0.75) and s == pytest.approx(math.sqrt(0.1875))
