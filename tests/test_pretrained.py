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


def test_a_chat_model_rolls_out_in_its_own_chat_template(tmp_path):
    from branchgym.collect import CollectConfig, collect
    from branchgym.rollouts.store import TrajectoryStore
    from tests.test_protocol import CHATML

    tok = foreign_tokenizer()
    specials = ["<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens({"additional_special_tokens": specials, "pad_token": "<|pad|>"})
    tok.chat_template = CHATML
    model = tiny_model(len(tok), tok.pad_token_id, tok.convert_tokens_to_ids("<|im_end|>"), TINY)
    folder = tmp_path / "chat"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    _, ltok = load_pretrained(str(folder), chat_template=True)
    assert len(ltok) == len(tok)  # nothing added: the template's own tokens are the protocol

    db = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = CollectConfig(model_path=str(folder), chat_template=True, n=2, tasks=1, db=db)
    assert collect(cfg)["trees"] == 1
    with TrajectoryStore(db) as store:
        (run,) = store.list_runs()
        group = store.load_group(store.groups(run.id)[0])
    prompt = ltok.decode(list(group.segments[0].token_ids))
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|im_start|>user\n" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_chat_template_without_a_model_is_refused(tmp_path):
    from typer.testing import CliRunner

    from branchgym.cli import app

    result = CliRunner().invoke(app, ["train", "--preset", "smoke", "--chat-template"])
    assert result.exit_code == 2 and "needs --model" in result.output


def test_a_hub_id_loads_from_the_hugging_face_cache(tiny_tok, tiny_lm, tmp_path):
    """``--model ORG/NAME`` goes through the hub's cache like any Hugging Face id. No hub can be
    reached here, so the test lays a snapshot out as the hub's download would, and loads it by
    id with ``HF_HUB_OFFLINE=1`` in a fresh process (the cache path is read at import)."""
    import os
    import subprocess
    import sys

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-agent"
    tiny_lm.save_pretrained(repo / "snapshots" / revision)
    tiny_tok.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    code = (
        "from branchgym.agents.model import load_pretrained\n"
        "model, tok = load_pretrained('acme/tiny-agent')\n"
        "print(model.get_input_embeddings().num_embeddings, len(tok))\n"
    )
    env = os.environ | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(len(tiny_tok))] * 2
