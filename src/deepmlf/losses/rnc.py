"""Rank-N-Contrast (Zha et al., NeurIPS 2023, eq. 2), as the missing-modality double flow uses it.

For M = N·V feature vectors v_i (N samples, V views each) with labels y_i:
    s_ij = -||v_i - v_j||_2 / τ                                  (negative L2 distance, temperature τ)
    S_ij = {k ≠ i : |y_i - y_k| >= |y_i - y_j|}                  (j itself included)
    L    = -1 / (M (M-1)) · Σ_i Σ_{j≠i} log( exp(s_ij) / Σ_{k∈S_ij} exp(s_ik) )
Each pair (i, j) is a positive contrasted against every sample at least as far from i in label.
In SDUMC the V = 2 views are the complete and the text-missing flows of the same clip.
`tie_tol` > 0 admits k with |y_i - y_k| >= |y_i - y_j| - tie_tol (SDUMC's copy uses 1e-4;
the reference implementation 0). L >= 0; invariant to y -> a y + b (a > 0) when tie_tol = 0,
and to translating the features.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rnc_loss(features: Tensor, labels: Tensor, *, temperature: float = 2.0, tie_tol: float = 0.0) -> Tensor:
    """features: (N, V, d) V views per sample; labels: (N,). Returns the scalar L above."""
    if features.dim() != 3:
        raise ValueError(f"rnc_loss: features must be (N, views, d), got shape {tuple(features.shape)}")
    N, V, d = features.shape
    if labels.shape != (N,):
        raise ValueError(f"rnc_loss: labels must be ({N},), got {tuple(labels.shape)}")
    if N * V < 2:
        raise ValueError("rnc_loss: needs at least two feature vectors")
    if temperature <= 0:
        raise ValueError(f"rnc_loss: temperature must be > 0, got {temperature}")
    v = features.transpose(0, 1).reshape(V * N, d).float()  # (M, d), view-major
    y = labels.float().repeat(V)  # (M,)
    M = v.shape[0]
    logits = -torch.cdist(v, v) / temperature  # (M, M) s_ij
    label_diff = (y[:, None] - y[None, :]).abs()  # (M, M) |y_i - y_j|
    not_self = ~torch.eye(M, dtype=torch.bool, device=v.device)
    # Max subtraction per row (the reference code's): the ratio is unchanged, exp() stays finite.
    logits = logits - logits.masked_fill(~not_self, float("-inf")).amax(1, keepdim=True).detach()
    exp = logits.exp() * not_self  # (M, M), 0 on the diagonal
    # denom[i, j] = Σ_k exp(s_ik) [k ≠ i, |y_i - y_k| >= |y_i - y_j| - tol]
    in_set = label_diff[:, None, :] >= label_diff[:, :, None] - tie_tol  # (M, j, k)
    denom = (in_set * exp[:, None, :]).sum(-1)  # (M, M)
    log_prob = logits - denom.clamp_min(torch.finfo(denom.dtype).tiny).log()  # (M, M)
    return -(log_prob * not_self).sum() / (M * (M - 1))
