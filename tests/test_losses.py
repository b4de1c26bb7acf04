"""Hand-computed checks for branchgym.agents.losses.

Every expected number is worked out in the comments next to it, so a failing test can be checked
with a pocket calculator rather than against another implementation.
"""

from __future__ import annotations

import math

import pytest
import torch

from branchgym.agents.losses import (
    aggregate,
    grpo_advantages,
    low_var_kl,
    ppo_clip_loss,
)

ATOL = 1e-5


def close(actual: torch.Tensor | float, expected: float | list, atol: float = ATOL) -> bool:
    return torch.allclose(
        torch.as_tensor(actual, dtype=torch.float64),
        torch.as_tensor(expected, dtype=torch.float64),
        atol=atol,
        rtol=0.0,
    )


# --------------------------------------------------------------------------------------------
# grpo_advantages
# --------------------------------------------------------------------------------------------


def test_grpo_advantages_std_normalized():
    # R = [1, 0, 0, 1]; mean = 0.5; deviations = [+.5, -.5, -.5, +.5]
    # unbiased var = (4 * 0.25) / (4 - 1) = 1/3; std = sqrt(1/3) = 0.57735
    # A = ±0.5 / 0.57735 = ±0.86603   (eps = 1e-6 changes the 6th digit only)
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert close(adv, [0.86603, -0.86603, -0.86603, 0.86603])


def test_grpo_advantages_uses_unbiased_std():
    # R = [0, 1, 2]; mean = 1; deviations = [-1, 0, 1]
    # unbiased var = (1 + 0 + 1) / 2 = 1 -> std = 1 -> A = [-1, 0, 1]
    # (the population std would be sqrt(2/3) = 0.8165 and give A = ±1.2247)
    adv = grpo_advantages(torch.tensor([0.0, 1.0, 2.0]))
    assert close(adv, [-1.0, 0.0, 1.0])


def test_grpo_advantages_without_std_is_dr_grpo():
    # R = [1, 0, 0, 1]; mean = 0.5; A = R - 0.5 = [0.5, -0.5, -0.5, 0.5]
    adv = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), std_normalize=False)
    assert close(adv, [0.5, -0.5, -0.5, 0.5])
    # R = [3, 0, 0]; mean = 1; A = [2, -1, -1] (no scaling by std = 1.732)
    adv = grpo_advantages(torch.tensor([3.0, 0.0, 0.0]), std_normalize=False)
    assert close(adv, [2.0, -1.0, -1.0])


@pytest.mark.parametrize("std_normalize", [True, False])
def test_grpo_single_element_group_is_zero_not_nan(std_normalize):
    # torch.std of one element is NaN (divide by n - 1 = 0); the group has no baseline -> A = 0
    adv = grpo_advantages(torch.tensor([0.7]), std_normalize=std_normalize)
    assert adv.shape == (1,)
    assert not torch.isnan(adv).any()
    assert close(adv, [0.0])


@pytest.mark.parametrize("std_normalize", [True, False])
def test_grpo_all_equal_group_is_zero(std_normalize):
    # R = [2, 2, 2]; deviations all 0; std = 0 -> 0 / (0 + eps) = 0
    adv = grpo_advantages(torch.tensor([2.0, 2.0, 2.0]), std_normalize=std_normalize)
    assert not torch.isnan(adv).any()
    assert close(adv, [0.0, 0.0, 0.0])


@pytest.mark.parametrize("std_normalize", [True, False])
@pytest.mark.parametrize("value", [0.1, 0.3, 0.7, 0.9])
def test_grpo_equal_rewards_that_float32_cannot_average_are_exactly_zero(value, std_normalize):
    # float32's mean of eight 0.7s is 0.70000005: naive (R - mean) / (std + 1e-6) gave each
    # path +0.056, which kept uniform groups "useful" and let them into the replay buffer
    adv = grpo_advantages(torch.full((8,), value), std_normalize=std_normalize)
    assert adv.dtype == torch.float32
    assert adv.tolist() == [0.0] * 8


def test_grpo_integer_rewards_and_bad_shape():
    # integer rewards are promoted to float: [1, 0] -> mean .5, unbiased std = sqrt(.5) = .70711
    # A = ±0.5 / 0.70711 = ±0.70711
    adv = grpo_advantages(torch.tensor([1, 0]))
    assert adv.is_floating_point()
    assert close(adv, [0.70711, -0.70711])
    with pytest.raises(ValueError):
        grpo_advantages(torch.zeros(2, 2))


# --------------------------------------------------------------------------------------------
# aggregate
# --------------------------------------------------------------------------------------------

LOSS_MAT = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


def test_aggregate_token_mean():
    # valid tokens: 1, 2 (row 0) and 4 (row 1) -> (1 + 2 + 4) / 3 = 7/3 = 2.33333
    assert close(aggregate(LOSS_MAT, MASK, "token-mean"), 7 / 3)


def test_aggregate_seq_mean_token_mean():
    # row 0: (1 + 2) / 2 = 1.5; row 1: 4 / 1 = 4.0; mean over rows = (1.5 + 4) / 2 = 2.75
    assert close(aggregate(LOSS_MAT, MASK, "seq-mean-token-mean"), 2.75)


def test_aggregate_seq_mean_token_sum_norm():
    # T = 3; row 0: (1 + 2) / 3 = 1.0; row 1: 4 / 3 = 1.33333; mean = 2.33333 / 2 = 1.16667
    assert close(aggregate(LOSS_MAT, MASK, "seq-mean-token-sum-norm"), 7 / 6)


def test_aggregate_seq_mean_skips_empty_sequences():
    # a third row with no valid token is left out of the outer mean: still (1.5 + 4) / 2 = 2.75
    loss = torch.cat([LOSS_MAT, torch.tensor([[7.0, 8.0, 9.0]])])
    mask = torch.cat([MASK, torch.tensor([[0, 0, 0]])])
    assert close(aggregate(loss, mask, "seq-mean-token-mean"), 2.75)
    # token-mean is unchanged too: 7/3
    assert close(aggregate(loss, mask, "token-mean"), 7 / 3)


def test_aggregate_bool_mask_and_inf_in_masked_positions():
    # masked positions hold inf / -inf: they must not leak. Same numbers as above.
    loss = LOSS_MAT.clone()
    loss[0, 2] = float("inf")
    loss[1, 1] = float("-inf")
    mask = MASK.bool()
    assert close(aggregate(loss, mask, "token-mean"), 7 / 3)
    assert close(aggregate(loss, mask, "seq-mean-token-mean"), 2.75)
    assert close(aggregate(loss, mask, "seq-mean-token-sum-norm"), 7 / 6)


def test_aggregate_all_masked_is_zero():
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        out = aggregate(LOSS_MAT, torch.zeros_like(MASK), mode)
        assert close(out, 0.0), mode


def test_aggregate_unknown_mode_lists_valid_ones():
    with pytest.raises(ValueError) as excinfo:
        aggregate(LOSS_MAT, MASK, "seq-sum")  # type: ignore[arg-type]
    message = str(excinfo.value)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        assert mode in message


def test_aggregate_shape_mismatch():
    with pytest.raises(ValueError):
        aggregate(LOSS_MAT, MASK[:, :2], "token-mean")


# --------------------------------------------------------------------------------------------
# ppo_clip_loss
# --------------------------------------------------------------------------------------------


def _t(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def test_ppo_on_policy_loss_is_minus_mean_advantage_and_grads_flow():
    # on-policy: logp_new == logp_old -> rho = exp(0) = 1, inside [0.8, 1.2], never clipped
    # l = -A * 1  -> token-mean loss = -mean(A)
    # A = [1, -2, 0.5, 0.3, 1.5, 0.7] -> sum = 2.0 -> loss = -2/6 = -0.33333
    logp_old = _t([[-1.0, -2.0, -0.5], [-0.3, -1.5, -0.7]])
    logp_new = logp_old.clone().requires_grad_(True)
    adv = _t([[1.0, -2.0, 0.5], [0.3, 1.5, 0.7]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, mask)
    assert close(loss, -adv.mean().item())
    assert close(loss, -2.0 / 6)
    # d l_t / d logp_new_t = -A_t * rho_t = -A_t; token-mean divides by N = 6
    loss.backward()
    assert logp_new.grad is not None
    assert close(logp_new.grad, (-adv / 6).tolist())
    assert metrics["clip_frac"] == 0.0
    assert close(metrics["approx_kl"], 0.0)
    assert close(metrics["ratio_mean"], 1.0)


def test_ppo_positive_advantage_clipped_above_has_zero_grad():
    # token 0: logp_new - logp_old = 0.3 -> rho = exp(0.3) = 1.34986 > 1 + 0.2
    #   l1 = -1 * 1.34986 = -1.34986; l2 = -1 * 1.2 = -1.2; max = -1.2  (clipped, constant)
    # token 1: logp_new - logp_old = 0.1 -> rho = exp(0.1) = 1.10517, inside [0.8, 1.2]
    #   l1 = l2 = -1.10517
    # token-mean = (-1.2 - 1.10517) / 2 = -1.15259
    logp_old = _t([[0.0, 0.0]])
    logp_new = _t([[0.3, 0.1]], requires_grad=True)
    adv = _t([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, mask)
    assert close(loss, -1.152585)
    loss.backward()
    # token 0: clipped branch is a constant -> grad 0
    # token 1: d(-A * exp(x)) / dx = -A * rho = -1.10517, / 2 tokens = -0.55259
    assert close(logp_new.grad, [[0.0, -0.552585]])
    # clip_frac: 1 of 2 tokens clipped = 0.5
    # approx_kl: mean(old - new) = (-0.3 - 0.1) / 2 = -0.2
    # ratio_mean: (1.34986 + 1.10517) / 2 = 1.22751
    assert close(metrics["clip_frac"], 0.5)
    assert close(metrics["approx_kl"], -0.2)
    assert close(metrics["ratio_mean"], 1.227515)


def test_ppo_negative_advantage_clipped_below_has_zero_grad():
    # A = -1; logp_new - logp_old = -0.5 -> rho = exp(-0.5) = 0.60653 < 1 - 0.2
    #   l1 = -(-1) * 0.60653 = 0.60653; l2 = 1 * clip(0.60653, 0.8, 1.2) = 0.8
    #   max(0.60653, 0.8) = 0.8  -> clipped, constant
    logp_old = _t([[-1.0]])
    logp_new = _t([[-1.5]], requires_grad=True)
    loss, metrics = ppo_clip_loss(logp_new, logp_old, _t([[-1.0]]), torch.ones(1, 1))
    assert close(loss, 0.8)
    loss.backward()
    assert close(logp_new.grad, [[0.0]])
    assert close(metrics["clip_frac"], 1.0)


def test_ppo_pessimistic_side_is_not_clipped():
    # A = -1 with rho = exp(0.3) = 1.34986 > 1.2: l1 = 1.34986, l2 = 1.2, max = 1.34986.
    # The unclipped branch wins (PPO only clips the side that would help the objective), so the
    # gradient flows: d(1 * exp(x)) / dx = 1.34986.
    logp_old = _t([[0.0]])
    logp_new = _t([[0.3]], requires_grad=True)
    loss, metrics = ppo_clip_loss(logp_new, logp_old, _t([[-1.0]]), torch.ones(1, 1))
    assert close(loss, 1.349859)
    loss.backward()
    assert close(logp_new.grad, [[1.349859]])
    assert metrics["clip_frac"] == 0.0


def test_ppo_clip_higher_asymmetry():
    # A = 1; logp_new - logp_old = 0.22 -> rho = exp(0.22) = 1.24608
    # eps_high = 0.2:  1.24608 > 1.2  -> clipped: l = -1.2, grad 0
    # eps_high = 0.28: 1.24608 < 1.28 -> not clipped: l = -1.24608, grad = -1.24608
    logp_old = _t([[0.0]])
    adv = _t([[1.0]])
    mask = torch.ones(1, 1)

    logp_new = _t([[0.22]], requires_grad=True)
    loss_sym, m_sym = ppo_clip_loss(logp_new, logp_old, adv, mask, eps_high=0.2)
    loss_sym.backward()
    assert close(loss_sym, -1.2)
    assert close(logp_new.grad, [[0.0]])
    assert m_sym["clip_frac"] == 1.0

    logp_new = _t([[0.22]], requires_grad=True)
    loss_hi, m_hi = ppo_clip_loss(logp_new, logp_old, adv, mask, eps_high=0.28)
    loss_hi.backward()
    assert close(loss_hi, -1.246077)
    assert close(logp_new.grad, [[-1.246077]])
    assert m_hi["clip_frac"] == 0.0

    # eps_low is independent: A = -1, rho = exp(-0.25) = 0.77880
    # eps_low = 0.2:  0.7788 < 0.8 -> clipped, l = max(0.7788, 0.8) = 0.8
    # eps_low = 0.3:  0.7788 > 0.7 -> not clipped, l = 0.7788
    logp_new = _t([[-0.25]])
    loss_lo, _ = ppo_clip_loss(logp_new, logp_old, -adv, mask, eps_low=0.2, eps_high=0.28)
    assert close(loss_lo, 0.8)
    loss_lo, _ = ppo_clip_loss(logp_new, logp_old, -adv, mask, eps_low=0.3, eps_high=0.28)
    assert close(loss_lo, math.exp(-0.25))


def test_ppo_dual_clip_caps_negative_advantage_with_huge_ratio():
    # A = -1, logp_new - logp_old = 3 -> rho = exp(3) = 20.0855
    #   l1 = 20.0855; l2 = 1 * 1.2 = 1.2; max = 20.0855  (no standard clipping)
    #   dual clip c = 3: l3 = -A * c = 3; l = min(3, 20.0855) = 3 = c * |A|
    # A = -2 on the same ratio: l1 = 40.171, cap = 2 * 3 = 6
    logp_old = _t([[0.0, 0.0]])
    adv = _t([[-1.0, -2.0]])
    mask = torch.ones(1, 2)

    logp_new = _t([[3.0, 3.0]], requires_grad=True)
    loss_plain, m_plain = ppo_clip_loss(logp_new, logp_old, adv, mask)
    # token-mean = (20.0855 + 40.1711) / 2 = 30.1283
    assert close(loss_plain, (math.exp(3) + 2 * math.exp(3)) / 2)
    assert m_plain["dual_clip_frac"] == 0.0

    logp_new = _t([[3.0, 3.0]], requires_grad=True)
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, mask, dual_clip=3.0)
    # token-mean = (3 + 6) / 2 = 4.5
    assert close(loss, 4.5)
    loss.backward()
    # the cap -A * c is a constant: no gradient through the capped tokens
    assert close(logp_new.grad, [[0.0, 0.0]])
    assert close(metrics["dual_clip_frac"], 1.0)


def test_ppo_dual_clip_leaves_positive_advantage_alone():
    # A = +1, rho = exp(3) = 20.0855: l1 = -20.0855, l2 = -1.2, max = -1.2; dual clip does not
    # apply to A >= 0 (l3 = -3 would otherwise win the min), so the loss stays -1.2.
    # A = -1, rho = 1 (small ratio): l = max(1, 1) = 1 < cap 3, unchanged.
    # token-mean = (-1.2 + 1) / 2 = -0.1
    logp_old = _t([[0.0, 0.0]])
    logp_new = _t([[3.0, 0.0]])
    adv = _t([[1.0, -1.0]])
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, torch.ones(1, 2), dual_clip=3.0)
    assert close(loss, -0.1)
    assert metrics["dual_clip_frac"] == 0.0
    # clip_frac: only token 0 took the clipped branch -> 1/2
    assert close(metrics["clip_frac"], 0.5)


def test_ppo_dual_clip_must_exceed_one():
    x = _t([[0.0]])
    with pytest.raises(ValueError):
        ppo_clip_loss(x, x, x, torch.ones(1, 1), dual_clip=1.0)


def test_ppo_masked_tokens_are_ignored():
    # Only token 0 is valid: rho = exp(0.1) = 1.10517, A = 2, unclipped -> l = -2.21034.
    # Tokens 1 and 2 hold garbage (log-ratio 100, advantage 1e6); they must change nothing:
    # not the loss, not the metrics, and their gradient must be exactly 0 (and finite).
    logp_old = _t([[0.0, -50.0, 0.0]])
    logp_new = _t([[0.1, 50.0, -80.0]], requires_grad=True)
    adv = _t([[2.0, 1e6, -1e6]])
    mask = torch.tensor([[True, False, False]])
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, mask)
    assert close(loss, -2 * math.exp(0.1))
    loss.backward()
    assert torch.isfinite(logp_new.grad).all()
    # token 0: d(-2 * exp(x)) / dx = -2 * 1.10517 = -2.21034 (one valid token -> / 1)
    assert close(logp_new.grad, [[-2 * math.exp(0.1), 0.0, 0.0]])
    assert metrics["clip_frac"] == 0.0
    assert close(metrics["approx_kl"], -0.1)
    assert close(metrics["ratio_mean"], math.exp(0.1))

    # identical to running on the valid token alone
    ref, _ = ppo_clip_loss(_t([[0.1]]), _t([[0.0]]), _t([[2.0]]), torch.ones(1, 1))
    assert close(loss, ref.item())


def test_ppo_clip_frac_counts_valid_tokens_only():
    # A = 1 everywhere, logp_old = 0.
    #   token 0: log-ratio 0.5 -> rho 1.6487 > 1.2 -> clipped
    #   token 1: log-ratio 0.0 -> rho 1.0            -> not clipped
    #   token 2: log-ratio 0.4 -> rho 1.4918 > 1.2 -> clipped
    #   token 3: log-ratio 0.5 -> clipped, but MASKED
    # clip_frac = 2 clipped / 3 valid = 0.66667 (not 3/4)
    logp_old = _t([[0.0, 0.0], [0.0, 0.0]])
    logp_new = _t([[0.5, 0.0], [0.4, 0.5]])
    adv = _t([[1.0, 1.0], [1.0, 1.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = ppo_clip_loss(logp_new, logp_old, adv, mask)
    assert close(metrics["clip_frac"], 2 / 3)
    # loss = (-1.2 - 1.0 - 1.2) / 3 = -1.13333
    assert close(loss, -3.4 / 3)


def test_ppo_aggregation_is_forwarded():
    # on-policy (rho = 1) so l = -A:
    #   l = [[-1, -2, x], [-4, x, x]] with mask [[1, 1, 0], [1, 0, 0]]
    # seq-mean-token-mean: ((-1 - 2) / 2 + (-4) / 1) / 2 = (-1.5 - 4) / 2 = -2.75
    # seq-mean-token-sum-norm: ((-3) / 3 + (-4) / 3) / 2 = -7/6 = -1.16667
    logp = _t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    adv = _t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    loss, _ = ppo_clip_loss(logp, logp, adv, MASK, aggregation="seq-mean-token-mean")
    assert close(loss, -2.75)
    loss, _ = ppo_clip_loss(logp, logp, adv, MASK, aggregation="seq-mean-token-sum-norm")
    assert close(loss, -7 / 6)


def test_ppo_sequence_level_advantages_broadcast():
    # A given as [B, 1] is broadcast over tokens: A = [[1], [-1]], rho = 1 -> l = [[-1,-1],[1,1]]
    # token-mean = 0
    logp = _t([[0.0, 0.0], [0.0, 0.0]])
    loss, _ = ppo_clip_loss(logp, logp, _t([[1.0], [-1.0]]), torch.ones(2, 2))
    assert close(loss, 0.0)


# --------------------------------------------------------------------------------------------
# low_var_kl
# --------------------------------------------------------------------------------------------


def test_low_var_kl_zero_when_equal():
    logp = _t([[-0.1, -2.0, -5.0]])
    assert close(low_var_kl(logp, logp.clone()), [[0.0, 0.0, 0.0]])


def test_low_var_kl_hand_computed():
    # d = logp_ref - logp
    # token 0: logp = 0,  ref = -1: d = -1 -> exp(-1) - (-1) - 1 = 0.36788
    # token 1: logp = -1, ref = 0:  d = +1 -> e - 1 - 1 = 0.71828
    # token 2: logp = -1, ref = -0.9: d = 0.1 -> exp(0.1) - 0.1 - 1 = 1.10517 - 1.1 = 0.00517
    logp = _t([[0.0, -1.0, -1.0]])
    ref = _t([[-1.0, 0.0, -0.9]])
    kl = low_var_kl(logp, ref)
    assert kl.shape == (1, 3)
    assert close(kl, [[0.367879, 0.718282, 0.005171]])


def test_low_var_kl_is_clamped():
    # d = 20 -> exp(20) - 20 - 1 = 4.85e8 -> clamped to 10; d = 100 is first clamped to 20
    logp = _t([[-20.0, -100.0]])
    ref = _t([[0.0, 0.0]])
    assert close(low_var_kl(logp, ref), [[10.0, 10.0]])
    # the other direction: d = -30 -> exp(-20) + 20 - 1 = 19.0 -> clamped to 10 (never negative)
    assert close(low_var_kl(_t([[0.0]]), _t([[-30.0]])), [[10.0]])


def test_low_var_kl_gradient():
    # d kl / d logp = d/dlogp [exp(ref - logp) - (ref - logp) - 1] = -exp(d) + 1
    # at d = 1: 1 - e = -1.71828
    logp = _t([[-1.0]], requires_grad=True)
    low_var_kl(logp, _t([[0.0]])).sum().backward()
    assert close(logp.grad, [[1 - math.e]])
