"""An environment's own data for the embedded model: tokenizer texts and expert demonstrations.

Both are gathered by playing episodes before any rollout, so a third-party environment that
fails now and then must not end the run here either. Each episode runs under a timeout
(``EnvCalls``); an episode whose environment raises or hangs is skipped with a warning, its
texts dropped, and the next one starts on a fresh environment. Only when every episode fails
does ``ExpertDataError`` say so, with the first failure.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from branchgym.agents.learner import TokenSample
from branchgym.agents.protocol import TurnCodec
from branchgym.rollouts.envcalls import EnvCalls, EnvTimeout
from branchgym.trajectory import TaskRef

T = TypeVar("T")
EPISODE_TIMEOUT = 60.0  # seconds for one whole episode of gathering, at the least
GIVE_UP = 5  # episodes that fail before any succeeds: the env is broken, not flaky


def episode_timeout(env_timeout: float) -> float:
    """The time one whole episode of gathering gets: ``EPISODE_TIMEOUT``, or the rollouts'
    per-call ``env_timeout`` where that is longer (a slow environment)."""
    return max(EPISODE_TIMEOUT, env_timeout)


class ExpertDataError(RuntimeError):
    """The environment could not give the warm start's data: every episode failed, or its
    info lacks what the expert needs."""


def env_corpus(
    make_env: Callable, n_episodes: int, seed: int, timeout: float = EPISODE_TIMEOUT
) -> list[str]:
    """Texts for the tokenizer: expert episodes plus random admissible commands.

    An environment without ``expert_plan`` / ``admissible_commands`` in its info (a third-party
    one, say) gives its opening observations only; byte fallback covers the rest.
    """

    def episode(env: Any, ep: int, rng: random.Random) -> list[str]:
        obs, info = env.reset(seed=10**9 + ep)
        if not isinstance(obs, str):
            raise TypeError(f"reset() returned a {type(obs).__name__}, not a str")
        texts = [obs]
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
        return texts

    what = "tokenizer texts"
    episodes = guarded_episodes(make_env, range(n_episodes), episode, seed, what, timeout)
    return [text for texts in episodes for text in texts]


def expert_demos(
    make_env: Callable,
    tasks: Sequence[TaskRef],
    codec: TurnCodec,
    noise: float,
    seed: int,
    timeout: float = EPISODE_TIMEOUT,
) -> list[TokenSample]:
    """One token sequence per task: the expert's actions between observations, all trained.

    The expert is privileged: it walks straight to the object. A clone of it has never seen a
    receptacle without the object, so it learns "arrive, then take" whatever it sees. So while
    the object is still to be found, each ``go to`` is, with probability ``noise``, replaced
    by a search step to a receptacle not yet visited (opening it if it is closed), as a searcher
    that does not know where the object is would do; the expert's plan resumes from wherever
    that leads. These DART-style demonstrations show both "the object is here: take it" and
    "it is not here: look elsewhere", which the policy needs before RL can improve its search.

    The environment's info must carry ``expert_plan`` (the actions left to win); a task whose
    episode fails is skipped, with a warning.
    """

    def episode(env: Any, task: TaskRef, rng: random.Random) -> TokenSample:
        obs, info = env.reset(seed=task.seed, options={"task": task})
        _require_plan(info, task.env_id)
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
        return TokenSample(tuple(ids), (0.0,) * len(ids), tuple(mask))

    return guarded_episodes(make_env, tasks, episode, seed, "expert demonstrations", timeout)


def check_expert(env: Any, env_id: str) -> None:
    """``ExpertDataError`` if ``env``'s info after a reset has no ``expert_plan``; a reset
    that fails tells nothing and passes (the warm start skips such episodes)."""
    try:
        _, info = env.reset(seed=0)
    except Exception:
        return
    _require_plan(info, env_id)


def _require_plan(info: Any, env_id: str) -> None:
    if not isinstance(info, dict) or "expert_plan" not in info:
        raise ExpertDataError(
            f"{env_id} gives no info['expert_plan'], which the warm start imitates: add it "
            "(the actions left to win, as strings), or skip the warm start with demos = 0 "
            "under [sft] in a --config file"
        )


def guarded_episodes(
    make_env: Callable,
    items: Sequence[Any],
    episode: Callable[[Any, Any, random.Random], T],
    seed: int,
    what: str,
    timeout: float = EPISODE_TIMEOUT,
) -> list[T]:
    """``episode(env, item, rng)`` for each item, in order, each under ``timeout`` seconds.

    One environment and one generator (seeded ``seed``) serve the episodes in turn; the
    environment is made inside the guarded call too, on the thread that will use it. An
    episode that raises or hangs is skipped, its environment dropped (closed, unless a thread
    is still inside it) and a fresh one made; after a hang the generator is replaced too, so
    the lost thread keeps the old one to itself. ``ExpertDataError`` is raised at once, when
    the first ``GIVE_UP`` episodes all fail, and when no episode succeeds.
    """
    rng = random.Random(seed)
    out: list[T] = []
    failures: list[str] = []
    box: list[Any] = [None]  # the environment, shared with the call that may make it
    with EnvCalls(workers=1, timeout=timeout) as calls:
        for i, item in enumerate(items):
            (result,) = calls.run([partial(_played, make_env, box, episode, item, rng)])
            if not isinstance(result, BaseException):
                out.append(result)
                continue
            if isinstance(result, EnvTimeout):  # a thread is still inside the env: leave it
                rng, box = random.Random(seed * 1_000_003 + i), [None]
            else:
                _close(box[0])
                box[0] = None
            if isinstance(result, ExpertDataError):
                raise result
            failures.append(f"{result!r}")
            if not out and len(failures) >= GIVE_UP:
                break
    _close(box[0])
    if failures and not out:
        slow = "EnvTimeout" in failures[0]
        hint = " (if it is only slow, raise rollout.env_timeout)" if slow else ""
        raise ExpertDataError(
            f"the environment failed in all {len(failures)} episodes of {what} it was given: "
            f"{failures[0]}{hint}"
        )
    if failures:
        warnings.warn(
            f"skipped {len(failures)} of {len(failures) + len(out)} episodes of {what}, "
            f"whose environment failed; the first: {failures[0]}",
            stacklevel=3,
        )
    return out


def _played(make_env: Callable, box: list[Any], episode: Callable, item: Any, rng) -> Any:
    if box[0] is None:
        box[0] = make_env()
    return episode(box[0], item, rng)


def _close(env: Any) -> None:
    if env is not None:
        with contextlib.suppress(Exception):  # a broken env may fail to close too: dropped
            env.close()


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
