"""ARPO's soft and hard advantage attribution on a hand-built tree.

    root ─ m1 ─ e1 ─┬─ m2a                      path A, advantage +1
                    └─ m2b ─ e2 ─ m3             path B, advantage -1
    root ─ m4                                    path C, advantage +0.5

m1 lies on A and B: hard attribution gives it (1 + -1) / 2 = 0 and trains it once (on A).
"""

from __future__ import annotations

import pytest

from branchgym.agents.attribution import segment_advantages, segment_owners
from branchgym.agents.learner import samples_from_groups
from branchgym.trajectory import EndReason, Group, Segment, SegmentKind, TaskRef, Trajectory

E, M = SegmentKind.ENV, SegmentKind.MODEL


def seg(i, parent, kind, tokens):
    extra = (
        {"logprobs": (-0.5,) * len(tokens), "entropies": (1.0,) * len(tokens)} if kind is M else {}
    )
    return Segment(i, parent, kind, tokens, "", **extra)


SEGMENTS = (
    seg(0, None, E, (1, 2)),
    seg(1, 0, M, (10, 11)),  # m1
    seg(2, 1, E, (3,)),  # e1
    seg(3, 2, M, (12,)),  # m2a
    seg(4, 2, M, (13,)),  # m2b
    seg(5, 4, E, (4,)),  # e2
    seg(6, 5, M, (14, 15)),  # m3
    seg(7, 0, M, (16,)),  # m4
)
GROUP = Group(
    TaskRef("e", 0),
    0,
    0,
    SEGMENTS,
    (
        Trajectory(3, (0, 1, 2, 3), 1.0, EndReason.TERMINATED, advantage=1.0),
        Trajectory(6, (0, 1, 2, 4, 5, 6), 0.0, EndReason.TERMINATED, advantage=-1.0),
        Trajectory(7, (0, 7), 0.5, EndReason.TERMINATED, advantage=0.5),
    ),
)


def test_hard_segment_advantages_and_owners():
    assert segment_advantages(GROUP) == {1: 0.0, 3: 1.0, 4: -1.0, 6: -1.0, 7: 0.5}
    assert segment_owners(GROUP) == {1: 0, 3: 0, 4: 1, 6: 1, 7: 2}


def test_soft_samples_train_the_shared_prefix_once_per_path():
    a, b, c = samples_from_groups([GROUP], "soft")
    # A: root(2) m1(2) e1(1) m2a(1); B: root m1 e1 m2b e2 m3(2)
    assert a.mask == (False, False, True, True, False, True) and a.advantage == 1.0
    assert b.mask == (False, False, True, True, False, True, False, True, True)
    assert b.advantage == -1.0 and c.advantage == 0.5
    assert a.token_advantages is None


def test_hard_samples_train_each_segment_once_with_the_mean_advantage():
    a, b, c = samples_from_groups([GROUP], "hard")
    assert a.ids == (1, 2, 10, 11, 3, 12)
    assert a.mask == (False, False, True, True, False, True)
    assert a.token_advantages == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # m1 gets the mean, 0
    # B does not train m1 again: only m2b and m3, at -1
    assert b.mask == (False, False, False, False, False, True, False, True, True)
    assert [x for x, m in zip(b.token_advantages, b.mask, strict=True) if m] == [-1.0] * 3
    assert c.mask == (False, False, True) and c.token_advantages[-1] == 0.5
    trained = sum(sum(s.mask) for s in (a, b, c))
    assert trained == 2 + 1 + 1 + 2 + 1  # every model token of the tree exactly once


@pytest.mark.parametrize("attribution", ["soft", "hard"])
def test_learner_takes_either_attribution(attribution, tiny_lm, tiny_tok):
    import random

    from branchgym.agents.learner import Learner, LearnerConfig

    learner = Learner(
        tiny_lm, tiny_tok.pad_token_id, LearnerConfig(minibatch_size=3, micro_batch_size=2)
    )
    metrics = learner.rl_step(samples_from_groups([GROUP], attribution), random.Random(0))
    assert metrics["loss"] == metrics["loss"]  # finite


FAILED_D = Trajectory(8, (0, 1, 8), 0.0, EndReason.ENV_ERROR, advantage=0.0)  # e: env crashed
WITH_FAILURE = Group(
    TaskRef("e", 0),
    0,
    0,
    (*SEGMENTS, Segment(8, 1, E, (), "environment error: RuntimeError('boom')")),
    (*GROUP.trajectories, FAILED_D),
)


def test_a_path_whose_env_failed_is_left_out_of_the_baseline_and_the_samples():
    from dataclasses import replace

    from branchgym.train import with_advantages

    returns = (1.0, 0.0, 1.0, 0.0)  # D failed: its 0 is no loss of the policy's
    trajs = tuple(
        replace(t, ret=r) for t, r in zip(WITH_FAILURE.trajectories, returns, strict=True)
    )
    scored = with_advantages(replace(WITH_FAILURE, trajectories=trajs), std_normalize=False)
    # the baseline is the mean of A, B and C only, 2/3; D gets no advantage at all
    assert [t.advantage for t in scored.trajectories] == pytest.approx([1 / 3, -2 / 3, 1 / 3, 0])
    for attribution in ("soft", "hard"):
        samples = samples_from_groups([WITH_FAILURE], attribution)
        assert samples == samples_from_groups([GROUP], attribution)  # as if D never ran
