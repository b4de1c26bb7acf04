"""``branchgym/SearchQA-v0``: answer multi-hop questions about a fictional world with a search tool.

The policy writes one tool call per turn: ``<search>query</search>`` returns the top passages by
BM25 (``rank_bm25``) inside ``<result>...</result>``; ``<answer>text</answer>`` ends the episode
with reward 1 for an exact match after SQuAD normalisation (``reward="f1"``: token F1). A
malformed, empty, nested or unknown call never raises: the observation says what was wrong and
``valid_action`` is False. ``info["expert_plan"]`` is the oracle's remaining plan (search each
entity of the question's chain not yet searched, then answer); ``info["tool_call"]`` marks the
steps that ran the search tool. State is tiny, so ``snapshot()`` is a copy of it.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any, ClassVar, Literal

import gymnasium as gym
from rank_bm25 import BM25Okapi

from branchgym.envs.searchqa.world import Question, World, build_world, make_question
from branchgym.tasks.scoring import exact_match, token_f1
from branchgym.trajectory import TaskRef

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)
_CALL = re.compile(r"^\s*<(\w+)>(.*?)</(\w+)>\s*$", re.S)
_SIMPLE_CALL = re.compile(r"<(\w+)>[^<>]*</\1>")
_TOOLS = ("search", "answer")


@lru_cache(maxsize=4)
def _index(world_seed: int) -> tuple[World, BM25Okapi]:
    world = build_world(world_seed)
    return world, BM25Okapi([_terms(p) for p in world.passages])


def _terms(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def parse_call(action: str) -> tuple[str, str] | str:
    """``(tool, argument)`` of a well-formed call, or the reason it is not one."""
    calls = _SIMPLE_CALL.findall(action)
    if len(calls) > 1:
        return f"One tool call per turn: found {len(calls)}."
    match = _CALL.match(action)
    if match is None:
        return "Malformed tool call: write <search>query</search> or <answer>text</answer>."
    tool, arg, close = match.groups()
    if tool != close:
        return f"Unbalanced tags: <{tool}> closed by </{close}>."
    if tool not in _TOOLS:
        return f"Unknown tool <{tool}>: use <search> or <answer>."
    if "<" in arg or ">" in arg:
        return "Nested tags: a call holds plain text only."
    if not arg.strip():
        return f"Empty <{tool}> call."
    return tool, arg.strip()


class SearchQAEnv(gym.Env[str, str]):
    """One question per episode; search the corpus, then answer."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        world_seed: int = 0,
        top_k: int = 2,
        max_hops: int = 3,
        reward: Literal["em", "f1"] = "em",
        render_mode: str | None = None,
    ) -> None:
        self.world, self.bm25 = _index(world_seed)
        self.top_k, self.max_hops, self.reward_kind = top_k, max_hops, reward
        self.observation_space = self.action_space = TEXT
        self.render_mode = render_mode
        self._q: Question | None = None
        self._searched: tuple[str, ...] = ()
        self._last = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        episode = task.seed if isinstance(task, TaskRef) else seed
        if episode is None:
            episode = int(self.np_random.integers(2**31))
        self._q = make_question(self.world, episode, self.max_hops)
        self._searched = ()
        self._last = f"Question: {self._q.text}"
        return self._last, self._info(valid=True, tool=False)

    def step(self, action: str):
        q = self._require()
        parsed = parse_call(action if isinstance(action, str) else "")
        if isinstance(parsed, str):
            self._last = parsed
            return parsed, 0.0, False, False, self._info(valid=False, tool=False)
        tool, arg = parsed
        if tool == "answer":
            score = exact_match if self.reward_kind == "em" else token_f1
            reward = score(arg, q.answer)
            self._last = f"You answered {arg}."
            info = self._info(valid=True, tool=False, won=exact_match(arg, q.answer) == 1.0)
            return self._last, reward, True, False, info
        self._searched += (arg,)
        self._last = f"<result> {' | '.join(self.search(arg))} </result>"
        return self._last, 0.0, False, False, self._info(valid=True, tool=True)

    def search(self, query: str) -> list[str]:
        """The ``top_k`` passages BM25 ranks highest for ``query``."""
        return self.bm25.get_top_n(_terms(query), list(self.world.passages), n=self.top_k)

    def snapshot(self) -> tuple[Question | None, tuple[str, ...], str]:
        return self._q, self._searched, self._last

    def restore(self, snap: tuple[Question | None, tuple[str, ...], str]) -> None:
        self._q, self._searched, self._last = snap

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def _info(self, valid: bool, tool: bool, won: bool = False) -> dict[str, Any]:
        q = self._require()
        todo = [e for e in q.chain if e not in self._searched]
        return {
            "instruction": q.text,
            "expert_plan": [f"<search>{e}</search>" for e in todo]
            + [f"<answer>{q.answer}</answer>"],
            "won": won,
            "valid_action": valid,
            "tool_call": tool,
            "hops": q.hops,
        }

    def _require(self) -> Question:
        if self._q is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._q
