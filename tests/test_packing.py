"""Sequence packing: rows of concatenated sequences score and train exactly like padding."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from branchgym.agents.learner import Learner, LearnerConfig, TokenSample
from branchgym.agents.logprobs import packed_logprobs, pad_batch, sequence_logprobs
from branchgym.agents.model import TinyModelConfig, tiny_model
from branchgym.agents.packing import pack, pack_rows, unpack


def test_first_fit_decreasing_fills_rows_and_gives_long_sequences_their_own():
    assert pack_rows([5, 3, 4, 2, 9], 8) == [[4], [0, 1], [2, 3]]
    assert pack_rows([3, 3], 6) == [[0, 1]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(2, 40), min_size=1, max_size=20), st.integers(8, 64))
def test_every_token_lands_once_and_unpacks_to_its_own_predictions(lengths, length):
    seqs = [[100 * i + j for j in range(n)] for i, n in enumerate(lengths)]
    packed = pack(seqs, length, pad_id=-1)
    assert packed.real_tokens == sum(lengths)
    assert sorted(t for t in packed.ids.flatten().tolist() if t != -1) == sorted(
        t for s in seqs for t in s
    )
    assert packed.ids.shape[1] <= max(length, max(lengths))
    # unpack of the shifted targets gives back each sequence's own tokens 1..n-1
    targets = unpack(packed.ids[:, 1:].float(), packed)
    for i, s in enumerate(seqs):
        assert targets[i, : len(s) - 1].tolist() == s[1:]
    # positions restart at every sequence start
    starts = (packed.position_ids == 0).sum().item()
    assert starts >= len(seqs)


def test_sequences_too_short_to_predict_are_refused():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        pack([[1, 2], [3]], 8, 0)
    with pytest.raises(ValueError, match="at least 1"):
        pack_rows([2], 0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return tiny_model(300, 0, 1, TinyModelConfig())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_equal_padded_ones(model, attn):
    model.config._attn_implementation = attn
    rng = random.Random(1)
    seqs = [[rng.randrange(2, 300) for _ in range(n)] for n in (5, 17, 3, 40, 9, 2, 30)]
    ids, mask = pad_batch(seqs, 0)
    with torch.no_grad():
        logp, ent = sequence_logprobs(model, ids, mask, temperature=0.7)
        packed = pack(seqs, 48, 0)
        assert packed.ids.shape[0] < len(seqs)  # several sequences share a row
        plogp, pent = packed_logprobs(model, packed, temperature=0.7)
    for i, s in enumerate(seqs):
        n = len(s) - 1
        torch.testing.assert_close(plogp[i, :n], logp[i, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(pent[i, :n], ent[i, :n], atol=1e-5, rtol=0)


def _samples(seed: int) -> list[TokenSample]:
    rng = random.Random(seed)
    out = []
    for n in (12, 30, 7, 25, 18, 40):
        mask = tuple(rng.random() < 0.6 for _ in range(n))
        logps = tuple(-rng.uniform(3, 7) for _ in range(n))
        ids = tuple(rng.randrange(2, 300) for _ in range(n))
        out.append(TokenSample(ids, logps, mask, advantage=rng.choice((-1.0, 0.5, 1.0))))
    return out


def test_packing_is_chosen_where_it_costs_less_than_padding():
    from branchgym.agents.packing import packing_pays

    assert not packing_pays([256] * 16, 1024, 128, "sdpa")  # equal lengths: the same tokens
    assert packing_pays([100, 1000, 150, 900, 120, 300] * 5, 1024, 128, "sdpa")  # mixed
    assert packing_pays([256] * 16, 1024, 128, "flex_attention")  # per-sequence attention


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_a_packed_update_matches_a_padded_one(model, aggregation, monkeypatch):
    from branchgym.agents import learner as learner_mod

    packed_calls = []
    real = learner_mod.packed_logprobs
    monkeypatch.setattr(learner_mod, "packing_pays", lambda *a: True)
    monkeypatch.setattr(
        learner_mod, "packed_logprobs", lambda *a, **k: packed_calls.append(1) or real(*a, **k)
    )
    # lr 0: the metrics and the gradients left by each step are compared, not Adam's moves
    # (which blow float noise on near-zero gradients up to a full step)
    samples = _samples(0)
    results = []
    for pack_length in (0, 64):
        m = copy.deepcopy(model)
        cfg = LearnerConfig(
            minibatch_size=6,
            micro_batch_size=3,
            pack_length=pack_length,
            aggregation=aggregation,
            lr=0.0,
            entropy_advantage=0.2,
        )
        learner = Learner(m, 0, cfg)
        metrics = learner.rl_step(samples, random.Random(0))
        rl_grads = [p.grad.clone() for p in m.parameters()]
        sft = learner.sft_step(samples)
        results.append((metrics, rl_grads, sft, [p.grad.clone() for p in m.parameters()]))
    assert packed_calls  # the second learner did run packed
    (m0, rl0, s0, sft0), (m1, rl1, s1, sft1) = results
    assert m0.keys() == m1.keys()
    for key in m0:
        assert m1[key] == pytest.approx(m0[key], rel=1e-4, abs=1e-6), key
    assert s1 == pytest.approx(s0, rel=1e-5)
    for a, b in zip(rl0 + sft0, rl1 + sft1, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)


def test_the_learner_packs_only_models_that_score_packed_rows_exactly(model):
    from transformers import GPT2Config, GPT2LMHeadModel

    from branchgym.agents.packing import packing_exact

    assert packing_exact(model, 0)  # Llama: sequence starts read from the position ids
    gpt2 = GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=300, bos_token_id=1, eos_token_id=1)
    )
    assert not packing_exact(gpt2, 0)  # its mask ignores them: packing would leak
    learner = Learner(gpt2, 0, LearnerConfig(minibatch_size=6, micro_batch_size=6))
    with pytest.warns(UserWarning, match="pads instead"):
        metrics = learner.rl_step(_samples(0), random.Random(0))
    assert metrics["loss"] == metrics["loss"]  # trained, padded


def test_flash_attention_packs_one_row_because_transformers_reads_restarts_only_there(
    model, monkeypatch
):
    # transformers runs flash attention's variable-length kernel from position ids only when
    # the batch has one row; with two, later documents would attend to earlier ones
    from branchgym.agents.packing import row_length

    assert row_length([5, 6, 4], 11, "flash_attention_2") == 15
    assert row_length([5, 6, 4], 11, "flex_attention") == 11
    assert row_length([5, 6, 4], 11, "sdpa") == 11
    learner = Learner(model, 0, LearnerConfig(pack_length=16))
    monkeypatch.setattr(learner, "_attention", lambda: "flash_attention_2")
    t = learner._tensors(_samples(0))
    assert t["packed"].shape[0] == 1  # every sequence in one row, however long
    monkeypatch.setattr(learner, "_attention", lambda: "flex_attention")
    assert learner._tensors(_samples(0))["packed"].shape[0] > 1


def test_the_packing_check_spans_two_rows(model, monkeypatch):
    from branchgym.agents import packing

    shapes = []
    real = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a: shapes.append(real(*a).shape) or real(*a))
    assert packing.packing_exact(model, 0)
    assert packing.packing_exact(model, 0, "flash_attention_2")  # runs SDPA here: one row
    assert shapes == [(2, 11), (1, 15)]
