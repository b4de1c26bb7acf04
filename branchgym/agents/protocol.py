"""The turn protocol: how observations and actions become tokens, and tokens become actions.

A conversation is ``<|obs|> observation<|act|> action<|end|><|obs|> observation<|act|> ...``.
The environment's part of every turn, ``<|obs|> text<|act|>``, is encoded once and appended as
masked tokens; the model's part is exactly the tokens it sampled, up to and including the stop
token. Nothing the model wrote is ever re-tokenised, so the learner trains on the very tokens
whose log-probs were recorded.

A pretrained chat model has its own protocol in its tokenizer's chat template.
``TurnFormat.from_chat_template(tokenizer)`` reads it off by rendering probe conversations:
observations become user messages, actions assistant messages, and the stop token is the
special token that closes an assistant message (``<|im_end|>``, ``<|eot_id|>``, ...). Whatever
the template puts after that token (a newline, the next user header) is part of the next
observation's masked tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class TokenizerLike(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def convert_tokens_to_ids(self, token: str) -> int: ...


class TemplateError(ValueError):
    """A chat template this protocol cannot follow token for token."""


_PROBES = ("Observation-one-7f3a", "Action-one-7f3a", "Observation-two-7f3a")


@dataclass(frozen=True)
class TurnFormat:
    """The strings around each turn. The defaults are the tiny tokenizer's special tokens."""

    obs_open: str = "<|obs|>"
    act_open: str = "<|act|>"
    act_close: str = "<|end|>"  # the stop token: one token, sampled by the model
    first_open: str | None = None  # before the first observation (system prompt); None: obs_open
    sep: str = " "  # between obs_open and the observation, and before the action
    special: bool = True  # obs_open and act_open are special tokens of their own

    def observation_text(self, obs: str, first: bool = False) -> str:
        opening = self.first_open if first and self.first_open is not None else self.obs_open
        return f"{opening}{self.sep}{obs}{self.act_open}"

    def special_tokens(self) -> tuple[str, ...]:
        """The strings that must be single tokens of the tokenizer."""
        if self.special:
            return (self.obs_open, self.act_open, self.act_close)
        return (self.act_close,)

    @classmethod
    def from_chat_template(cls, tokenizer) -> TurnFormat:
        """The protocol of ``tokenizer``'s chat template (user = environment, assistant = policy).

        Raises ``TemplateError`` when the template has no closing special token after an
        assistant message, or renders history differently from a growing conversation (then
        appending turns would not give what the template gives).
        """
        obs1, act1, obs2 = _PROBES

        def render(*turns: str, prompt: bool = True) -> str:
            roles = ("user", "assistant")
            msgs = [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)

        first = render(obs1)
        if first.count(obs1) != 1:
            raise TemplateError("the chat template does not render a user message verbatim")
        first_open, act_open = first.split(obs1)
        full = render(obs1, act1, obs2)
        if not full.startswith(first + act1) or not full.endswith(obs2 + act_open):
            raise TemplateError(
                "the chat template renders a conversation differently as it grows; turns "
                "cannot be appended token for token"
            )
        between = full[len(first + act1) : -len(obs2 + act_open)]
        specials = sorted(tokenizer.all_special_tokens, key=len, reverse=True)
        close = next((t for t in specials if t and between.startswith(t)), None)
        if close is None:
            raise TemplateError(
                f"no special token closes an assistant message (after it: {between[:40]!r})"
            )
        return cls(between[len(close) :], act_open, close, first_open, sep="", special=False)

    def chat_template(self) -> str:
        """A Jinja chat template equivalent to this format (user = env, assistant = policy)."""
        return (
            "{% for m in messages %}{% if m['role'] == 'assistant' %}"
            "{{ ' ' + m['content'] + '" + self.act_close + "' }}"
            "{% else %}{{ '" + self.obs_open + " ' + m['content'] + '" + self.act_open + "' }}"
            "{% endif %}{% endfor %}"
        )


def turn_format(tokenizer, chat_template: bool) -> TurnFormat:
    """The tokenizer's own chat protocol when ``chat_template``, else branchgym's."""
    return TurnFormat.from_chat_template(tokenizer) if chat_template else TurnFormat()


class TurnCodec:
    """Encodes environment turns and decodes sampled actions for one tokenizer."""

    def __init__(self, tokenizer: TokenizerLike, fmt: TurnFormat | None = None) -> None:
        self.tokenizer = tokenizer
        self.fmt = fmt or TurnFormat()
        self.stop_id = tokenizer.convert_tokens_to_ids(self.fmt.act_close)

    def observation_ids(self, obs: str, first: bool = False) -> list[int]:
        """Masked tokens of an observation: ``first`` for the opening one (the prompt)."""
        text = self.fmt.observation_text(obs, first)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def action_ids(self, action: str) -> list[int]:
        """Tokens of an action as the model should write it (for demonstrations)."""
        ids = self.tokenizer.encode(self.fmt.sep + action, add_special_tokens=False)
        return [*ids, self.stop_id]

    def action_text(self, ids: list[int] | tuple[int, ...]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
