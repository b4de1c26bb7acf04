"""``branchgym/PythonTool-v0``: arithmetic and word problems solved with a Python sandbox.

The policy writes one tool call per turn. ``<python>code</python>`` runs the code in the sandbox
(``branchgym.envs.pythontool.sandbox``: a fresh interpreter per call, so nothing persists between
calls; print what you need) and returns its stdout inside ``<result>...</result>``; when the code
fails, the observation adds one line saying how (the traceback's last line, ``Timed out after
5 s.``, ``CPU time limit of 5 s exceeded.``, ``Output exceeded ... bytes``). ``<answer>x</answer>``
ends the episode with reward 1 when ``x`` matches the gold answer (``answer_match``: numbers
compare by value, so ``42.0`` answers ``42``), else 0. Malformed calls are observations with
``valid_action=False``; ``ToolError`` is raised only when the sandbox itself cannot start.
``info["expert_plan"]`` is the oracle's remaining plan: run the problem's reference program
(until some call has printed the answer), then give the answer. ``snapshot()`` is a copy of the
tiny state. ``tags=(python, answer, result)`` renames the three tags. The rollout manager steps
environments in threads; each call is its own process, so they run in parallel.
"""

from __future__ import annotations

import re
import string
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import gymnasium as gym

from branchgym.envs.errors import ToolError
from branchgym.envs.pythontool.problems import Problem, make_problem
from branchgym.envs.pythontool.sandbox import (
    DEFAULT_LIMITS,
    RunResult,
    SandboxError,
    SandboxLimits,
    run_python,
)
from branchgym.envs.toolcall import ToolProtocol
from branchgym.tasks.scoring import exact_match
from branchgym.tasks.suite import episode_seed, split_of_seed

TEXT = gym.spaces.Text(max_length=4096, charset=string.printable)
_PRINTABLE = frozenset(string.printable)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_IGNORED_IN_NUMBERS = str.maketrans("", "", "$,_ ")


def answer_match(prediction: str, gold: str) -> float:
    """1.0 when ``prediction`` answers ``gold``. When both read as numbers (after removing
    ``$``, ``,``, ``_`` and spaces) they compare by value, so ``"42.0" == "42"``,
    ``"$1,234.50" == "1234.5"`` and ``"1e3" == "1000"``; otherwise SQuAD exact match."""
    p, g = _as_number(prediction), _as_number(gold)
    if p is not None and g is not None:
        return float(p == g)
    return exact_match(prediction, gold)


def _as_number(text: str) -> Decimal | None:
    compact = text.strip().translate(_IGNORED_IN_NUMBERS)
    if not _NUMBER.fullmatch(compact):
        return None
    try:
        return Decimal(compact)
    except InvalidOperation:
        return None


def describe(result: RunResult, max_chars: int) -> str:
    """What the policy sees of a run: stdout, then ``Error: ...`` if it failed, cut to
    ``max_chars`` and to printable text (the observation space is ``string.printable``)."""
    body = result.stdout.rstrip()
    if result.error:
        body = f"{body}\nError: {result.error}" if body else f"Error: {result.error}"
    body = _printable(body) or "(no output: use print())"
    if len(body) > max_chars:
        body = body[:max_chars] + " ... [output truncated]"
    return body


def _printable(text: str) -> str:
    return "".join(c if c in _PRINTABLE else c.encode("unicode_escape").decode() for c in text)


OVER = "The episode is over: you answered. Call reset()."  # what a step after the answer observes


class PythonToolEnv(gym.Env[str, str]):
    """One computation problem per episode; run Python, then answer."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        limits: SandboxLimits = DEFAULT_LIMITS,
        max_output_chars: int = 1024,
        tags: tuple[str, str, str] = ("python", "answer", "result"),
        render_mode: str | None = None,
    ) -> None:
        self.limits, self.max_output_chars = limits, max_output_chars
        self.protocol = ToolProtocol(tools=tuple(tags[:2]), result_tag=tags[2])
        self.observation_space = self.action_space = TEXT
        self.render_mode = render_mode
        self._problem: Problem | None = None
        self._printed = False  # has some call printed the answer? (the expert then answers)
        self._done = False  # answered: a later step earns nothing
        self._last = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode, split = episode_seed(self.np_random, seed, options)
        self._problem = make_problem(episode, split or split_of_seed(episode))
        self._printed = False
        self._done = False
        self._last = f"Question: {self._problem.text}"
        return self._last, self._info(valid=True, tool=False)

    def step(self, action: str):
        problem = self._require()
        if self._done:  # no reward twice for one answer
            return OVER, 0.0, True, False, self._info(valid=False, tool=False)
        parsed = self.protocol.parse(action)
        if isinstance(parsed, str):
            self._last = parsed
            return parsed, 0.0, False, False, self._info(valid=False, tool=False)
        if parsed.tool == self._answer_tag:
            reward = answer_match(parsed.argument, problem.answer)
            self._last = f"You answered {parsed.argument}."
            self._done = True
            return self._last, reward, True, False, self._info(True, False, won=reward == 1.0)
        result = self.execute(parsed.argument)
        self._printed |= any(answer_match(w, problem.answer) for w in result.stdout.split())
        self._last = self.protocol.result(describe(result, self.max_output_chars))
        return self._last, 0.0, False, False, self._info(valid=True, tool=True)

    def execute(self, code: str) -> RunResult:
        """Run ``code`` in the sandbox; ``ToolError`` if the sandbox itself failed."""
        try:
            return run_python(code, self.limits)
        except (SandboxError, OSError) as exc:
            raise ToolError(f"python sandbox failed: {exc}") from exc

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where generation should stop: after a closing tool tag."""
        return self.protocol.stop

    @property
    def _answer_tag(self) -> str:
        return self.protocol.tools[1]

    def snapshot(self) -> tuple[Problem | None, bool, str, bool]:
        return self._problem, self._printed, self._last, self._done

    def restore(self, snap: tuple[Problem | None, bool, str, bool]) -> None:
        self._problem, self._printed, self._last, self._done = snap

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None

    def _info(self, valid: bool, tool: bool, won: bool = False) -> dict[str, Any]:
        problem = self._require()
        python, answer = self.protocol.tools
        plan = [] if self._printed else [f"<{python}>{problem.solution}</{python}>"]
        return {
            "instruction": problem.text,
            "expert_plan": [*plan, f"<{answer}>{problem.answer}</{answer}>"],
            "won": won,
            "valid_action": valid,
            "tool_call": tool,
            "problem_kind": problem.kind,
        }

    def _require(self) -> Problem:
        if self._problem is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self._problem
