"""Exceptions environments raise on purpose.

An environment raises ``ToolError`` when the tool behind a call failed (a search backend down, a
sandbox that could not start) rather than the environment itself. The rollout manager ends that
path with ``tool_error`` instead of ``env_error``, so the two failures can be told apart in the
store. Bad calls from the policy are never exceptions: they are observations.
"""

from __future__ import annotations


class ToolError(RuntimeError):
    """The tool behind a well-formed call failed."""
