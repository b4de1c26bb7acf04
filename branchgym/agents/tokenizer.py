"""A small tokenizer trained on the environments' own text.

Byte-level BPE: every string encodes (any byte has a token), while the words the environments
use become single tokens once the vocabulary is large enough to hold them, so episodes stay
short. The result is a ``PreTrainedTokenizerFast`` that saves and loads like any Hugging Face
tokenizer and carries the turn protocol's special tokens and chat template.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from branchgym.agents.protocol import TurnFormat

PAD = "<|pad|>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, fmt: TurnFormat | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``, with ``fmt``'s special tokens."""
    fmt = fmt or TurnFormat()
    specials = [PAD, fmt.obs_open, fmt.act_open, fmt.act_close]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=fmt.act_close,
        additional_special_tokens=[fmt.obs_open, fmt.act_open],
    )
    tok.chat_template = fmt.chat_template()
    return tok
