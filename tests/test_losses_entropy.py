"""Hand-computed checks for the entropy-side losses: AEPO's clipping and advantage, Clip-Cov /
KL-Cov, and SPEAR's schedules (the GRPO / PPO / KL ones are in test_losses.py)."""

from __future__ import annotations

import pytest
import torch

from branchgym.agents.losses import (
    clip_cov_mask,
    entropy_aware_advantages,
    kl_cov_mask,
    ppo_clip_loss,
    sil_weight,
    token_covariance,
    tool_call_bonus,
)
from tests.test_losses import close


def _t(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


# --------------------------------------------------------------------------------------------
# AEPO: entropy-balanced clipping and entropy-aware advantages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("upper", "grad0"), [("hard", 0.0), ("entropy_balanced", -0.6)])
def test_aepo_clipping_keeps_gradient_on_upper_clipped_tokens(upper, grad0):
    # The tokens of test_ppo_positive_advantage_clipped_above_has_zero_grad, eps_high = 0.2.
    # Forward values are identical: token 0 clipped to -1.2, token 1 -1.10517, mean -1.152585.
    # Hard clip: token 0's clipped branch is a constant -> gradient 0.
    # Entropy-balanced: l2 = -A * 1.2 / sg(rho) * rho -> d/dlogp = -A * 1.2 = -1.2, / 2 = -0.6.
    logp_old = _t([[0.0, 0.0]])
    logp_new = _t([[0.3, 0.1]], requires_grad=True)
    loss, metrics = ppo_clip_loss(
        logp_new, logp_old, _t([[1.0, 1.0]]), torch.ones(1, 2), upper_clip=upper
    )
    assert close(loss, -1.152585)
    loss.backward()
    assert close(logp_new.grad, [[grad0, -0.552585]])
    assert close(metrics["clip_frac"], 0.5)


def test_aepo_clipping_leaves_the_lower_clip_alone():
    # A = -1, rho = exp(-0.5) = 0.60653 < 0.8: both forms give 0.8 and no gradient.
    for upper in ("hard", "entropy_balanced"):
        logp_new = _t([[-1.5]], requires_grad=True)
        loss, _ = ppo_clip_loss(
            logp_new, _t([[-1.0]]), _t([[-1.0]]), torch.ones(1, 1), upper_clip=upper
        )
        loss.backward()
        assert close(loss, 0.8) and close(logp_new.grad, [[0.0]])
    with pytest.raises(ValueError, match="upper_clip"):
        ppo_clip_loss(_t([[0.0]]), _t([[0.0]]), _t([[1.0]]), torch.ones(1, 1), upper_clip="soft")


def test_entropy_aware_advantages_hand_computed():
    # H = [1, 2, 3] valid (the 4th is masked): mean 2, population std sqrt(2/3) = 0.816497,
    # z = [-1.224745, 0, 1.224745]; A = 2: A(t) = 2 * (1 + 0.2 z) = [1.510102, 2, 2.489898].
    h = _t([[1.0, 2.0, 3.0, 100.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0]])
    out = entropy_aware_advantages(_t([[2.0]]), h, mask, alpha=0.2)
    assert close(out, [[1.510102, 2.0, 2.489898, 0.0]])
    assert not out.requires_grad  # entropy is detached


# --------------------------------------------------------------------------------------------
# Clip-Cov and KL-Cov
# --------------------------------------------------------------------------------------------


def test_token_covariance_hand_computed():
    # A = [0, 2, 4] (mean 2), logp = [-6, -2, -1] (mean -3):
    # Cov = [(-2)(-3), (0)(1), (2)(2)] = [6, 0, 4]; the masked 4th token is 0.
    cov = token_covariance(
        _t([[0.0, 2.0, 4.0, 9.0]]), _t([[-6.0, -2.0, -1.0, 5.0]]), torch.tensor([[1, 1, 1, 0]])
    )
    assert close(cov, [[6.0, 0.0, 4.0, 0.0]])


def test_clip_cov_picks_random_tokens_inside_the_band():
    cov = _t([[6.0, 0.0, 4.0, 2.0, 3.0]])
    mask = torch.ones(1, 5)
    g = torch.Generator().manual_seed(0)
    # lb=1 < Cov < ub=5: indices 2, 3, 4 qualify; ratio 0.5 -> floor(0.5 * 5) = 2 of them
    chosen = clip_cov_mask(cov, mask, ratio=0.5, lb=1.0, ub=5.0, generator=g)
    assert int(chosen.sum()) == 2 and not chosen[0, 0] and not chosen[0, 1]
    # a tiny ratio still picks max(1, floor(2e-4 * 5)) = 1
    assert int(clip_cov_mask(cov, mask, ratio=2e-4, generator=g).sum()) == 1


def test_kl_cov_picks_the_top_covariance_tokens():
    cov = _t([[6.0, 0.0, 4.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])  # the masked 50 is never chosen
    # floor(0.4 * 5 valid) = 2: Cov 6 and 4
    assert kl_cov_mask(cov, mask, ratio=0.4).tolist() == [[True, False, True, False, False, False]]
    assert not kl_cov_mask(cov, mask, ratio=0.1).any()  # floor(0.5) = 0


def test_ppo_no_grad_mask_keeps_the_value_and_drops_the_gradient():
    logp_old = _t([[0.0, 0.0]])
    logp_new = _t([[0.1, 0.1]], requires_grad=True)
    adv = _t([[1.0, 1.0]])
    no_grad = torch.tensor([[True, False]])
    loss, _ = ppo_clip_loss(logp_new, logp_old, adv, torch.ones(1, 2), no_grad_mask=no_grad)
    assert close(loss, -1.105171)  # both tokens: -exp(0.1)
    loss.backward()
    assert close(logp_new.grad, [[0.0, -0.552585]])


def test_ppo_kl_cov_replaces_the_clip_with_a_penalty():
    # A = 1, x = logp_new - logp_old = 0.3, rho = 1.34986: PPO would clip to -1.2.
    # KL-Cov: -A * rho + 1 * |x| = -1.34986 + 0.3 = -1.04986; d/dx = -1.34986 + 1 = -0.34986.
    logp_new = _t([[0.3]], requires_grad=True)
    sel = torch.tensor([[True]])
    loss, _ = ppo_clip_loss(logp_new, _t([[0.0]]), _t([[1.0]]), torch.ones(1, 1), kl_cov_mask=sel)
    assert close(loss, -1.049859)
    loss.backward()
    assert close(logp_new.grad, [[-0.349859]])


# --------------------------------------------------------------------------------------------
# SPEAR schedules
# --------------------------------------------------------------------------------------------


def test_sil_weight_schedule():
    # w(t) = c (1 - cos(pi t / T)) / 2 up to T = 200, then c
    assert sil_weight(0) == 0.0
    assert close(sil_weight(100), 0.5)  # (1 - cos(pi / 2)) / 2
    assert sil_weight(200) == 1.0 and sil_weight(300) == 1.0
    assert close(sil_weight(50, c=2.0), 0.292893)  # 2 (1 - cos(pi / 4)) / 2 = 1 - 0.707107


def test_tool_call_bonus_curriculum():
    # mu(t) = (cos(pi t / 200) + 1) / 2; bonus = mu * min(1, 0.1 n)
    assert close(tool_call_bonus(3, 0), 0.3)  # mu = 1
    assert close(tool_call_bonus(3, 100), 0.15)  # mu = 0.5
    assert close(tool_call_bonus(20, 100), 0.5)  # min(1, 2) = 1
    assert tool_call_bonus(3, 250) == 0.0
