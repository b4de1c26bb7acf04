"""Sequence packing: many short sequences in one row, with no attention between them.

A padded micro-batch of trajectories of unequal length spends its compute on pad tokens;
packing concatenates sequences into rows of at most ``length`` tokens (first-fit decreasing)
and restarts the position ids at every sequence start. Given position ids and no attention
mask, transformers builds a block-diagonal causal mask from the restarts (or, for flash and
flex attention, runs each sequence as its own segment), so each token attends to exactly the
tokens of its own sequence and every log-prob equals the padded one.

``unpack`` takes the model's per-position outputs back to the learner's padded
``[sequences, max_len - 1]`` layout, where the losses, masks and aggregations work as before:
packing changes how the model is run, not what is trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PackedBatch:
    """Rows of concatenated sequences and the way back to one row per sequence."""

    ids: torch.Tensor  # [rows, width] token ids, pad-filled after the last sequence of a row
    position_ids: torch.Tensor  # [rows, width] restarting at 0 at every sequence start
    index: torch.Tensor  # [sequences, max_len - 1] flat index into the [rows, width - 1] shifts
    real_tokens: int  # tokens of the sequences (the rest of the rows is padding)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.ids.shape)  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> PackedBatch:
        move = self.ids.to(device), self.position_ids.to(device), self.index.to(device)
        return PackedBatch(*move, self.real_tokens)


def pack_rows(lengths: Sequence[int], length: int) -> list[list[int]]:
    """Sequence indices per row: first-fit decreasing into rows of ``length`` tokens.

    A sequence longer than ``length`` gets a row of its own. Within a row the sequences keep
    the order in which they were placed; rows are ordered by their first placement.
    """
    if length < 1:
        raise ValueError(f"pack length must be at least 1, got {length}")
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        slot = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            free.append(length - lengths[i])
        else:
            rows[slot].append(i)
            free[slot] -= lengths[i]
    return rows


def pack(sequences: Sequence[Sequence[int]], length: int, pad_id: int) -> PackedBatch:
    """Pack token sequences (each at least 2 tokens) into rows of at most ``length`` tokens."""
    lengths = [len(s) for s in sequences]
    if min(lengths, default=2) < 2:
        raise ValueError("every packed sequence needs at least 2 tokens (one prediction)")
    rows = pack_rows(lengths, length)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros_like(ids)
    index = torch.zeros(len(sequences), max(lengths) - 1, dtype=torch.long)
    for r, row in enumerate(rows):
        offset = 0
        for i in row:
            n = lengths[i]
            ids[r, offset : offset + n] = torch.tensor(list(sequences[i]), dtype=torch.long)
            pos[r, offset : offset + n] = torch.arange(n)
            # the prediction of token j + 1 sits at position offset + j of the shifted row
            index[i, : n - 1] = r * (width - 1) + offset + torch.arange(n - 1)
            offset += n
        pos[r, offset:] = torch.arange(width - offset)  # padding: a sequence of its own
    return PackedBatch(ids, pos, index, sum(lengths))


def unpack(values: torch.Tensor, packed: PackedBatch) -> torch.Tensor:
    """Per-position values of the packed rows, ``[rows, width - 1]``, as ``[sequences,
    max_len - 1]``: row i holds sequence i's values, then whatever (mask it)."""
    return values.reshape(-1)[packed.index]


SPARSE_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")
# transformers runs flash attention's variable-length kernel from restarting position ids only
# on a batch of one row; on more rows each row would run as one causal sequence
ONE_ROW = ("flash_attention_2", "flash_attention_3")


def row_length(lengths: Sequence[int], length: int, attention: str) -> int:
    """The row length to pack ``lengths`` into: ``length``, or one row of them all for the
    kernels in ``ONE_ROW``."""
    return sum(lengths) if attention in ONE_ROW else length


def packing_pays(lengths: Sequence[int], length: int, hidden: int, attention: str) -> bool:
    """Whether packing ``lengths`` into rows of ``length`` costs less than padding them.

    Kernels that run each packed sequence on its own (flash, flex) only gain from packing.
    SDPA and eager attention compute a packed row's whole masked square, so packing trades
    pad tokens for attention: with a row costing about ``width * (3 * hidden + width)``
    (projections and MLP against attention), sequences of similar lengths are cheaper padded
    (16 of 256 tokens: 0.73x the tokens/s packed into rows of 1,024) and sequences of mixed
    lengths cheaper packed (64 of 100 to 1,000 tokens: 1.9x).
    """
    if attention in SPARSE_ATTENTION:
        return True
    rows = pack_rows(lengths, length)
    widths = [sum(lengths[i] for i in row) for row in rows]
    packed = len(rows) * max(widths) * (3 * hidden + max(widths))
    padded = len(lengths) * max(lengths) * (3 * hidden + max(lengths))
    return packed < padded


def packing_exact(model, pad_id: int, attention: str = "sdpa") -> bool:
    """Whether ``model`` scores packed sequences exactly as it scores them apart.

    Three sequences go into rows of 11 tokens: two share the first row, the third has the
    second row to itself (one row for the ``ONE_ROW`` kernels, as the learner packs them).
    Models whose transformers code builds its attention mask without reading sequence starts
    from the position ids, or reads them only in a one-row batch, would let packed sequences
    attend to each other; the learner checks once per model and pads instead where this is
    False.
    """
    from branchgym.agents.logprobs import packed_logprobs, pad_batch, sequence_logprobs

    vocab = model.get_input_embeddings().num_embeddings
    seqs = [[(k * i + k - 4) % vocab for i in range(n)] for k, n in ((7, 5), (11, 6), (13, 4))]
    device = next(model.parameters()).device
    packed_batch = pack(seqs, row_length([5, 6, 4], 11, attention), pad_id)
    with torch.no_grad():
        ids, mask = pad_batch(seqs, pad_id)
        logp, _ = sequence_logprobs(model, ids.to(device), mask.to(device))
        plogp, _ = packed_logprobs(model, packed_batch.to(device))
    apart = torch.cat([logp[i, : len(s) - 1] for i, s in enumerate(seqs)]).float()
    packed = torch.cat([plogp[i, : len(s) - 1] for i, s in enumerate(seqs)]).float()
    atol = 1e-4 if next(model.parameters()).dtype == torch.float32 else 5e-2  # bf16: coarse
    return bool(torch.allclose(apart, packed, atol=atol, rtol=0))
