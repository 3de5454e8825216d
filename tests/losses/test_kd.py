"""MAGTKD's KD losses: exact values of eq. 9 and eq. 12."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.losses import batch_similarity_kl, dist_loss, pearson

EYE = torch.eye(2)
SWAP = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_dist_swapped_2x2_is_4_tau_squared(tau):
    # Two-element Pearson is ±1: swapped logits anti-correlate every row and column -> d = 2 each.
    assert dist_loss(SWAP, EYE, tau=tau).item() == pytest.approx(4 * tau ** 2, rel=1e-6)  # ε = 1e-8 in ρ


def test_dist_identical_and_shift_invariant():
    p = torch.randn(5, 7)
    assert dist_loss(p, p, tau=2.0).item() == pytest.approx(0.0, abs=1e-5)
    t = torch.randn(5, 7)
    shifted = p + torch.arange(5.0)[:, None]  # softmax is invariant to a per-row constant
    assert dist_loss(shifted, t).item() == pytest.approx(dist_loss(p, t).item(), abs=1e-5)


def test_dist_weights_and_teacher_gradient():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    only_inter = dist_loss(s, t, tau=1.0, gamma=0.0)
    only_intra = dist_loss(s, t, tau=1.0, beta=0.0)
    assert dist_loss(s, t, tau=1.0).item() == pytest.approx(only_inter.item() + only_intra.item(), rel=1e-6)
    dist_loss(s, t).backward()
    assert t.grad is None and s.grad is not None
    dist_loss(s, t, detach_teacher=False).backward()
    assert t.grad is not None


def test_pearson_matches_numpy():
    import numpy as np

    a, b = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    assert pearson(a, b).item() == pytest.approx(np.corrcoef(a.numpy(), b.numpy())[0, 1], abs=1e-7)


def test_batch_similarity_kl_exact():
    # t = I, a = anti-identity, τ = 1: T rows softmax([1,0]), S rows softmax([0,1]);
    # KL = (e-1)/(e+1) (= tanh(1/2)).
    assert batch_similarity_kl(SWAP, EYE, tau=1.0).item() == pytest.approx((math.e - 1) / (math.e + 1), abs=1e-6)


def test_batch_similarity_kl_zero_for_scaled_copy_and_gradients():
    t = torch.randn(6, 8)
    assert batch_similarity_kl(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    s, tt = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    batch_similarity_kl(s, tt).backward()
    assert tt.grad is None and s.grad.abs().sum() > 0


def test_shape_errors():
    with pytest.raises(ValueError, match="dist_loss: expected two"):
        dist_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch_similarity_kl: expected two"):
        batch_similarity_kl(torch.zeros(2, 3), torch.zeros(3, 3))
