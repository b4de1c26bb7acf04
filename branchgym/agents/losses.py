"""Policy losses and advantages: the one module for them in branchgym.

Every function here is a pure function of tensors: no model, no optimizer, no state. The learner
computes log-probabilities and rewards, and this module turns them into a scalar loss (plus a few
float metrics for logging). Keeping the arithmetic in one place means GRPO, Dr.GRPO, DAPO's
clip-higher, ARPO's dual clip and the KL penalty are all tested against hand-computed numbers in
``tests/test_losses.py`` rather than re-derived in each trainer.

Shapes: per-token tensors are ``[B, T]`` (batch of sequences by response tokens). ``mask`` is a
bool or 0/1 tensor of the same shape marking the tokens that carry loss (model tokens; never
prompt, observation, tool-result or padding tokens). Masked positions contribute exactly nothing,
whatever values they hold.

The formulas follow verl (``verl/trainer/ppo/core_algos.py``) so that numbers are comparable, with
one documented difference in the ``"seq-mean-token-sum-norm"`` aggregation (see ``aggregate``).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = [
    "Aggregation",
    "UpperClip",
    "aggregate",
    "clip_cov_mask",
    "entropy_aware_advantages",
    "grpo_advantages",
    "kl_cov_mask",
    "low_var_kl",
    "ppo_clip_loss",
    "sil_weight",
    "token_covariance",
    "tool_call_bonus",
]

UpperClip = Literal["hard", "entropy_balanced"]
"""PPO's upper clip: a constant (``hard``), or AEPO's stop-gradient form (see ``ppo_clip_loss``)."""

Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
"""How a per-token loss matrix is reduced to a scalar; see ``aggregate``."""

_AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)

# verl clamps log-ratios to this range before exponentiating so that exp() never overflows.
_LOG_RATIO_CLAMP = 20.0
# verl clamps the low-variance KL estimate to this range.
_KL_CLAMP = 10.0


def grpo_advantages(rewards: Tensor, std_normalize: bool = True, eps: float = 1e-6) -> Tensor:
    """Group-relative advantages for ONE group of returns.

    With ``std_normalize=True`` (GRPO)::

        A_i = (R_i - mean(R)) / (std(R) + eps)

    where ``std`` is ``torch.std``'s default *unbiased* (Bessel-corrected, divide by ``n - 1``)
    standard deviation, as verl's GRPO uses. With ``std_normalize=False`` (Dr.GRPO)::

        A_i = R_i - mean(R)

    A group of size 1 has no baseline to compare against and gets advantage 0 (not NaN, which is
    what the unbiased std of one element would give). A group whose rewards are all equal gets
    exactly zero advantages in both modes (computed naively in float32, the mean of eight
    returns of 0.7 is off by an ulp, and ``centered / (std + eps)`` gives each path 0.056).

    Args:
        rewards: 1-D tensor ``[G]`` of scalar returns, one per trajectory of the group.
        std_normalize: divide by the group's std (GRPO) or not (Dr.GRPO).
        eps: added to the std to avoid division by zero.

    Returns:
        A float tensor ``[G]`` of advantages (same dtype as ``rewards`` when it is floating).
    """
    if rewards.ndim != 1:
        raise ValueError(
            f"grpo_advantages takes one group as a 1-D tensor, got shape {tuple(rewards.shape)}"
        )
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    if rewards.numel() <= 1 or bool((rewards == rewards[0]).all()):
        return torch.zeros_like(rewards)
    wide = rewards.double()  # float32's mean of equal returns such as 0.7 is off by an ulp
    centered = wide - wide.mean()
    if std_normalize:
        centered = centered / (wide.std() + eps)
    return centered.to(rewards.dtype)


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch: {shapes}")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """``sum(values * mask) / sum(mask)``; 0 when no token is valid. ``mask`` must be bool."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def aggregate(loss_mat: Tensor, mask: Tensor, mode: Aggregation) -> Tensor:
    """Reduce a per-token loss matrix ``[B, T]`` to a scalar over the valid tokens of ``mask``.

    Let ``m_bt`` be the 0/1 mask, ``n_b = sum_t m_bt`` and ``T = loss_mat.shape[-1]``.

    - ``"token-mean"`` (DAPO; every token weighs the same)::

          loss = sum_bt(l_bt * m_bt) / sum_bt(m_bt)

    - ``"seq-mean-token-mean"`` (original GRPO; every sequence weighs the same)::

          loss = mean over {b : n_b >= 1} of ( sum_t(l_bt * m_bt) / n_b )

      Sequences with no valid token are left out of the outer mean.

    - ``"seq-mean-token-sum-norm"`` (Dr.GRPO; a constant normaliser, no length bias)::

          loss = mean over all b of ( sum_t(l_bt * m_bt) / T )   ==  sum_bt(l_bt * m_bt) / (B * T)

      The divisor ``T`` is the padded maximum length, so it should be kept constant across
      training. (verl's version divides the *sum* over sequences by ``T``, i.e. does not divide
      by ``B``; here the outer reduction is a mean so the scale does not grow with batch size.)

    Masked positions contribute nothing, even if they hold ``inf``. When no token is valid the
    result is 0 (still connected to ``loss_mat``'s graph).

    Raises:
        ValueError: for an unknown ``mode`` (the message lists the valid ones) or mismatched
            shapes.
    """
    if mode not in _AGGREGATIONS:
        raise ValueError(f"unknown aggregation {mode!r}; valid modes are {list(_AGGREGATIONS)}")
    _check_same_shape(loss_mat=loss_mat, mask=mask)
    if loss_mat.ndim < 1:
        raise ValueError("aggregate needs at least one (token) dimension")
    valid = mask.bool()
    masked = torch.where(valid, loss_mat, torch.zeros_like(loss_mat))

    if mode == "token-mean":
        return masked.sum() / valid.sum().clamp(min=1)

    seq_sums = masked.sum(dim=-1)
    if mode == "seq-mean-token-mean":
        n_tokens = valid.sum(dim=-1)
        has_tokens = n_tokens > 0
        seq_means = seq_sums / n_tokens.clamp(min=1)
        return _masked_mean(seq_means, has_tokens)

    # "seq-mean-token-sum-norm"
    return (seq_sums / loss_mat.shape[-1]).mean()


def ppo_clip_loss(
    logp_new: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    aggregation: Aggregation = "token-mean",
    upper_clip: UpperClip = "hard",
    no_grad_mask: Tensor | None = None,
    kl_cov_mask: Tensor | None = None,
    kl_cov_beta: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate loss, with clip-higher (DAPO), dual clip (ARPO), AEPO's
    entropy-balanced clipping and the Clip-Cov / KL-Cov token selections.

    Per token, with ``rho = exp(logp_new - logp_old)`` (log-ratio clamped to [-20, 20] as verl
    does, so exp never overflows)::

        l1 = -A * rho
        l2 = -A * clip(rho, 1 - eps_low, 1 + eps_high)
        l  = max(l1, l2)

    With ``dual_clip = c`` (``c > 1``; ARPO uses 3), tokens with ``A < 0`` are additionally capped
    so a huge ratio cannot blow up the loss (verl's ``clip_ratio_c``)::

        l3 = -A * c
        l  = where(A < 0, min(l3, max(l1, l2)), max(l1, l2))

    i.e. for ``A < 0`` the per-token loss is at most ``c * |A|``. The scalar loss is
    ``aggregate(l, mask, aggregation)``.

    ``upper_clip="entropy_balanced"`` (AEPO) replaces the constant upper bound by
    ``(1 + eps_high) / sg(rho) * rho``: the same value, but an upper-clipped token keeps a
    gradient of weight ``(1 + eps_high)`` instead of none. The lower clip is unchanged.

    ``no_grad_mask`` (Clip-Cov) marks tokens whose gradient is dropped (their value still
    counts). ``kl_cov_mask`` (KL-Cov) marks tokens whose loss becomes
    ``-A * rho + kl_cov_beta * |logp_new - logp_old|``, unclipped.

    Args:
        logp_new: ``[B, T]`` log-probs of the sampled tokens under the current policy (with grad).
        logp_old: ``[B, T]`` log-probs under the behaviour policy (treated as constants).
        advantages: ``[B, T]`` per-token advantages (or broadcastable to it, e.g. ``[B, 1]``).
        mask: ``[B, T]`` bool or 0/1; only ``True``/1 tokens carry loss. Masked positions are
            zeroed before any arithmetic, so whatever values they hold do not reach the loss,
            the gradient or the metrics.
        eps_low: lower clip range, ``rho >= 1 - eps_low``.
        eps_high: upper clip range, ``rho <= 1 + eps_high`` (DAPO clip-higher uses 0.28).
        dual_clip: the dual-clip constant ``c`` (must be > 1), or ``None`` to disable it.
        aggregation: see ``aggregate``.

    Returns:
        ``(loss, metrics)``: a scalar tensor, and floats over the valid tokens:

        - ``clip_frac``: fraction where the clipped branch was active (``l2 > l1``);
        - ``approx_kl``: token-mean of ``logp_old - logp_new``;
        - ``ratio_mean``: token-mean of ``rho``;
        - ``dual_clip_frac``: fraction where the dual-clip cap was active (0 when disabled).
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    _check_same_shape(logp_new=logp_new, logp_old=logp_old, mask=mask)
    advantages = advantages.expand_as(logp_new)

    valid = mask.bool()
    logp_old = logp_old.detach()
    if no_grad_mask is not None:
        logp_new = torch.where(no_grad_mask.bool(), logp_new.detach(), logp_new)
    zeros = torch.zeros_like(logp_new)
    # Zero the masked positions before exp() so garbage there cannot produce inf/NaN values or
    # NaN gradients (where() alone would still backpropagate 0 * inf = NaN).
    log_ratio = torch.where(valid, logp_new - logp_old, zeros)
    log_ratio = log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    adv = torch.where(valid, advantages.detach().to(logp_new.dtype), zeros)

    ratio = torch.exp(log_ratio)
    pg_losses1 = -adv * ratio
    pg_losses2 = -adv * _clipped_ratio(ratio, eps_low, eps_high, upper_clip)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)

    if dual_clip is not None:
        pg_losses3 = -adv * dual_clip
        clip_pg_losses2 = torch.minimum(pg_losses3, clip_pg_losses1)
        pg_losses = torch.where(adv < 0, clip_pg_losses2, clip_pg_losses1)
        dual_clipped = (adv < 0) & (clip_pg_losses1 > pg_losses3)
    else:
        pg_losses = clip_pg_losses1
        dual_clipped = torch.zeros_like(valid)

    if kl_cov_mask is not None:
        kl_cov = kl_cov_mask.bool() & valid
        pg_losses = torch.where(kl_cov, pg_losses1 + kl_cov_beta * log_ratio.abs(), pg_losses)

    loss = aggregate(pg_losses, valid, aggregation)

    with torch.no_grad():
        metrics = {
            "clip_frac": _masked_mean((pg_losses2 > pg_losses1).to(ratio.dtype), valid).item(),
            "approx_kl": _masked_mean(-log_ratio, valid).item(),
            "ratio_mean": _masked_mean(ratio, valid).item(),
            "dual_clip_frac": _masked_mean(dual_clipped.to(ratio.dtype), valid).item(),
        }
    return loss, metrics


def _clipped_ratio(ratio: Tensor, eps_low: float, eps_high: float, upper: UpperClip) -> Tensor:
    if upper == "hard":
        return torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    if upper != "entropy_balanced":
        raise ValueError(f"unknown upper_clip {upper!r}; choose 'hard' or 'entropy_balanced'")
    high = (1.0 + eps_high) / ratio.detach() * ratio  # value 1 + eps_high, gradient kept
    upper_clipped = torch.where(ratio > 1.0 + eps_high, high, ratio)
    return torch.where(ratio < 1.0 - eps_low, torch.full_like(ratio, 1.0 - eps_low), upper_clipped)


def entropy_aware_advantages(
    advantages: Tensor, entropy: Tensor, mask: Tensor, alpha: float = 0.2, eps: float = 1e-6
) -> Tensor:
    """AEPO's entropy-aware advantage: ``A(t) = A * (1 + alpha * z(H(t)))``.

    ``z`` standardises the token entropies over the valid tokens of the batch (population
    std); ``H`` is detached, so the advantage shapes the gradient but receives none. Masked
    positions come back as 0.
    """
    advantages = advantages.expand_as(entropy)
    valid = mask.bool()
    h = entropy.detach()
    mu = _masked_mean(h, valid)
    sd = _masked_mean((h - mu) ** 2, valid).sqrt()
    z = torch.where(valid, (h - mu) / (sd + eps), torch.zeros_like(h))
    return torch.where(valid, advantages * (1.0 + alpha * z), torch.zeros_like(h))


def token_covariance(advantages: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """``Cov_t = (A_t - mean A) * (logp_t - mean logp)`` over the valid tokens (0 elsewhere)."""
    advantages = advantages.expand_as(logp)
    valid = mask.bool()
    a, lp = advantages.detach(), logp.detach()
    cov = (a - _masked_mean(a, valid)) * (lp - _masked_mean(lp, valid))
    return torch.where(valid, cov, torch.zeros_like(cov))


def clip_cov_mask(
    cov: Tensor,
    mask: Tensor,
    ratio: float = 2e-4,
    lb: float = 1.0,
    ub: float = 5.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Clip-Cov: ``max(1, floor(ratio * N))`` random valid tokens with ``lb < Cov < ub``.

    ``N`` is the number of valid tokens; fewer are chosen when fewer qualify. The result is
    the ``no_grad_mask`` of ``ppo_clip_loss``.
    """
    valid = mask.bool()
    candidates = (valid & (cov > lb) & (cov < ub)).flatten().nonzero().squeeze(-1)
    n = min(max(1, int(ratio * int(valid.sum()))), candidates.numel())
    chosen = candidates[torch.randperm(candidates.numel(), generator=generator)[:n]]
    out = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device)
    out[chosen] = True
    return out.view_as(cov)


def kl_cov_mask(cov: Tensor, mask: Tensor, ratio: float = 2e-3) -> Tensor:
    """KL-Cov: the ``floor(ratio * N)`` valid tokens with the largest covariance."""
    valid = mask.bool()
    k = int(ratio * int(valid.sum()))
    out = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device)
    if k:
        scores = torch.where(valid, cov, torch.full_like(cov, -torch.inf)).flatten()
        out[scores.topk(k).indices] = True
    return out.view_as(cov)


def sil_weight(step: int, c: float = 1.0, warmup: int = 200) -> float:
    """SPEAR's self-imitation weight: ``c * (1 - cos(pi * t / T)) / 2`` up to ``T``, then ``c``."""
    if step >= warmup:
        return c
    return c * (1.0 - math.cos(math.pi * step / warmup)) / 2.0


def tool_call_bonus(tool_calls: int, step: int, horizon: int = 200) -> float:
    """SPEAR's intrinsic reward: ``mu(t) * min(1, 0.1 * n)``, ``mu(t) = (cos(pi t / T) + 1) / 2``
    up to ``T`` and 0 after, so tool use is encouraged early and left to the task later."""
    mu = (math.cos(math.pi * step / horizon) + 1.0) / 2.0 if step <= horizon else 0.0
    return mu * min(1.0, 0.1 * tool_calls)


def low_var_kl(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-token low-variance KL estimate of KL(pi || pi_ref) (Schulman's "k3"), as in verl.

    With ``d = logp_ref - logp`` (clamped to [-20, 20] before exp)::

        kl = exp(d) - d - 1,   then clamped to [-10, 10]

    It is >= 0, and exactly 0 where ``logp == logp_ref``. Returns a tensor of the inputs' shape;
    reduce it with ``aggregate``.
    """
    _check_same_shape(logp=logp, logp_ref=logp_ref)
    d = (logp_ref - logp).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    kl = torch.exp(d) - d - 1.0
    return kl.clamp(-_KL_CLAMP, _KL_CLAMP)
