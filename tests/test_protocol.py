"""Chat templates as the turn protocol: a format read off the template, turn for turn."""

from __future__ import annotations

import copy

import pytest

import branchgym.envs
from branchgym.agents.protocol import TemplateError, TurnCodec, TurnFormat
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.demos import env_corpus

CHATML = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def chatml_tok():
    """A tokenizer with a Qwen-style ChatML template and its two special tokens."""
    tok = train_tokenizer(
        env_corpus(lambda: branchgym.envs.make("branchgym/Household-v0"), 20, 0), 600
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_turn_format_read_off_a_chat_template(chatml_tok):
    fmt = TurnFormat.from_chat_template(chatml_tok)
    assert fmt.act_close == "<|im_end|>"
    assert fmt.first_open == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + (
        "<|im_start|>user\n"
    )
    assert fmt.obs_open == "\n<|im_start|>user\n"
    assert fmt.act_open == "<|im_end|>\n<|im_start|>assistant\n"
    assert fmt.special_tokens() == ("<|im_end|>",)


def test_appended_turns_give_exactly_what_the_chat_template_gives(chatml_tok):
    codec = TurnCodec(chatml_tok, TurnFormat.from_chat_template(chatml_tok))
    turns = [
        "You are in the kitchen.",
        "go to fridge 1",
        "The fridge 1 is closed.",
        "open fridge 1",
    ]
    ids = codec.observation_ids(turns[0], first=True) + codec.action_ids(turns[1])
    ids += codec.observation_ids(turns[2]) + codec.action_ids(turns[3])
    ids += codec.observation_ids("You open the fridge 1.")
    msgs = [
        {"role": ("user", "assistant")[i % 2], "content": t}
        for i, t in enumerate([*turns, "You open the fridge 1."])
    ]
    want = chatml_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert chatml_tok.decode(ids) == want
    assert ids == chatml_tok.encode(want, add_special_tokens=False)
    assert codec.stop_id == chatml_tok.convert_tokens_to_ids("<|im_end|>")
    assert codec.action_text(codec.action_ids("open fridge 1")) == "open fridge 1"


def test_a_template_without_a_closing_special_token_is_refused(chatml_tok):
    plain = copy.deepcopy(chatml_tok)
    plain.chat_template = (
        "{%- for m in messages %}{{- m['role'] + ': ' + m['content'] + '\\n' }}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- 'assistant: ' }}{%- endif %}"
    )
    with pytest.raises(TemplateError, match="no special token closes an assistant message"):
        TurnFormat.from_chat_template(plain)
