"""``branchgym/SearchQA-v0``: answer multi-hop questions about a fictional world with a search tool.

The policy writes one tool call per turn: ``<search>query</search>`` returns the top passages by
BM25 (``rank_bm25``) inside ``<result>...</result>``; ``<answer>text</answer>`` ends the episode
with reward 1 for an exact match after SQuAD normalisation (``reward="f1"``: token F1). A
malformed, empty, nested or unknown call never raises: the observation says what was wrong and
``valid_action`` is False. ``info["expert_plan"]`` is the oracle's remaining plan (search each
entity of the question's chain not yet searched, then answer); ``info["tool_call"]`` marks the
steps that ran the search tool. State is tiny, so ``snapshot()`` is a copy of it. The calls
follow the shared protocol of ``branchgym.envs.toolcall``; ``tags=(search, answer, result)``
renames the three tags.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any, ClassVar, Literal

import gymnasium as gym
from rank_bm25 import BM25Okapi

from branchgym.envs.searchqa.world import Question, World, build_world, make_question
from branchgym.envs.toolcall import ToolCall, ToolProtocol
from branchgym.tasks.scoring import exact_match, token_f1
from branchgym.tasks.suite import episode_seed, split_of_seed

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)


@lru_cache(maxsize=4)
def _index(world_seed: int) -> tuple[World, BM25Okapi]:
    world = build_world(world_seed)
    return world, BM25Okapi([_terms(p) for p in world.passages])


def _terms(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def parse_call(action: str) -> ToolCall | str:
    """The call in ``action`` under the default tags, or the reason it is not one."""
    return ToolProtocol(("search", "answer")).parse(action)


OVER = "The episode is over: you answered. Call reset()."  # what a step after the answer observes


class SearchQAEnv(gym.Env[str, str]):
    """One question per episode; search the corpus, then answer."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        world_seed: int = 0,
        top_k: int = 2,
        max_hops: int = 3,
        reward: Literal["em", "f1"] = "em",
        tags: tuple[str, str, str] = ("search", "answer", "result"),
        render_mode: str | None = None,
    ) -> None:
        if reward not in ("em", "f1"):
            raise ValueError(f"reward must be 'em' or 'f1', got {reward!r}")
        self.world, self.bm25 = _index(world_seed)
        self.protocol = ToolProtocol(tools=tuple(tags[:2]), result_tag=tags[2])
        self.top_k, self.max_hops, self.reward_kind = top_k, max_hops, reward
        self.observation_space = self.action_space = TEXT
        self.render_mode = render_mode
        self._q: Question | None = None
        self._searched: tuple[str, ...] = ()
        self._done = False  # answered: a later step earns nothing
        self._last = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode, split = episode_seed(self.np_random, seed, options)
        split = split or split_of_seed(episode)
        self._q = make_question(self.world, episode, self.max_hops, split)
        self._searched = ()
        self._done = False
        self._last = f"Question: {self._q.text}"
        return self._last, self._info(valid=True, tool=False)

    def step(self, action: str):
        q = self._require()
        if self._done:  # no reward twice for one answer
            return OVER, 0.0, True, False, self._info(valid=False, tool=False)
        parsed = self.protocol.parse(action)
        if isinstance(parsed, str):
            self._last = parsed
            return parsed, 0.0, False, False, self._info(valid=False, tool=False)
        tool, arg = parsed.tool, parsed.argument
        if tool == self._answer_tag:
            score = exact_match if self.reward_kind == "em" else token_f1
            reward = score(arg, q.answer)
            self._last = f"You answered {arg}."
            info = self._info(valid=True, tool=False, won=exact_match(arg, q.answer) == 1.0)
            self._done = True
            return self._last, reward, True, False, info
        self._searched += (arg,)
        self._last = self.protocol.result(" | ".join(self.search(arg)))
        return self._last, 0.0, False, False, self._info(valid=True, tool=True)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where generation should stop: after a closing tool tag."""
        return self.protocol.stop

    @property
    def _answer_tag(self) -> str:
        return self.protocol.tools[1]

    def search(self, query: str) -> list[str]:
        """The ``top_k`` passages BM25 ranks highest for ``query``."""
        return self.bm25.get_top_n(_terms(query), list(self.world.passages), n=self.top_k)

    def snapshot(self) -> tuple[Question | None, tuple[str, ...], str, bool]:
        return self._q, self._searched, self._last, self._done

    def restore(self, snap: tuple[Question | None, tuple[str, ...], str, bool]) -> None:
        self._q, self._searched, self._last, self._done = snap

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def _info(self, valid: bool, tool: bool, won: bool = False) -> dict[str, Any]:
        q = self._require()
        todo = [e for e in q.chain if e not in self._searched]
        return {
            "instruction": q.text,
            "expert_plan": [self._call(self.protocol.tools[0], e) for e in todo]
            + [self._call(self._answer_tag, q.answer)],
            "won": won,
            "valid_action": valid,
            "tool_call": tool,
            "hops": q.hops,
        }

    @staticmethod
    def _call(tool: str, argument: str) -> str:
        return f"<{tool}>{argument}</{tool}>"

    def _require(self) -> Question:
        if self._q is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._q
