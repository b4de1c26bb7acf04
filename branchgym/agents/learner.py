"""The learner: token batches from trajectory records, the loss, and the optimiser step.

It takes ``TokenSample``s (built from stored groups by ``samples_from_groups``, or from expert
demonstrations for the cold start), pads them into micro-batches (or, with ``pack_length``,
packs them into rows of that many tokens: see ``packing``), accumulates gradients over a
minibatch and steps AdamW. Env tokens carry no loss: the mask comes from each segment's kind.
The losses themselves live in ``losses.py`` as pure functions.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from transformers import PreTrainedModel

from branchgym.agents.attribution import segment_advantages, segment_owners
from branchgym.agents.logprobs import (
    HEAD_CHUNK,
    chunk_stats,
    packed_logprobs,
    pad_batch,
    sequence_logprobs,
)
from branchgym.agents.lora import decoder
from branchgym.agents.losses import (
    Aggregation,
    UpperClip,
    aggregate,
    clip_cov_mask,
    entropy_aware_advantages,
    kl_cov_mask,
    low_var_kl,
    ppo_clip_loss,
    token_covariance,
)
from branchgym.agents.packing import pack, packing_exact, packing_pays, row_length
from branchgym.trajectory import Group, SegmentKind, flatten

Attribution = Literal["soft", "hard"]
CovPenalty = Literal["none", "clip_cov", "kl_cov"]


@dataclass(frozen=True)
class TokenSample:
    """One sequence to train on: tokens, the log-probs they were sampled with, loss mask."""

    ids: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    mask: tuple[bool, ...]
    advantage: float = 0.0
    token_advantages: tuple[float, ...] | None = None  # per token; overrides ``advantage``


@dataclass(frozen=True)
class LearnerConfig:
    """Optimiser and PPO settings of the learner."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    minibatch_size: int = 64  # sequences per optimiser step
    micro_batch_size: int = 32  # sequences per forward pass (gradient accumulation)
    pack_length: int = 1024  # a forward pass packs its sequences into rows of this many tokens
    # where that costs less than padding (packing.packing_pays); 0: always pads. Models that
    # cannot run packed are padded, with a warning
    compile: bool = False  # torch.compile the decoder and the output head's statistics (GPU)
    head_chunk: int = HEAD_CHUNK  # positions per slice of full-vocabulary logits
    ppo_epochs: int = 1
    eps_low: float = 0.2
    eps_high: float = 0.28  # clip-higher, as ARPO / AEPO / DAPO use
    aggregation: Aggregation = "token-mean"
    max_grad_norm: float = 1.0
    upper_clip: UpperClip = "hard"  # "entropy_balanced": AEPO's clipping
    entropy_advantage: float = 0.0  # AEPO's a in A * (1 + a z(H)); 0 turns it off (AEPO: 0.2)
    dual_clip: float = 0.0  # ARPO's dual-clip constant c (> 1; ARPO uses 3); 0 turns it off
    kl_coef: float = 0.0  # KL to the policy as RL began (low-variance k3); 0: no reference model
    cov_penalty: CovPenalty = "none"  # SPEAR's entropy control: Clip-Cov or KL-Cov tokens
    clip_cov_ratio: float = 2e-4
    clip_cov_bounds: tuple[float, float] = (1.0, 5.0)
    replay_clip_cov_ratio: float = 0.02  # SPEAR's replay steps (``rl_step(replay=True)``)
    replay_clip_cov_bounds: tuple[float, float] = (1.0, 40.0)
    kl_cov_ratio: float = 2e-3
    kl_cov_beta: float = 1.0


def samples_from_groups(
    groups: Sequence[Group], attribution: Attribution = "soft"
) -> list[TokenSample]:
    """Every trajectory of every group as one sample.

    ``soft``: the trajectory's advantage on each of its model tokens (a shared prefix is
    trained once per path). ``hard``: each model segment is trained once, on the first path
    through it, with the mean advantage of all paths through it (see ``attribution``).
    Paths whose environment or tool failed are left out (``EndReason.failed``).
    """
    out = []
    for group in groups:
        healthy = tuple(t for t in group.trajectories if not t.end_reason.failed)
        group = replace(group, trajectories=healthy)
        if attribution == "hard":
            out += _hard_samples(group)
            continue
        for traj in group.trajectories:
            ids, logps, mask = flatten(group, traj)
            out.append(TokenSample(tuple(ids), tuple(logps), tuple(mask), traj.advantage))
    return out


def _hard_samples(group: Group) -> list[TokenSample]:
    advantages, owners = segment_advantages(group), segment_owners(group)
    out = []
    for i, traj in enumerate(group.trajectories):
        ids, logps, mask, advs = [], [], [], []
        for seg in group.path(traj):
            n = len(seg.token_ids)
            trained = seg.kind is SegmentKind.MODEL and owners[seg.id] == i
            ids += seg.token_ids
            logps += seg.logprobs if seg.kind is SegmentKind.MODEL else [0.0] * n
            mask += [trained] * n
            advs += [advantages.get(seg.id, 0.0)] * n
        out.append(TokenSample(tuple(ids), tuple(logps), tuple(mask), 0.0, tuple(advs)))
    return out


class Learner:
    """Owns the optimiser; ``rl_step`` and ``sft_step`` each run one update phase."""

    def __init__(
        self, model: PreTrainedModel, pad_id: int, cfg: LearnerConfig, temperature: float = 1.0
    ) -> None:
        """``temperature`` is the rollouts' sampling temperature; RL scores tokens under it
        (SFT always trains the untempered distribution)."""
        if temperature <= 0:
            raise ValueError(f"RL needs a sampling temperature > 0, got {temperature}")
        self.model = model
        self.temperature = temperature
        self.pad_id = pad_id
        self.cfg = cfg
        trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA: adapters only
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.version = 0
        self._reference = None  # built on first use: never when kl_coef is 0
        self._cov_generator = torch.Generator().manual_seed(0)  # Clip-Cov's random tokens
        self._packing: bool | None = None  # whether to pack: checked on first use
        self._stats = None  # the head's log-prob and entropy function; compiled with cfg.compile
        if cfg.compile:
            decoder(model).base_model.compile()
            self._stats = torch.compile(chunk_stats)

    def state_dict(self) -> dict:
        """The optimiser's state and the policy version (the weights are saved with the model)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "version": self.version,
            "cov_rng": self._cov_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = state["version"]
        self._cov_generator.set_state(state["cov_rng"])

    def set_reference(self, model: PreTrainedModel) -> None:
        """The frozen model of the KL term (by default: a copy of the policy at first use)."""
        self._reference = model.eval().requires_grad_(False)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def reset_optimizer(self, lr: float) -> None:
        """Forget AdamW's moments and step counts, and set ``lr``: RL starts from its own
        optimiser state, so SFT's leftover momentum cannot keep moving the weights."""
        self.optimizer.state.clear()
        self.set_lr(lr)

    def rl_step(
        self, samples: Sequence[TokenSample], rng: random.Random, replay: bool = False
    ) -> dict[str, float]:
        """PPO-clip epochs over ``samples``; returns averaged metrics. Bumps the version.

        ``replay``: the samples are SPEAR's replayed trajectories, whose Clip-Cov selection
        uses ``replay_clip_cov_ratio`` and ``replay_clip_cov_bounds`` (SPEAR: 0.02, (1, 40))."""
        cfg = self.cfg
        clip_cov = (cfg.clip_cov_ratio, *cfg.clip_cov_bounds)
        if replay:
            clip_cov = (cfg.replay_clip_cov_ratio, *cfg.replay_clip_cov_bounds)
        metrics: list[dict[str, float]] = []
        for _ in range(cfg.ppo_epochs):
            order = list(samples)
            rng.shuffle(order)
            for start in range(0, len(order), cfg.minibatch_size):
                batch = order[start : start + cfg.minibatch_size]
                metrics.append(self._minibatch(batch, clip_cov))
        self.version += 1
        return _mean(metrics)

    def sft_step(self, samples: Sequence[TokenSample]) -> float:
        """One optimiser step of next-token cross-entropy on the masked tokens."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(sum(s.mask[1:]) for s in samples)
        loss_sum = 0.0
        for micro in _chunks(samples, self.cfg.micro_batch_size):
            t = self._tensors(micro)
            logp, _ = self._logprobs(self.model, t, 1.0)
            loss = -(logp * t["mask"]).sum() / max(total, 1)
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        return loss_sum

    def _minibatch(
        self, batch: Sequence[TokenSample], clip_cov: tuple[float, float, float] | None = None
    ) -> dict[str, float]:
        """One optimiser step over ``batch``, in micro-batches whose gradients add up to the
        gradient of the whole minibatch taken at once, whatever the aggregation mode.
        ``clip_cov``: Clip-Cov's ratio, lower and upper bound (default: the config's)."""
        clip_cov = clip_cov or (self.cfg.clip_cov_ratio, *self.cfg.clip_cov_bounds)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        micros = [self._tensors(m) for m in _chunks(batch, self.cfg.micro_batch_size)]
        weights = micro_weights([t["mask"] for t in micros], self.cfg.aggregation)
        kl_weights = micro_weights([t["mask"] for t in micros], "token-mean")
        shaped = self._preshaped(micros, clip_cov)
        stats: list[dict[str, float]] = []
        for i, t in enumerate(micros):
            logp, ent = self._logprobs(self.model, t, self.temperature)
            adv, masks = shaped[i] if shaped else self._shape([t], [(logp, ent)], clip_cov)[0]
            loss, m = ppo_clip_loss(
                logp,
                t["old"],
                adv,
                t["mask"],
                eps_low=self.cfg.eps_low,
                eps_high=self.cfg.eps_high,
                dual_clip=self.cfg.dual_clip or None,
                aggregation=self.cfg.aggregation,
                upper_clip=self.cfg.upper_clip,
                **masks,
            )
            m["loss"] = float(loss.detach())
            total = loss * weights[i]
            if self.cfg.kl_coef:
                kl = aggregate(
                    low_var_kl(logp, self._reference_logp(t)), t["mask"].bool(), "token-mean"
                )
                total = total + self.cfg.kl_coef * kl * kl_weights[i]
                m["kl_ref"] = float(kl.detach())
                m["loss"] += self.cfg.kl_coef * m["kl_ref"]
            total.backward()
            n_tok = float(t["mask"].sum())
            m["entropy"] = float((ent.detach() * t["mask"]).sum() / max(n_tok, 1.0))
            stats.append(m)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        out = _mean(stats)
        out["grad_norm"] = float(norm)
        return out

    def _preshaped(self, micros: list[dict], clip_cov) -> list[tuple[torch.Tensor, dict]] | None:
        """With more than one micro-batch, AEPO's entropy z-scores and the Clip-Cov / KL-Cov
        token choices need the whole minibatch's tokens before any backward pass: a forward
        pass without gradients gives them (one extra forward, only when those are on)."""
        if len(micros) == 1 or not self._shapes():
            return None
        with torch.no_grad():
            outs = [self._logprobs(self.model, t, self.temperature) for t in micros]
        return self._shape(micros, outs, clip_cov)

    def _shapes(self) -> bool:
        return bool(self.cfg.entropy_advantage) or self.cfg.cov_penalty != "none"

    def _shape(self, micros: list[dict], outs: list, clip_cov) -> list[tuple[torch.Tensor, dict]]:
        """Per micro-batch: the advantages after AEPO's entropy term and the covariance
        penalty's token mask, with statistics over the valid tokens of all ``micros``."""
        if not self._shapes():
            return [(t["adv"], {}) for t in micros]
        shapes = [t["mask"].shape for t in micros]
        mask = torch.cat([t["mask"].flatten() for t in micros])
        adv = torch.cat([t["adv"].flatten() for t in micros])
        logp = torch.cat([o[0].detach().flatten() for o in outs])
        if self.cfg.entropy_advantage:
            ent = torch.cat([o[1].detach().flatten() for o in outs])
            adv = entropy_aware_advantages(adv, ent, mask, self.cfg.entropy_advantage)
        advs = _split(adv, shapes)
        if self.cfg.cov_penalty == "none":
            return [(a, {}) for a in advs]
        name, chosen, extra = self._cov_masks(adv, logp, mask, clip_cov)
        return [(a, {name: c} | extra) for a, c in zip(advs, _split(chosen, shapes), strict=True)]

    def _cov_masks(self, adv, logp, mask, clip_cov) -> tuple[str, torch.Tensor, dict]:
        """Clip-Cov's ``no_grad_mask`` or KL-Cov's ``kl_cov_mask`` over the given tokens."""
        cov = token_covariance(adv, logp, mask)
        if self.cfg.cov_penalty == "clip_cov":
            ratio, lb, ub = clip_cov
            chosen = clip_cov_mask(cov, mask, ratio, lb, ub, self._cov_generator)
            return "no_grad_mask", chosen, {}
        chosen = kl_cov_mask(cov, mask, self.cfg.kl_cov_ratio)
        return "kl_cov_mask", chosen, {"kl_cov_beta": self.cfg.kl_cov_beta}

    def _reference_logp(self, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-probs under the frozen copy of the policy taken at the first RL step."""
        if self._reference is None:
            import copy

            self.set_reference(copy.deepcopy(self.model))
        with torch.no_grad():
            logp, _ = self._logprobs(self._reference, t, self.temperature)
        return logp

    def _logprobs(self, model, t: dict, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies in the padded layout, run packed when ``pack_length`` is set."""
        chunk, stats = self.cfg.head_chunk, self._stats
        if "packed" in t:
            return packed_logprobs(model, t["packed"], temperature, chunk, stats)
        return sequence_logprobs(model, t["ids"], t["attn"], temperature, chunk, stats)

    def _packs(self) -> bool:
        """``pack_length`` is set and, checked once, packing is exact for this model."""
        if self._packing is None:
            self._packing = bool(self.cfg.pack_length) and packing_exact(
                self.model, self.pad_id, self._attention()
            )
            if self.cfg.pack_length and not self._packing:
                warnings.warn(
                    f"{type(self.model).__name__} lets packed sequences attend to each other; "
                    "the learner pads instead (set learner.pack_length = 0 to silence this)",
                    stacklevel=3,
                )
        return self._packing

    def _attention(self) -> str:
        return getattr(decoder(self.model).config, "_attn_implementation", None) or "sdpa"

    def _pack_pays(self, lengths: list[int]) -> bool:
        hidden = decoder(self.model).config.hidden_size
        return packing_pays(lengths, self.cfg.pack_length, hidden, self._attention())

    def _tensors(self, micro: Sequence[TokenSample]) -> dict:
        """Shift everything by one: position t predicts token t+1. On the model's device."""
        ids, attn = pad_batch([s.ids for s in micro], self.pad_id)
        width = ids.shape[1] - 1
        old, mask, adv = (torch.zeros(len(micro), width) for _ in range(3))
        for i, s in enumerate(micro):
            n = len(s.ids) - 1
            old[i, :n] = torch.tensor(s.old_logprobs[1:])
            mask[i, :n] = torch.tensor(s.mask[1:], dtype=torch.float)
            adv[i, :n] = torch.tensor(s.token_advantages[1:]) if s.token_advantages else s.advantage
        device = next(self.model.parameters()).device
        out: dict = {k: v.to(device) for k, v in (("ids", ids), ("attn", attn), ("old", old))}
        out |= {"mask": mask.to(device), "adv": adv.to(device)}
        lengths = [len(s.ids) for s in micro]
        if min(lengths) > 1 and self._packs() and self._pack_pays(lengths):
            length = row_length(lengths, self.cfg.pack_length, self._attention())
            out["packed"] = pack([s.ids for s in micro], length, self.pad_id).to(device)
        return out


def micro_weights(masks: Sequence[torch.Tensor], mode: Aggregation) -> list[float]:
    """The factor of each micro-batch's aggregated loss that makes their sum the aggregated
    loss of the whole minibatch (``masks``: each micro-batch's ``[B, T]`` loss mask).

    ``token-mean``: the micro-batch's share of the valid tokens. ``seq-mean-token-mean``: its
    share of the sequences with a valid token. ``seq-mean-token-sum-norm``: ``B * T`` over
    the minibatch's ``B * T`` at its widest micro-batch's ``T`` (``aggregate`` divides by the
    padded width, which would otherwise change from one micro-batch to the next).
    """
    if mode == "token-mean":
        parts = [float(m.sum()) for m in masks]
        return [p / max(sum(parts), 1.0) for p in parts]
    if mode == "seq-mean-token-mean":
        parts = [float((m.sum(-1) > 0).sum()) for m in masks]
        return [p / max(sum(parts), 1.0) for p in parts]
    rows, width = sum(m.shape[0] for m in masks), max(m.shape[-1] for m in masks)
    return [m.shape[0] * m.shape[-1] / (rows * width) for m in masks]


def _split(flat: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    sizes = [s.numel() for s in shapes]
    return [p.view(s) for p, s in zip(flat.split(sizes), shapes, strict=True)]


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
