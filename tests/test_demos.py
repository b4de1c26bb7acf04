"""The warm start's data from a flaky environment: failures are skipped, not fatal."""

from __future__ import annotations

import time

import pytest

import branchgym.envs
from branchgym.demos import ExpertDataError, env_corpus, expert_demos, guarded_episodes
from branchgym.tasks.suite import task_refs
from branchgym.trajectory import TaskRef

HOUSEHOLD = "branchgym/Household-v0"


class Flaky:
    """Household, except that every ``every``-th reset raises (counted across instances)."""

    resets = 0

    def __init__(self, every: int):
        self.env, self.every = branchgym.envs.make(HOUSEHOLD), every
        self.closed = False

    def reset(self, **kw):
        Flaky.resets += 1
        if Flaky.resets % self.every == 0:
            raise RuntimeError("flaky reset")
        return self.env.reset(**kw)

    def __getattr__(self, name):
        return getattr(self.env, name)

    def close(self):
        self.closed = True


def flaky_factory(every: int):
    """A factory of ``Flaky`` envs (the reset count starts again), and the list it fills."""
    Flaky.resets = 0
    made: list[Flaky] = []

    def make() -> Flaky:
        made.append(Flaky(every))
        return made[-1]

    return make, made


def test_corpus_skips_the_episodes_whose_env_failed_and_says_so():
    make, made = flaky_factory(every=3)

    with pytest.warns(UserWarning, match=r"skipped 3 of 10 episodes of tokenizer texts"):
        texts = env_corpus(make, 10, 0)
    healthy = env_corpus(lambda: branchgym.envs.make(HOUSEHOLD), 10, 0)
    openings = [t for t in texts if not t.startswith(" ")]  # later texts start with a space
    assert len(openings) == 7 and texts[0] == healthy[0]
    assert len(made) == 4 and all(env.closed for env in made)  # a fresh env after each failure


def test_an_env_that_always_fails_gives_one_clear_error():
    Flaky.resets = 0
    with pytest.raises(ExpertDataError, match=r"failed in all 4 episodes.*flaky reset"):
        expert_demos(lambda: Flaky(every=1), task_refs(HOUSEHOLD, "train", 4), None, 0.0, 0)


def test_demos_need_an_expert_plan_and_say_how_to_do_without(codec):
    class NoPlan:
        def reset(self, **kw):
            return "hello", {}

        def close(self):
            pass

    with pytest.raises(ExpertDataError, match=r"no info\['expert_plan'\].*demos = 0"):
        expert_demos(NoPlan, [TaskRef("my/Env-v0", 0)], codec, 0.0, 0)


def test_a_hung_episode_is_abandoned_after_its_timeout():
    def episode(env, item, rng):
        if item == 1:
            time.sleep(30)
        return item, rng.random()

    start = time.monotonic()
    with pytest.warns(UserWarning, match="EnvTimeout"):
        out = guarded_episodes(object, [0, 1, 2], episode, 0, "test", timeout=0.3)
    assert time.monotonic() - start < 5
    assert [item for item, _ in out] == [0, 2]


def test_an_env_broken_from_the_start_is_given_up_after_a_few_episodes():
    make, made = flaky_factory(every=1)

    with pytest.raises(ExpertDataError, match=r"failed in all 5 episodes of tokenizer texts"):
        env_corpus(make, 400, 0)
    assert len(made) == 5 and all(env.closed for env in made)


def test_the_env_is_made_on_the_thread_that_plays_it():
    import threading

    made_on, played_on = [], []

    def make():
        made_on.append(threading.get_ident())
        return object()

    def episode(env, item, rng):
        played_on.append(threading.get_ident())
        return item

    assert guarded_episodes(make, [0, 1], episode, 0, "test") == [0, 1]
    assert made_on == played_on[:1] and threading.get_ident() not in made_on
