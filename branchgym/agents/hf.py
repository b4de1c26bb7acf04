"""Hugging Face transformers backend: batched sampling with KV-cache reuse across turns.

Multi-turn rollouts call ``generate`` once per turn for every open path. Re-encoding each path's
whole history every turn would cost about three times the compute, so ``HFPolicy`` keeps one
batched KV cache between calls: a request whose ``session`` (or ``parent_session``, for a new
branch) names a cached row whose tokens are a prefix of the request's prefix only feeds the new
suffix. Rows of different lengths share one cache through masked holes and explicit position
ids, so each path sees exactly the attention pattern of its own contiguous sequence. Holes pile
up over a rollout (shorter prompts, rows that stopped early, branches cropped to their branch
point, fresh rows beside long histories), so when a call starts with more than ``compact_at``
of the cache's width unused by its longest row, every row's tokens are gathered to the front
and the unused columns dropped: attention then costs what the real tokens need. Within a call,
once half of a batch (of at least ``park_min_rows``) has stopped, the stopped rows are parked
outside the cache and the rest decode alone; they rejoin, in place, when the call ends.

``score`` and the learner compute log-probs with ``logprobs.sequence_logprobs``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicCache, DynamicLayer

from branchgym.agents.attention import gqa_attention
from branchgym.agents.logprobs import pad_batch, sequence_logprobs
from branchgym.agents.lora import decoder
from branchgym.agents.policy import Generation, GenerationRequest
from branchgym.agents.protocol import TokenizerLike


@dataclass
class _Rows:
    """The cache's bookkeeping: per row, the tokens fed so far and its attention mask."""

    tokens: list[list[int]]
    mask: torch.Tensor  # [B, cache_len] long, 1 where a real token sits
    sessions: dict[str, int]


@dataclass
class _Parked:
    """Rows that finished mid-call: their request indices, per-layer (keys, values), mask."""

    rows: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor


PARK_MIN_ROWS = 8  # smaller batches decode to the end: moving rows would cost more than it saves


class HFPolicy:
    """A ``Policy`` over any causal LM from transformers."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: TokenizerLike,
        pad_id: int,
        seed: int = 0,
        compact_at: float = 0.125,
        park_min_rows: int = PARK_MIN_ROWS,
    ) -> None:
        self.model = model
        self.compact_at = compact_at  # the unused share of the cache's width that compacts it
        self.park_min_rows = park_min_rows  # 0: rows never leave the batch (to stop, to prefill)
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.generator = torch.Generator().manual_seed(seed)
        self._cache: DynamicCache | None = None
        self._pieces: dict[int, str] = {}
        self._rows = _Rows([], torch.zeros(0, 0, dtype=torch.long), {})

    def reset_cache(self) -> None:
        """Forget every cached row (call after the weights change)."""
        self._cache = None
        self._rows = _Rows([], torch.zeros(0, 0, dtype=torch.long), {})

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        was_training = self.model.training
        self.model.eval()
        try:
            with gqa_attention(self.model):
                logits = self._prefill(requests)
                return self._decode(logits, requests)
        finally:
            self.model.train(was_training)

    def score(self, sequences: Sequence[Sequence[int]]) -> list[tuple[list[float], list[float]]]:
        """Log-probs and entropies of every token after the first, under current weights."""
        ids, mask = pad_batch(sequences, self.pad_id)
        with torch.no_grad():
            logp, ent = sequence_logprobs(self.model, ids, mask)
        return [
            (logp[i, : len(s) - 1].tolist(), ent[i, : len(s) - 1].tolist())
            for i, s in enumerate(sequences)
        ]

    # -- cache reuse -------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """|V|, which the branching rules use to make entropy rises scale-free."""
        return int(self.model.config.vocab_size)

    def _source_rows(self, requests: Sequence[GenerationRequest]) -> list[tuple[int, int] | None]:
        """For each request, the cached row it reuses and how many of its tokens, or None.

        A path's own session reuses its whole row. A new branch reuses its parent's row up to
        the tokens they share (the parent has generated past the branch point since).
        """
        rows = self._rows
        found: list[tuple[int, int] | None] = []
        for req in requests:
            own = rows.sessions.get(req.session) if req.session is not None else None
            parent = rows.sessions.get(req.parent_session) if req.parent_session else None
            if own is not None and _extends(req.prefix, rows.tokens[own]):
                found.append((own, len(rows.tokens[own])))
            elif parent is not None and (keep := _shared(req.prefix, rows.tokens[parent])):
                found.append((parent, keep))
            else:
                found.append(None)
        return found

    def _select(self, requests: Sequence[GenerationRequest]) -> None:
        sources = self._source_rows(requests)
        if self._cache is None or all(s is None for s in sources):
            self._cache = DynamicCache(config=self.model.config)
            tokens: list[list[int]] = [[] for _ in requests]
            mask = torch.zeros(len(requests), 0, dtype=torch.long)
        else:
            index = torch.tensor([0 if s is None else s[0] for s in sources])
            self._cache.batch_select_indices(index)
            mask = self._rows.mask[index].clone()
            tokens = []
            for i, s in enumerate(sources):
                if s is None:
                    tokens.append([])
                    mask[i] = 0
                else:
                    tokens.append(self._rows.tokens[s[0]][: s[1]])
                    if s[1] < len(self._rows.tokens[s[0]]):  # a branch: only part is shared
                        _crop(mask[i], s[1])
            mask = self._compact(mask)
        sessions = {r.session: i for i, r in enumerate(requests) if r.session is not None}
        self._rows = _Rows(tokens, mask, sessions)

    def _plain(self) -> bool:
        """Whether every cache layer is a plain full-attention one, whose columns can move."""
        assert self._cache is not None
        return all(type(x) is DynamicLayer for x in self._cache.layers)

    def _compact(self, mask: torch.Tensor) -> torch.Tensor:
        """Gather each row's cached tokens to the front and drop the columns no row uses.

        Keys are stored with their rotary positions applied, and a new token attends to every
        unmasked cached column, so moving a row's columns changes nothing it computes. Only
        plain (full-attention) cache layers are moved; any other layer type is left as it is.
        """
        assert self._cache is not None
        width, used = mask.shape[1], int(mask.sum(1).max())
        if width - used <= self.compact_at * width or not self._plain():
            return mask
        # real columns first, each row keeping its order: sort by (hole, column)
        order = ((1 - mask) * width + torch.arange(width)).argsort(dim=1)[:, :used]
        for layer in self._cache.layers:
            if layer.get_seq_length() > 0:
                idx = order[:, None, :, None].expand(
                    -1, layer.keys.shape[1], -1, layer.keys.shape[3]
                )
                layer.keys = layer.keys.gather(2, idx.to(layer.keys.device))
                layer.values = layer.values.gather(2, idx.to(layer.values.device))
        return mask.gather(1, order)

    def _prefill(self, requests: Sequence[GenerationRequest]) -> torch.Tensor:
        """Feed every request's new suffix; the last position's logits, one row per request.

        Suffixes are right-aligned to the longest one. Where a few long suffixes (fresh prompts,
        long observations) would pad many short ones, the short rows go first on their own
        and the long ones follow, each group as wide as its longest suffix."""
        self._select(requests)
        suffixes = [
            list(r.prefix[len(t) :]) for r, t in zip(requests, self._rows.tokens, strict=True)
        ]
        if any(not s for s in suffixes):
            raise ValueError("a request's prefix must be longer than what its session already fed")
        short, long = _split_by_width([len(s) for s in suffixes])
        if not (short and self.park_min_rows and self._plain() and self._cache.get_seq_length()):
            return self._forward(*self._chunk(suffixes, list(range(len(suffixes)))))
        parked_long = self._park(list(range(len(suffixes))), short)
        logits = torch.empty(len(suffixes), self.vocab_size)
        logits[short] = self._forward(*self._chunk(suffixes, short))
        parked_short = self._swap(short, parked_long)
        logits[long] = self._forward(*self._chunk(suffixes, long))
        self._unpark(long, [parked_short])  # the short rows are the narrower: padded to fit
        return logits

    def _chunk(self, suffixes: list[list[int]], rows: list[int]):
        """Input ids, chunk mask and positions for ``rows`` (in cache order), right-aligned."""
        width = max(len(suffixes[i]) for i in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        chunk_mask = torch.zeros_like(ids)
        pos = torch.zeros_like(ids)
        for j, i in enumerate(rows):
            suffix, done = suffixes[i], self._rows.tokens[i]
            n = len(suffix)
            ids[j, width - n :] = torch.tensor(suffix)
            chunk_mask[j, width - n :] = 1
            pos[j, width - n :] = torch.arange(len(done), len(done) + n)
            done.extend(suffix)
        return ids, chunk_mask, pos

    def _forward(self, ids: torch.Tensor, chunk_mask: torch.Tensor, pos: torch.Tensor):
        self._rows.mask = torch.cat([self._rows.mask, chunk_mask], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self._rows.mask,
            position_ids=pos,
            past_key_values=self._cache,
            use_cache=True,
            **self._last_logits_only,
        )
        return out.logits[:, -1].float()

    @property
    def _last_logits_only(self) -> dict[str, int]:
        """``logits_to_keep=1`` where the model takes it: a prefill then skips the output head
        at every position but the last (the head is the largest matmul of a small model)."""
        return {"logits_to_keep": 1} if _keeps_logits(type(decoder(self.model))) else {}

    # -- sampling ----------------------------------------------------------------------------

    def _decode(self, logits: torch.Tensor, requests: Sequence[GenerationRequest]):
        """Sample every row to its stop; rows that finished leave the batch (``_park``) once
        they are half of it, so the long tail of a call decodes only the rows still going."""
        n = len(requests)
        temps = torch.tensor([r.params.temperature for r in requests])
        limits = [r.params.max_new_tokens for r in requests]
        out: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        live = list(range(n))  # the requests whose rows are in the cache, in its row order
        parked: list[_Parked] = []
        while True:
            draws = torch.rand(n, generator=self.generator)  # one per request, parked or not
            tok, logp, ent = self._sample(logits, temps[live], draws[live])
            for j, i in enumerate(live):
                if finish[i] is None:
                    out[i].append((int(tok[j]), float(logp[j]), float(ent[j])))
                    if self._stops(out[i], requests[i].params):
                        finish[i] = "stop"
                    elif len(out[i]) >= limits[i]:
                        finish[i] = "length"
            if all(f is not None for f in finish):
                break
            going = [j for j, i in enumerate(live) if finish[i] is None]
            if self._parks(len(live), len(going)):
                parked.append(self._park(live, going))
                live, tok = [live[j] for j in going], tok[going]
            logits = self._feed_next(tok, live, [finish[i] is None for i in live])
        self._unpark(live, parked)
        return [self._generation(o, f) for o, f in zip(out, finish, strict=True)]

    def _parks(self, rows: int, going: int) -> bool:
        """Whether to park the stopped rows: half or more of a large enough batch."""
        return 0 < self.park_min_rows <= rows and 2 * going <= rows and self._plain()

    def _park(self, live: list[int], going: list[int]) -> _Parked:
        """Take the rows not in ``going`` out of the cache, keeping their keys and values."""
        assert self._cache is not None
        keep = set(going)
        done = [j for j in range(len(live)) if j not in keep]
        kv = [(x.keys[done], x.values[done]) for x in self._cache.layers]
        parked = _Parked([live[j] for j in done], kv, self._rows.mask[done])
        self._cache.batch_select_indices(torch.tensor(going))
        self._rows.mask = self._rows.mask[going]
        return parked

    def _swap(self, live: list[int], parked: _Parked) -> _Parked:
        """Park every row in the cache (``live``) and put ``parked``'s rows in their place."""
        assert self._cache is not None
        out = _Parked(live, [(x.keys, x.values) for x in self._cache.layers], self._rows.mask)
        for layer, (keys, values) in zip(self._cache.layers, parked.kv, strict=True):
            layer.keys, layer.values = keys, values
        self._rows.mask = parked.mask
        return out

    def _unpark(self, live: list[int], parked: list[_Parked]) -> None:
        """Put parked rows back, padded with masked columns, every row at its request's index."""
        if not parked:
            return
        assert self._cache is not None
        width = self._rows.mask.shape[1]
        order = live + [i for p in parked for i in p.rows]
        back = torch.empty(len(order), dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(len(order))
        masks = [self._rows.mask] + [_pad_columns(p.mask, width, 1) for p in parked]
        self._rows.mask = torch.cat(masks)[back]
        for n, layer in enumerate(self._cache.layers):
            keys = [_pad_columns(p.kv[n][0], width, 2) for p in parked]
            values = [_pad_columns(p.kv[n][1], width, 2) for p in parked]
            layer.keys = torch.cat([layer.keys, *keys])[back]
            layer.values = torch.cat([layer.values, *values])[back]

    def _stops(self, steps: list[tuple[int, float, float]], params) -> bool:
        """Whether the latest token is a stop token or completes a stop string."""
        if steps[-1][0] in params.stop_token_ids:
            return True
        if not params.stop:
            return False
        piece = self._piece(steps[-1][0])
        if not _may_end_in(piece, params.stop):
            return False  # the full decode below would run for every row at every step
        text = self.tokenizer.decode([s[0] for s in steps], skip_special_tokens=True)
        # only a match that ends inside the latest token's text: earlier ones would have stopped
        last = len(piece)
        return any(stop in text[max(0, len(text) - last - len(stop) + 1) :] for stop in params.stop)

    def _piece(self, token: int) -> str:
        """One token's text, decoded once per policy."""
        if token not in self._pieces:
            self._pieces[token] = self.tokenizer.decode([token], skip_special_tokens=True)
        return self._pieces[token]

    def _sample(self, logits: torch.Tensor, temps: torch.Tensor, draws: torch.Tensor):
        """Each row's token by inverting its CDF at its own uniform draw: what a request
        samples never depends on which other rows share the batch (parked or not)."""
        greedy = temps <= 0
        scaled = logits / torch.where(greedy, torch.ones_like(temps), temps).unsqueeze(-1)
        logp_all = torch.log_softmax(scaled, dim=-1)
        probs = logp_all.exp()
        cdf = probs.cumsum(-1)
        at = (draws * cdf[:, -1]).unsqueeze(-1)  # scaled: the sum may round below 1
        sampled = torch.searchsorted(cdf, at, right=True).squeeze(-1).clamp_max(cdf.shape[1] - 1)
        tok = torch.where(greedy, logits.argmax(-1), sampled)
        logp = logp_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1)
        ent = torch.special.entr(probs).sum(-1)  # 0 log 0 = 0: a masked (-inf) logit adds nothing
        return tok, logp, ent

    def _feed_next(self, tok: torch.Tensor, live: list[int], active: list[bool]) -> torch.Tensor:
        act = torch.tensor(active, dtype=torch.long)
        ids = torch.where(act.bool(), tok, torch.full_like(tok, self.pad_id)).unsqueeze(-1)
        pos = torch.tensor([len(self._rows.tokens[i]) for i in live]).unsqueeze(-1)
        for j, i in enumerate(live):
            if active[j]:
                self._rows.tokens[i].append(int(tok[j]))
        return self._forward(ids, act.unsqueeze(-1), pos)

    def _generation(self, steps: list[tuple[int, float, float]], finish) -> Generation:
        ids = tuple(s[0] for s in steps)
        return Generation(
            token_ids=ids,
            text=self.tokenizer.decode(list(ids), skip_special_tokens=True),
            logprobs=tuple(s[1] for s in steps),
            entropies=tuple(s[2] for s in steps),
            finish_reason=finish,
        )


@functools.cache
def _keeps_logits(model_class: type) -> bool:
    """Whether the model's ``forward`` takes ``logits_to_keep``: read once per class, since
    ``inspect.signature`` costs about 20 us, a few percent of a small model's decode pass."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _extends(prefix: Sequence[int], fed: list[int]) -> bool:
    return 0 < len(fed) < len(prefix) and list(prefix[: len(fed)]) == fed


def _shared(prefix: Sequence[int], fed: list[int]) -> int:
    """How many leading cached tokens a prefix can reuse: at least one token must be fed."""
    n = 0
    for a, b in zip(prefix, fed, strict=False):
        if a != b:
            break
        n += 1
    return min(n, len(prefix) - 1)


def _split_by_width(widths: list[int]) -> tuple[list[int], list[int]]:
    """Rows to prefill first (the short suffixes) and then (the long ones), or ``([], all)``
    when one batch pads less than a quarter more than the best split into two."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    ranked = [widths[i] for i in order]
    one = len(ranked) * ranked[-1]
    cost, k = min(
        ((k * ranked[k - 1] + (len(ranked) - k) * ranked[-1], k) for k in range(1, len(ranked))),
        default=(one, 0),
    )
    return (order[:k], order[k:]) if 4 * (one - cost) > one else ([], order)


def _may_end_in(piece: str, stops: Sequence[str]) -> bool:
    """Whether a stop string could end inside ``piece``: its last character is there. A piece
    that is part of a multi-byte character, or a stop string ending in whitespace (which a
    lone token's decoding may strip), always counts as a maybe."""
    if "\ufffd" in piece:
        return True
    return any(not s or s[-1].isspace() or s[-1] in piece for s in stops)


def _pad_columns(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``t`` widened to ``width`` along ``dim`` with zeros (masked cache columns)."""
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


def _crop(mask_row: torch.Tensor, keep: int) -> None:
    """Hide every cached position of a row after its first ``keep`` real tokens (in place).

    The keys and values stay in the cache but are masked out, and later tokens get positions
    from ``keep`` on, so the row attends exactly like a fresh sequence of ``keep`` tokens.
    """
    real = mask_row.nonzero().squeeze(-1)
    mask_row[real[keep:]] = 0
