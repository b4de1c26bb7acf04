"""The turn protocol: how observations and actions become tokens, and tokens become actions.

A conversation is ``<|obs|> observation<|act|> action<|end|><|obs|> observation<|act|> ...``.
The environment's part of every turn, ``<|obs|> text<|act|>``, is encoded once and appended as
masked tokens; the model's part is exactly the tokens it sampled, up to and including the stop
token. Nothing the model wrote is ever re-tokenised, so the learner trains on the very tokens
whose log-probs were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TokenizerLike(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def convert_tokens_to_ids(self, token: str) -> int: ...


@dataclass(frozen=True)
class TurnFormat:
    """The strings around each turn. The defaults are the tiny tokenizer's special tokens."""

    obs_open: str = "<|obs|>"
    act_open: str = "<|act|>"
    act_close: str = "<|end|>"

    def observation_text(self, obs: str) -> str:
        return f"{self.obs_open} {obs}{self.act_open}"

    def chat_template(self) -> str:
        """A Jinja chat template equivalent to this format (user = env, assistant = policy)."""
        return (
            "{% for m in messages %}{% if m['role'] == 'assistant' %}"
            "{{ ' ' + m['content'] + '" + self.act_close + "' }}"
            "{% else %}{{ '" + self.obs_open + " ' + m['content'] + '" + self.act_open + "' }}"
            "{% endif %}{% endfor %}"
        )


class TurnCodec:
    """Encodes environment turns and decodes sampled actions for one tokenizer."""

    def __init__(self, tokenizer: TokenizerLike, fmt: TurnFormat | None = None) -> None:
        self.tokenizer = tokenizer
        self.fmt = fmt or TurnFormat()
        self.stop_id = tokenizer.convert_tokens_to_ids(self.fmt.act_close)

    def observation_ids(self, obs: str) -> list[int]:
        return self.tokenizer.encode(self.fmt.observation_text(obs), add_special_tokens=False)

    def action_ids(self, action: str) -> list[int]:
        """Tokens of an action as the model should write it (for demonstrations)."""
        ids = self.tokenizer.encode(" " + action, add_special_tokens=False)
        return [*ids, self.stop_id]

    def action_text(self, ids: list[int] | tuple[int, ...]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
