"""The Policy interface: what every generation backend implements, and a scripted fake.

A request is a token prefix plus sampling parameters; a ``Generation`` is the sampled tokens
with their per-token log-probs and entropies. ``session`` names the path a request continues,
so a backend that keeps KV caches can extend the path's cache instead of re-encoding the prefix
(a branch passes its parent's session as ``parent_session`` the first time it is asked for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one continuation. Generation ends at ``max_new_tokens``, at a token in
    ``stop_token_ids``, or at the token that completes one of the ``stop`` strings (e.g. a
    closing tool tag); the stopping token is kept, so the action is exactly what was sampled."""

    max_new_tokens: int = 32
    temperature: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    prefix: tuple[int, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    session: str | None = None
    parent_session: str | None = None


@dataclass(frozen=True)
class Generation:
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]
    entropies: tuple[float, ...]
    finish_reason: FinishReason
    entropy_exact: bool = True


@runtime_checkable
class Policy(Protocol):
    """Anything that turns token prefixes into sampled continuations."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...


class ScriptedPolicy:
    """A fake policy for tests: ``script(request) -> Generation`` decides every answer.

    Like httpx's ``MockTransport``, it lets a test drive the rollout manager, the store and the
    learner without a model, with exactly the tokens, log-probs and entropies the test wants.
    """

    def __init__(
        self, script: Callable[[GenerationRequest], Generation], vocab_size: int | None = None
    ) -> None:
        self.script = script
        self.vocab_size = vocab_size  # None: branching rules compare raw entropies
        self.requests: list[GenerationRequest] = []
        self.calls: list[int] = []  # requests per generate call, to test batching

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.requests.extend(requests)
        self.calls.append(len(requests))
        return [self.script(r) for r in requests]
