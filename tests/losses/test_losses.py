"""The shared losses against their equations: exact values and invariances."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.losses import rmse, rnc_loss, sg_l1, sg_mse, sg_rmse


def test_rnc_all_equal_features_two_labels_two_views_is_ln12_over_3():
    # Each anchor: one same-label positive (set of 3 -> ln 3), two other-label ones (sets of 2 -> ln 2).
    loss = rnc_loss(torch.zeros(2, 2, 5), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(math.log(12) / 3, abs=1e-7)
    assert math.log(12) / 3 == pytest.approx(0.8283022166, abs=1e-10)


def _rnc_by_definition(v: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    """A direct double loop over the equation (float64)."""
    N, V, d = v.shape
    flat = v.transpose(0, 1).reshape(N * V, d).double()
    yy = y.double().repeat(V)
    M = flat.shape[0]
    total = 0.0
    for i in range(M):
        for j in range(M):
            if j == i:
                continue
            s_ij = -torch.linalg.norm(flat[i] - flat[j]) / tau
            den = sum(math.exp(-torch.linalg.norm(flat[i] - flat[k]).item() / tau) for k in range(M)
                      if k != i and abs(yy[i] - yy[k]) >= abs(yy[i] - yy[j]))
            total -= s_ij.item() - math.log(den)
    return total / (M * (M - 1))


def test_rnc_matches_the_equation_on_random_data():
    g = torch.Generator().manual_seed(0)
    v, y = torch.randn(5, 2, 3, generator=g), torch.randn(5, generator=g)
    assert rnc_loss(v, y, temperature=2.0).item() == pytest.approx(_rnc_by_definition(v, y, 2.0), abs=1e-5)


def test_rnc_invariances_and_sign():
    g = torch.Generator().manual_seed(1)
    v, y = torch.randn(6, 2, 4, generator=g), torch.randn(6, generator=g)
    base = rnc_loss(v, y).item()
    assert rnc_loss(v, 3.5 * y - 2.0).item() == pytest.approx(base, abs=1e-6)  # y -> a y + b, a > 0
    assert rnc_loss(v + 7.0, y).item() == pytest.approx(base, abs=1e-5)  # feature translation
    assert base >= 0
    with pytest.raises(ValueError, match="features must be"):
        rnc_loss(torch.zeros(4, 3), y[:4])


def test_rnc_tie_tolerance_admits_near_ties():
    # Labels 0, 1, 1+5e-5: with a 1e-4 tolerance the near-tie joins the denominator of the 1-pair.
    v = torch.tensor([[[0.0]], [[1.0]], [[3.0]]])
    y = torch.tensor([0.0, 1.0, 1.00005])
    assert rnc_loss(v, y, tie_tol=1e-4).item() != pytest.approx(rnc_loss(v, y).item(), abs=1e-6)


def test_rmse_exact_and_stop_gradient():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = torch.tensor([1.0, 0.0, 3.0, 0.0], requires_grad=True)
    assert rmse(a, b).item() == pytest.approx(math.sqrt((4 + 16) / 4))
    ga, gb = torch.autograd.grad(sg_rmse(a, b), (a, b), allow_unused=True)
    assert gb is None and ga is not None and ga.abs().sum() > 0
    _, gb = torch.autograd.grad(rmse(a, b), (a, b))
    assert gb.abs().sum() > 0  # plain RMSE (L_RS) moves both sides
    assert sg_mse(a, b).item() == pytest.approx(5.0) and sg_l1(a, b).item() == pytest.approx(1.5)
    z = torch.zeros(3, requires_grad=True)
    (g,) = torch.autograd.grad(rmse(z, torch.zeros(3)), z)
    assert torch.isfinite(g).all()  # no NaN at a perfect match
    with pytest.raises(ValueError, match="shapes differ"):
        rmse(a, b[:2])
