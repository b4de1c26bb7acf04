"""Any Hugging Face model folder can replace the embedded model (``--model``)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from branchgym.agents.hf import HFPolicy
from branchgym.agents.model import ModelLoadError, TinyModelConfig, load_pretrained, tiny_model
from branchgym.agents.policy import GenerationRequest, SamplingParams
from branchgym.agents.protocol import TurnCodec

TINY = TinyModelConfig(hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64)


def foreign_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE that knows nothing of branchgym: no turn tokens, no pad token."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    core.train_from_iterator(["go to cabinet 1", "You arrive at cabinet 1."] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core)


def test_a_foreign_model_gets_the_turn_tokens_and_generates(tmp_path):
    tok = foreign_tokenizer()
    assert "<|end|>" not in tok.get_vocab() and tok.pad_token is None
    model = tiny_model(len(tok), 0, 0, TINY)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    loaded, ltok = load_pretrained(str(tmp_path))
    for special in ("<|obs|>", "<|act|>", "<|end|>", "<|pad|>"):
        assert len(ltok.encode(special, add_special_tokens=False)) == 1, special
    assert ltok.pad_token == "<|pad|>"
    assert loaded.get_input_embeddings().num_embeddings >= len(ltok) == len(tok) + 4
    assert loaded.config.pad_token_id == ltok.pad_token_id

    codec = TurnCodec(ltok)
    policy = HFPolicy(loaded, ltok, ltok.pad_token_id, seed=0)
    params = SamplingParams(max_new_tokens=4, stop_token_ids=(codec.stop_id,))
    (gen,) = policy.generate([GenerationRequest(tuple(codec.observation_ids("hi")), params)])
    assert 1 <= len(gen.token_ids) == len(gen.logprobs) == len(gen.entropies) <= 4


def test_a_branchgym_policy_folder_loads_unchanged(tiny_tok, tiny_lm, tmp_path):
    tiny_lm.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    loaded, ltok = load_pretrained(str(tmp_path))
    assert len(ltok) == len(tiny_tok)
    assert loaded.get_input_embeddings().num_embeddings == len(tiny_tok)


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load a causal LM from"):
        load_pretrained(str(tmp_path / "nothing-here"))
