"""Language-embedding augmentation (paper §4.5, Table 12): SeqAug, embedding dropout, noise.

Applied to the text token embeddings, in training only, to a whole batch with probability
`p_apply`. Randomness comes from torch's global generator, so a seeded run is reproducible.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AugmentKind = Literal["seqaug", "dropout", "noise", "none"]


def permute_real_positions(mask: Tensor) -> Tensor:
    """A random permutation of each sample's real positions; pads map to themselves.

    mask: (B, T) bool, True = real token (any padding side) -> index (B, T) long, π[b, t].
    Batched: sorting random keys lists the real positions of a sample in random order, sorting
    their indices lists them in order; pads sort last in both, in order, so they stay put.
    """
    B, T = mask.shape
    t = torch.arange(T, device=mask.device).expand(B, T)
    pad_rank = (~mask).long() * T + t  # reals first (in order), then pads (in order)
    in_order = pad_rank.argsort(dim=1)  # (B, T) slot j -> j-th real position
    shuffled = torch.where(mask, torch.rand(B, T, device=mask.device), 2.0 + t.float() / T).argsort(dim=1)
    perm = torch.empty_like(in_order)
    return perm.scatter_(1, in_order, shuffled)  # π[b, in_order[b, j]] = shuffled[b, j]


def seqaug(x: Tensor, mask: Tensor, p_perm: float) -> Tensor:
    """SeqAug: X'[b,t,d] = X[b,t,d] if keep[b,d] else X[b,π_b(t),d], P(keep) = 1 - p_perm.

    x: (B, T, D) embeddings, mask: (B, T) bool. The keep mask is per sample and channel and
    constant over time, so a swapped channel carries the permuted sequence (Georgiou et al.).
    """
    perm = permute_real_positions(mask)  # (B, T)
    permuted = x.gather(1, perm[..., None].expand_as(x))  # (B, T, D)
    keep = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) >= p_perm  # (B, 1, D)
    return torch.where(keep, x, permuted)


class EmbeddingAugment(nn.Module):
    """The Table 12 regularisers behind one switch; identity in eval mode or with kind `none`."""

    def __init__(
        self, *, kind: AugmentKind, p_apply: float, p_perm: float, dropout: float, noise_std: float
    ) -> None:
        super().__init__()
        self.kind = kind
        self.p_apply = p_apply
        self.p_perm = p_perm
        self.dropout = dropout
        self.noise_std = noise_std

    def extra_repr(self) -> str:
        return f"kind={self.kind}, p_apply={self.p_apply}, p_perm={self.p_perm}"

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, D) text embeddings, mask: (B, T) bool (True = real token)
        if not self.training or self.kind == "none" or self.p_apply <= 0.0:
            return x
        if self.p_apply < 1.0 and float(torch.rand(())) >= self.p_apply:
            return x
        if self.kind == "seqaug":
            return seqaug(x, mask, self.p_perm)
        if self.kind == "dropout":
            return F.dropout(x, p=self.dropout, training=True)
        if self.kind == "noise":
            # Noise relative to the embedding scale, which differs a lot between LMs.
            real = x[mask]
            rms = real.float().pow(2).mean().sqrt() if real.numel() else x.new_tensor(1.0)
            return x + torch.randn_like(x) * (self.noise_std * rms).to(x.dtype)
        raise ValueError(f"unknown augmentation kind {self.kind!r}")  # config validation prevents this
