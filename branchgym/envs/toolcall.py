"""The tool-call protocol every tool environment shares.

The policy writes one call per turn, ``<tool>argument</tool>``, optionally after free text (its
reasoning); the environment answers inside ``<result>...</result>``. Generation stops at a
closing tool tag (``ToolProtocol.stop``; the rollout manager reads it from the environment's
``stop_strings``), so the call is the last thing in the action. Tag names are configurable.

A call that is not well formed is never an exception: ``parse`` returns the reason as a string,
which the environment shows the policy as its observation with ``valid_action=False``.
Arguments may contain ``<`` and ``>`` (Python code does); only the protocol's own tags count as
nesting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gymnasium as gym

_TAG = re.compile(r"<(/?)([A-Za-z_][\w-]*)>")


@dataclass(frozen=True)
class ToolCall:
    """One well-formed call: the tool's tag name and its stripped argument."""

    tool: str
    argument: str


@dataclass(frozen=True)
class ToolProtocol:
    """Which tags are tools, and how results are wrapped.

    ``tools`` are the tag names the environment accepts, e.g. ``("search", "answer")``;
    ``result_tag`` wraps what the environment returns.
    """

    tools: tuple[str, ...] = ("search", "answer")
    result_tag: str = "result"

    def __post_init__(self) -> None:
        if not self.tools or len(set(self.tools)) != len(self.tools):
            raise ValueError(f"tools must be distinct tag names, got {self.tools!r}")
        for name in (*self.tools, self.result_tag):
            if not _TAG.fullmatch(f"<{name}>"):
                raise ValueError(f"{name!r} is not a valid tag name")

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings for generation: every closing tool tag."""
        return tuple(f"</{tool}>" for tool in self.tools)

    def usage(self) -> str:
        return " or ".join(f"<{t}>...</{t}>" for t in self.tools)

    def result(self, text: str) -> str:
        """Wrap a tool's output the way the policy sees it."""
        return f"<{self.result_tag}> {text} </{self.result_tag}>"

    def parse(self, action: str) -> ToolCall | str:
        """The call in ``action``, or the reason (an observation for the policy) there is none."""
        if not isinstance(action, str):
            return f"Malformed tool call: expected text, got {type(action).__name__}."
        tags = [m for m in _TAG.finditer(action) if m.group(2) in self._known]
        if not tags:
            return self._unknown(action) or f"Malformed tool call: write {self.usage()}."
        calls, problem = _pair(tags)
        if problem:
            return problem
        if len(calls) > 1:
            return f"One tool call per turn: found {len(calls)}."
        (tool, start, end), tail = calls[0], action[calls[0][2] :]
        if tail.strip():
            return f"Text after </{tool}>: a call must end the turn."
        if tool == self.result_tag:
            return f"<{tool}> is written by the environment, not the agent: use {self.usage()}."
        argument = action[start:end].rsplit(f"</{tool}>", 1)[0].strip()
        if not argument:
            return f"Empty <{tool}> call."
        return ToolCall(tool, argument)

    @property
    def _known(self) -> frozenset[str]:
        return frozenset((*self.tools, self.result_tag))

    def _unknown(self, action: str) -> str | None:
        match = re.search(r"<([A-Za-z_][\w-]*)>.*?</\1>", action, re.S)
        if match is None:
            return None
        return f"Unknown tool <{match.group(1)}>: use {self.usage()}."


def _pair(tags: list[re.Match[str]]) -> tuple[list[tuple[str, int, int]], str | None]:
    """Match opening and closing tags: ``(tool, argument start, call end)`` per call, or why
    they do not pair up."""
    calls: list[tuple[str, int, int]] = []
    open_tag: re.Match[str] | None = None
    for tag in tags:
        closing, name = tag.group(1) == "/", tag.group(2)
        if not closing and open_tag is not None:
            return calls, f"Nested tags: <{name}> inside <{open_tag.group(2)}>."
        if not closing:
            open_tag = tag
        elif open_tag is None:
            return calls, f"Unbalanced tags: </{name}> closes nothing."
        elif name != open_tag.group(2):
            return calls, f"Unbalanced tags: <{open_tag.group(2)}> closed by </{name}>."
        else:
            calls.append((name, open_tag.end(), tag.end()))
            open_tag = None
    if open_tag is not None:
        return calls, f"Unbalanced tags: <{open_tag.group(2)}> is never closed."
    return calls, None


def stop_strings(env: gym.Env) -> tuple[str, ...]:
    """The stop strings an environment asks for (its ``stop_strings`` attribute anywhere in the
    wrapper stack), or none."""
    try:
        stops = env.get_wrapper_attr("stop_strings")
    except AttributeError:
        return ()
    return tuple(str(s) for s in stops) if isinstance(stops, (tuple, list)) else ()
