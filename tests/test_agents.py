"""Agents: the tokenizer, the turn codec, the tiny model, the scripted fake.

The HF policy's tests are in test_hf_policy.py, the learner's in test_learner.py.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import branchgym.envs
from branchgym.agents.policy import (
    Generation,
    GenerationRequest,
    Policy,
    ScriptedPolicy,
)
from branchgym.agents.protocol import TurnCodec
from branchgym.agents.tokenizer import train_tokenizer
from branchgym.demos import env_corpus

ENV_ID = "branchgym/Household-v0"


def make_env():
    return branchgym.envs.make(ENV_ID)


def observations(n_episodes: int, seed: int = 0) -> list[str]:
    """Held-out observations (seeds unlike env_corpus's): expert steps mixed with random ones."""
    rng = random.Random(seed)
    env = make_env()
    texts = []
    for ep in range(n_episodes):
        obs, info = env.reset(seed=ep)
        texts.append(obs)
        for turn in range(12):
            plan = info["expert_plan"]
            action = plan[0] if turn % 2 == 0 else rng.choice(info["admissible_commands"])
            obs, _, done, _, info = env.step(action)
            texts.append(obs)
            if done:
                break
    return texts


# ------------------------------------------------------------------------------ tokenizer


@pytest.fixture(scope="module")
def recipe_tok():
    """The tokenizer as ``branchgym.train`` builds it (400 corpus episodes, smoke's vocab)."""
    return train_tokenizer(env_corpus(make_env, 400, 0), vocab_size=600)


def split_words(tok, ids: list[int]) -> list[str]:
    """Adjacent token pairs that cut a word (letters or digits) in two."""
    pieces = [tok.decode([i]) for i in ids]
    return [
        f"{p}|{q}"
        for p, q in itertools.pairwise(pieces)
        if (p[-1:].isalpha() and q[:1].isalpha()) or (p[-1:].isdigit() and q[:1].isdigit())
    ]


def test_every_household_word_is_one_token(recipe_tok):
    codec = TurnCodec(recipe_tok)
    formatted = [codec.fmt.observation_text(t) for t in observations(200)]
    # Words as the model sees them after a space ("<|obs|> This is ...", "you see a apple 1").
    spaced = {w for t in formatted for w in re.findall(r" ([A-Za-z]+|\d+)", t)}
    multi = {
        w: [recipe_tok.decode([i]) for i in recipe_tok.encode(" " + w, add_special_tokens=False)]
        for w in sorted(spaced)
    }
    assert {w: toks for w, toks in multi.items() if len(toks) != 1} == {}
    # Words after a newline or "(" ("\n\nYour task", "(object)") must not be cut either.
    assert [s for t in formatted for s in split_words(recipe_tok, recipe_tok.encode(t))] == []


def test_session_tokenizer_covers_the_common_words(tiny_tok):
    for word in ("cabinet", "countertop", "sinkbasin", "arrive", "nothing", "apple", "fridge"):
        assert len(tiny_tok.encode(" " + word, add_special_tokens=False)) == 1, word


@pytest.mark.parametrize(
    "text",
    ["", "héllo wörld", "☃ 日本語 🎉 ∑∫", "\x00\x7f\t\r\n", "Ω" * 50, "go to cabinet 1", "<|obs"],
)
def test_any_text_round_trips_through_byte_fallback(tiny_tok, text):
    ids = tiny_tok.encode(text, add_special_tokens=False)
    assert tiny_tok.decode(ids) == text
    assert all(0 <= i < len(tiny_tok) for i in ids)


def test_tokenizer_save_and_reload(tiny_tok, tmp_path):
    tiny_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|obs|> You arrive at cabinet 1. The cabinet 1 is closed.<|act|> open cabinet 1<|end|>"
    for t in (text, "ünïcödé ☃", "go to sinkbasin 1"):
        assert loaded.encode(t, add_special_tokens=False) == tiny_tok.encode(
            t, add_special_tokens=False
        )
    assert len(loaded) == len(tiny_tok)
    assert loaded.pad_token_id == tiny_tok.pad_token_id
    assert loaded.chat_template == tiny_tok.chat_template


def test_policy_folder_reloads_the_same_tokenizer(tiny_tok, tiny_lm, tmp_path):
    # A run's policy folder holds model and tokenizer together; AutoTokenizer must not swap in
    # the model family's own tokenizer class (transformers does that for qwen2 configs).
    tiny_lm.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|obs|> You arrive at cabinet 3. The cabinet 3 is closed.<|act|> open cabinet 3<|end|>"
    assert loaded.encode(text, add_special_tokens=False) == tiny_tok.encode(
        text, add_special_tokens=False
    )


def test_special_tokens_are_single_ids(tiny_tok):
    ids = [
        tiny_tok.encode(s, add_special_tokens=False)
        for s in ("<|pad|>", "<|obs|>", "<|act|>", "<|end|>")
    ]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == 4
    assert tiny_tok.pad_token_id == ids[0][0]
    assert tiny_tok.eos_token_id == ids[3][0]
    # a special token inside text stays one id
    assert tiny_tok.encode("a<|end|>b", add_special_tokens=False)[1] == ids[3][0]


def test_chat_template_matches_turn_format(tiny_tok, codec):
    chat = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "go to cabinet 1"},
    ]
    text = tiny_tok.apply_chat_template(chat, tokenize=False)
    assert text == "<|obs|> hi<|act|> go to cabinet 1<|end|>"
    ids = tiny_tok.encode(text, add_special_tokens=False)
    assert ids == codec.observation_ids("hi") + codec.action_ids("go to cabinet 1")


# ------------------------------------------------------------------------------ TurnCodec


def test_codec_action_round_trip(codec, tiny_tok):
    ids = codec.action_ids("go to cabinet 1")
    assert ids[-1] == codec.stop_id == tiny_tok.convert_tokens_to_ids("<|end|>")
    assert codec.stop_id not in ids[:-1]
    assert codec.action_text(ids) == "go to cabinet 1"
    assert codec.action_text(ids[:-1]) == "go to cabinet 1"
    obs = codec.observation_ids("Nothing happens.")
    assert obs[0] == tiny_tok.convert_tokens_to_ids("<|obs|>")
    assert obs[-1] == tiny_tok.convert_tokens_to_ids("<|act|>")
    assert tiny_tok.decode(obs) == "<|obs|> Nothing happens.<|act|>"


# ------------------------------------------------------------------------------ model


def test_model_save_and_reload_gives_identical_logits(tiny_lm, tmp_path):
    tiny_lm.eval()
    ids = torch.tensor([[1, 50, 60, 70, 2, 80, 3]])
    with torch.no_grad():
        before = tiny_lm(input_ids=ids).logits
    tiny_lm.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = loaded(input_ids=ids).logits
    assert torch.equal(before, after)
    assert loaded.config.tie_word_embeddings


# ------------------------------------------------------------------------------ ScriptedPolicy


def test_scripted_policy_answers_from_its_script_and_records_requests():
    def script(req: GenerationRequest) -> Generation:
        n = len(req.prefix)
        return Generation((n, 3), f"len {n}", (-0.5, -0.1), (1.0, 0.2), "stop")

    policy = ScriptedPolicy(script)
    assert isinstance(policy, Policy)
    reqs = [GenerationRequest((1, 2)), GenerationRequest((1, 2, 3), session="s")]
    out = policy.generate(reqs)
    assert [g.token_ids for g in out] == [(2, 3), (3, 3)]
    assert [g.text for g in out] == ["len 2", "len 3"]
    assert policy.requests == reqs
    policy.generate([GenerationRequest((9,))])
    assert len(policy.requests) == 3
