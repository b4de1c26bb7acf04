"""The HF policy: KV-cache reuse across turns and branches, parking, split prefills, sampling
and stop rules.

The key test is cache reuse: every log-prob and entropy that ``HFPolicy.generate`` records while
extending a cached row must equal what a fresh, uncached forward pass (``HFPolicy.score``) gives
for the same full sequence, or PPO's ratio would be wrong from the very first step. Every cache
test runs with the cache compacted at every call and never.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from branchgym.agents.hf import HFPolicy, _split_by_width
from branchgym.agents.model import TinyModelConfig, tiny_model
from branchgym.agents.policy import GenerationRequest, SamplingParams

ATOL = 1e-4


OBS = [
    "Nothing happens.",
    "You arrive at cabinet 1. The cabinet 1 is closed.",
    "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly "
    "around you, you see a cabinet 1, a fridge 1, and a sinkbasin 1.",
]


def sharpen(model, std: float = 0.15):
    """Re-draw the weights wider than HF's 0.02 init so attention is peaked, not uniform.

    With the default init every attention row is nearly uniform and a position or mask error
    moves log-probs by less than the tolerance; with these weights it moves them by far more.
    """
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, std)
    return model


class WidthRecorder:
    """Wraps ``model.forward`` to record the input width of every call."""

    def __init__(self, model) -> None:
        self.widths: list[int] = []
        self.cache_widths: list[int] = []  # the attention mask's width: cache plus input
        self._orig = model.forward
        model.forward = self

    def __call__(self, *args, **kwargs):
        self.widths.append(kwargs["input_ids"].shape[1])
        self.cache_widths.append(kwargs["attention_mask"].shape[1])
        return self._orig(*args, **kwargs)


class BatchRecorder(WidthRecorder):
    """Also records the number of rows of every call."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.rows: list[int] = []

    def __call__(self, *args, **kwargs):
        self.rows.append(kwargs["input_ids"].shape[0])
        return super().__call__(*args, **kwargs)


def assert_matches_score(policy: HFPolicy, prefixes, gens) -> None:
    """Every recorded log-prob / entropy equals a fresh forward pass over the whole sequence."""
    seqs = [list(p) + list(g.token_ids) for p, g in zip(prefixes, gens, strict=True)]
    for seq, gen, (logp, ent) in zip(seqs, gens, policy.score(seqs), strict=True):
        n = len(gen.token_ids)
        assert len(gen.logprobs) == len(gen.entropies) == n > 0
        # score's entry t is the log-prob of token t+1, so generated token j sits at L-1-n+j
        ref_logp, ref_ent = logp[len(seq) - 1 - n :], ent[len(seq) - 1 - n :]
        assert gen.logprobs == pytest.approx(ref_logp, abs=ATOL)
        assert gen.entropies == pytest.approx(ref_ent, abs=ATOL)
        assert all(lp <= 0 for lp in gen.logprobs)
        assert all(0 <= e <= math.log(policy.model.config.vocab_size) + ATOL for e in gen.entropies)


@pytest.mark.parametrize("compact_at", [0.0, 1.0])  # the cache compacted at every call / never
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("layers", [1, 2])
def test_cache_reuse_matches_fresh_scoring(tiny_tok, codec, temperature, layers, attn, compact_at):
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, layers=layers, heads=2, kv_heads=1, intermediate_size=64)
    model = tiny_model(len(tiny_tok), tiny_tok.pad_token_id, codec.stop_id, cfg)
    model.set_attn_implementation(attn)
    sharpen(model)
    policy = HFPolicy(model, tiny_tok, tiny_tok.pad_token_id, seed=1, compact_at=compact_at)

    def params(n):
        return SamplingParams(
            max_new_tokens=n, temperature=temperature, stop_token_ids=(codec.stop_id,)
        )

    # turn 1: three sessions with prompts of different lengths and different token budgets, so
    # rows go inactive at different steps and are fed masked pads.
    prompts = [codec.observation_ids(o) for o in OBS]
    assert len({len(p) for p in prompts}) == 3
    budgets = [3, 7, 5]
    turn1 = [
        GenerationRequest(tuple(p), params(b), session=f"s{i}")
        for i, (p, b) in enumerate(zip(prompts, budgets, strict=True))
    ]
    gens1 = policy.generate(turn1)
    assert [len(g.token_ids) for g in gens1] == budgets  # a random model never says <|end|>
    assert all(g.finish_reason == "length" for g in gens1)
    assert_matches_score(policy, prompts, gens1)
    # The cache holds every token but each row's last sample (it was never fed back).
    assert [len(t) for t in policy._rows.tokens] == [
        len(p) + b - 1 for p, b in zip(prompts, budgets, strict=True)
    ]

    # turn 2: each session's full history plus a new observation, in shuffled order.
    new_obs = [
        codec.observation_ids(o) for o in ("You open the cabinet 1.", "Nothing happens.", "OK")
    ]
    prefixes2 = [
        list(p) + list(g.token_ids) + o for p, g, o in zip(prompts, gens1, new_obs, strict=True)
    ]
    order = [2, 0, 1]
    turn2 = [GenerationRequest(tuple(prefixes2[i]), params(4), session=f"s{i}") for i in order]
    fed_before = [len(policy._rows.tokens[policy._rows.sessions[f"s{i}"]]) for i in order]
    recorder = WidthRecorder(model)
    gens2 = policy.generate(turn2)
    del model.forward
    suffixes = [len(prefixes2[i]) - f for i, f in zip(order, fed_before, strict=True)]
    assert suffixes == [1 + len(new_obs[i]) for i in order]  # last sample + new observation
    assert recorder.widths[0] == max(suffixes)  # only the suffixes were fed, not the history
    assert recorder.widths[1:] == [1] * (len(recorder.widths) - 1)
    # turn 1 left holes (shorter prompts, rows that stopped early): compacting drops them all
    tight = max(fed_before) + max(suffixes)
    assert (recorder.cache_widths[0] == tight) == (compact_at == 0.0)
    assert_matches_score(policy, [prefixes2[i] for i in order], gens2)


def test_sampling_follows_the_softmax_and_never_picks_a_masked_token(tiny_tok, tiny_lm):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    probs = torch.tensor([0.1, 0.2, 0.0, 0.3, 0.4])
    n = 40_000
    logits = probs.log().expand(n, -1)  # log 0 = -inf: a masked token
    draws = torch.rand(n, generator=torch.Generator().manual_seed(0))
    tok, logp, ent = policy._sample(logits, torch.ones(n), draws)
    freq = torch.bincount(tok, minlength=5).float() / n
    assert freq[2] == 0
    assert freq.tolist() == pytest.approx(probs.tolist(), abs=0.01)  # 4 sigma at n = 40,000
    assert logp.tolist() == pytest.approx(probs.log()[tok].tolist(), abs=1e-6)
    assert ent[0].item() == pytest.approx(-(probs[probs > 0] * probs[probs > 0].log()).sum().item())


@pytest.mark.parametrize("compact_at", [0.0, 1.0])
def test_finished_rows_leave_the_batch_and_come_back_in_place(tiny_tok, codec, compact_at):
    # Ten sessions with budgets 1..10: once half have finished they are parked out of the
    # cache, the rest decode alone, and the next turn finds every session's row where it was.
    torch.manual_seed(0)
    cfg = TinyModelConfig(hidden_size=32, layers=2, heads=2, kv_heads=1, intermediate_size=64)
    model = sharpen(tiny_model(len(tiny_tok), tiny_tok.pad_token_id, codec.stop_id, cfg))
    policy = HFPolicy(model, tiny_tok, tiny_tok.pad_token_id, seed=1, compact_at=compact_at)
    prompts = [codec.observation_ids(OBS[i % 3])[: 6 + 3 * i] for i in range(10)]

    def params(n):
        return SamplingParams(max_new_tokens=n, temperature=1.0, stop_token_ids=(codec.stop_id,))

    turn1 = [GenerationRequest(tuple(p), params(i + 1), f"s{i}") for i, p in enumerate(prompts)]
    recorder = BatchRecorder(model)
    gens1 = policy.generate(turn1)
    del model.forward
    assert [len(g.token_ids) for g in gens1] == list(range(1, 11))
    unparked = HFPolicy(model, tiny_tok, tiny_tok.pad_token_id, seed=1, park_min_rows=0)
    same = unparked.generate(turn1)  # each row draws its own uniforms: parking changes nothing
    assert [g.token_ids for g in same] == [g.token_ids for g in gens1]
    assert recorder.rows == [10] * 5 + [5] * 5  # the prefill, then 5 rows left after step 5
    assert_matches_score(policy, prompts, gens1)
    prefixes = [
        [*p, *g.token_ids, *codec.observation_ids("Nothing happens.")]
        for p, g in zip(prompts, gens1, strict=True)
    ]
    order = [3, 9, 0, 6, 1, 8, 2, 7, 5, 4]
    turn2 = [GenerationRequest(tuple(prefixes[i]), params(3), f"s{i}") for i in order]
    recorder = BatchRecorder(model)
    gens2 = policy.generate(turn2)
    del model.forward
    assert recorder.widths[0] == 1 + len(codec.observation_ids("Nothing happens."))  # all reused
    assert_matches_score(policy, [prefixes[i] for i in order], gens2)


@pytest.mark.parametrize("compact_at", [0.0, 1.0])
def test_unknown_session_is_encoded_fresh_beside_cached_ones(tiny_tok, codec, tiny_lm, compact_at):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, 0, compact_at)
    p = SamplingParams(max_new_tokens=4, temperature=1.0, stop_token_ids=(codec.stop_id,))
    prompts = [codec.observation_ids(o) for o in OBS[:2]]
    gens1 = policy.generate(
        [GenerationRequest(tuple(x), p, session=f"a{i}") for i, x in enumerate(prompts)]
    )
    cached = list(prompts[1]) + list(gens1[1].token_ids) + codec.observation_ids("Nothing happens.")
    fresh = codec.observation_ids(OBS[2])
    requests = [
        GenerationRequest(tuple(fresh), p, session="brand-new"),
        GenerationRequest(tuple(cached), p, session="a1"),
        GenerationRequest(tuple(fresh[:10]), p, session=None),
    ]
    cached_suffix = len(cached) - len(policy._rows.tokens[policy._rows.sessions["a1"]])
    recorder = WidthRecorder(tiny_lm)
    gens2 = policy.generate(requests)
    del tiny_lm.forward
    # the two short suffixes first (the cached row's new turn, the 10-token prompt), then the
    # longest fresh prompt alone: never the cached history, never 42 columns for all three
    assert recorder.widths[:2] == [max(10, cached_suffix), len(fresh)]
    assert_matches_score(policy, [r.prefix for r in requests], gens2)
    assert set(policy._rows.sessions) == {"brand-new", "a1"}  # "a0" was not asked for: dropped


@pytest.mark.parametrize("compact_at", [0.0, 1.0])
def test_parent_session_seeds_a_new_branch(tiny_tok, codec, tiny_lm, compact_at):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, 0, compact_at)
    p = SamplingParams(max_new_tokens=3, temperature=1.0, stop_token_ids=(codec.stop_id,))
    prompt = codec.observation_ids(OBS[1])
    (g,) = policy.generate([GenerationRequest(tuple(prompt), p, session="root")])
    branch = [*prompt, *g.token_ids, *codec.observation_ids("Nothing happens.")]
    requests = [
        GenerationRequest(tuple(branch), p, session="root"),
        GenerationRequest(tuple(branch), p, session="child", parent_session="root"),
    ]
    recorder = WidthRecorder(tiny_lm)
    gens = policy.generate(requests)
    del tiny_lm.forward
    assert recorder.widths[0] == len(branch) - (len(prompt) + len(g.token_ids) - 1)
    assert_matches_score(policy, [branch, branch], gens)


@pytest.mark.parametrize("compact_at", [0.0, 1.0])
def test_branch_reuses_the_parent_cache_cropped_to_the_branch_point(
    tiny_tok, codec, tiny_lm, compact_at
):
    # The rollout manager decides to branch after the parent has generated past the tool
    # result: the parent's row holds more than the child shares, and must be cropped.
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, 0, compact_at)
    p = SamplingParams(max_new_tokens=3, temperature=1.0, stop_token_ids=(codec.stop_id,))
    prompt = codec.observation_ids(OBS[1])
    (g1,) = policy.generate([GenerationRequest(tuple(prompt), p, session="root")])
    at_branch = [*prompt, *g1.token_ids, *codec.observation_ids("Nothing happens.")]
    (g2,) = policy.generate([GenerationRequest(tuple(at_branch), p, session="root")])
    obs2 = codec.observation_ids("You arrive at cabinet 1.")
    parent_next = [*at_branch, *g2.token_ids, *obs2]
    requests = [
        GenerationRequest(tuple(parent_next), p, session="root"),
        GenerationRequest(tuple(at_branch), p, session="child", parent_session="root"),
    ]
    recorder = WidthRecorder(tiny_lm)
    gens = policy.generate(requests)
    del tiny_lm.forward
    # The child refeeds one token, then the parent its last sample and the new observation
    # (two groups: one batch would pad the child's one token to the parent's width).
    assert recorder.widths[:2] == [1, 1 + len(obs2)]
    assert [len(t) for t in policy._rows.tokens][1] <= len(at_branch) + 3
    assert_matches_score(policy, [parent_next, at_branch], gens)
    assert policy.vocab_size == tiny_lm.config.vocab_size


def test_greedy_identical_prompts_give_identical_generations(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, seed=0)
    p = SamplingParams(max_new_tokens=6, temperature=0.0, stop_token_ids=(codec.stop_id,))
    prompt = tuple(codec.observation_ids(OBS[1]))
    other = tuple(codec.observation_ids(OBS[2]))  # a longer row, so the twins are left-padded
    a, b, _ = policy.generate(
        [
            GenerationRequest(prompt, p, session="x"),
            GenerationRequest(prompt, p, session="y"),
            GenerationRequest(other, p, session="z"),
        ]
    )
    assert a.token_ids == b.token_ids
    assert a.logprobs == pytest.approx(b.logprobs, abs=1e-6)
    # greedy picks the arg-max: nothing else is more likely at any step
    (alone,) = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id).generate(
        [GenerationRequest(prompt, p)]
    )
    assert alone.token_ids == a.token_ids


def test_generation_stops_at_stop_token(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, seed=0)
    prompt = tuple(codec.observation_ids(OBS[0]))
    (probe,) = policy.generate([GenerationRequest(prompt, SamplingParams(4, 0.0))])
    stop = probe.token_ids[1]  # greedy is deterministic: the 2nd token becomes the stop token
    (g,) = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id).generate(
        [GenerationRequest(prompt, SamplingParams(4, 0.0, (stop,)))]
    )
    assert g.finish_reason == "stop"
    assert g.token_ids == probe.token_ids[: probe.token_ids.index(stop) + 1]


def test_generation_stops_at_the_token_that_completes_a_stop_string(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, seed=0)
    prompt = tuple(codec.observation_ids(OBS[0]))
    (free,) = policy.generate([GenerationRequest(prompt, SamplingParams(12, 1.0))])

    def text(ids) -> str:
        return tiny_tok.decode(list(ids), skip_special_tokens=True)

    # a stop string that the sample completes at some token (it may be completed earlier)
    cut = next(i for i in range(2, 12) if text(free.token_ids[i : i + 1]).strip())
    stop = text(free.token_ids[cut : cut + 1]).strip()
    policy.generator.manual_seed(0)  # the same draws again, up to the stop
    (g,) = policy.generate([GenerationRequest(prompt, SamplingParams(12, 1.0, stop=(stop,)))])
    assert g.finish_reason == "stop"
    assert g.token_ids == free.token_ids[: len(g.token_ids)] and len(g.token_ids) <= cut + 1
    assert stop in text(g.token_ids) and stop not in text(g.token_ids[:-1])


def test_stop_check_skips_the_decode_only_where_no_stop_can_end(tiny_tok, tiny_lm):
    # the shortcut (the latest token's text lacks every stop's last character) never changes
    # the answer of the full check, over random samples of the session tokenizer's vocabulary
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id, seed=0)
    stops = ("</search>", "</answer>", "cabinet 1", "\n", "é.", "ok ")

    def full(ids) -> bool:
        text = tiny_tok.decode(ids, skip_special_tokens=True)
        last = len(tiny_tok.decode(ids[-1:], skip_special_tokens=True))
        return any(s in text[max(0, len(text) - last - len(s) + 1) :] for s in stops)

    rng = random.Random(0)
    vocab = len(tiny_tok)
    for stop in stops:  # sequences that end with each stop string, and random ones
        ids = tiny_tok.encode("You open the " + stop, add_special_tokens=False)
        steps = [(t, 0.0, 0.0) for t in ids]
        assert policy._stops(steps, SamplingParams(stop=stops)) == full(ids) is True
    for _ in range(2000):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 8))]
        steps = [(t, 0.0, 0.0) for t in ids]
        assert policy._stops(steps, SamplingParams(stop=stops)) == full(ids), ids


def test_prefill_splits_rows_in_two_only_where_padding_would_waste_a_quarter():
    # [40, 3, 4, 42]: one batch is 4 x 42 = 168 positions; {3, 4} then {40, 42} is 8 + 84 = 92
    assert _split_by_width([40, 3, 4, 42]) == ([1, 2], [0, 3])
    # [10, 12, 13]: 39 against 2 x 12 + 13 = 37 at best, under a quarter saved: one batch
    assert _split_by_width([10, 12, 13]) == ([], [0, 1, 2])
    assert _split_by_width([7]) == ([], [0])
    # [1, 9]: 18 against 10, 44% saved
    assert _split_by_width([9, 1]) == ([1], [0])


def test_prefix_no_longer_than_fed_tokens_is_rejected_or_reencoded(tiny_tok, codec, tiny_lm):
    policy = HFPolicy(sharpen(tiny_lm), tiny_tok, tiny_tok.pad_token_id, seed=0)
    p = SamplingParams(max_new_tokens=3, temperature=1.0)
    prompt = tuple(codec.observation_ids(OBS[1]))
    policy.generate([GenerationRequest(prompt, p, session="s")])
    # same session, same prefix: not an extension, so it is re-encoded from scratch
    (g,) = policy.generate([GenerationRequest(prompt, p, session="s")])
    assert_matches_score(policy, [prompt], [g])


def test_empty_prefix_is_rejected(tiny_tok, tiny_lm):
    policy = HFPolicy(tiny_lm, tiny_tok, tiny_tok.pad_token_id)
    with pytest.raises(ValueError, match="prefix must be longer"):
        policy.generate([GenerationRequest(())])
    assert policy.generate([]) == []
