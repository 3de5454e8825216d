"""Sequence augmentation: SeqAug on the language embeddings (paper §4.5, Table 12) with its two
alternatives (embedding dropout, noise), and the authors' AV SoftPerm on the raw audio/vision frames.

Language augmentation is applied to the text token embeddings, in training only, to a whole batch
with probability `p_apply`. AV SoftPerm (`FrameSoftPerm`, not in the paper; the authors' code) is
the same SeqAug operation on raw frames at every training step. Randomness comes from torch's
global generator, so a seeded run is reproducible.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AugmentKind = Literal["seqaug", "dropout", "noise", "none"]
Permutation = Literal["per_sample", "per_batch"]


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


def permute_all_positions(B: int, T: int, device: torch.device | str | None = None) -> Tensor:
    """One random permutation of all T positions (pads included), shared by the batch: (B, T) long.

    The authors' SeqAug and SoftPerm_Fast draw it this way, so pad embeddings (or zero frames) can
    land on real positions and real content on pads.
    """
    return torch.randperm(T, device=device).expand(B, T)


def seqaug(x: Tensor, mask: Tensor, p_perm: float, *, permutation: Permutation = "per_sample") -> Tensor:
    """SeqAug: X'[b,t,d] = X[b,t,d] if keep[b,d] else X[b,π_b(t),d], P(keep) = 1 - p_perm.

    x: (B, T, D) embeddings, mask: (B, T) bool. The keep mask is per sample and channel and
    constant over time, so a swapped channel carries the permuted sequence (Georgiou et al.).
    permutation: per_sample (π_b permutes sample b's real positions; pads stay) or per_batch (one π
    of all T positions for the whole batch, as the authors' code).
    """
    if permutation == "per_sample":
        perm = permute_real_positions(mask)  # (B, T)
    else:
        perm = permute_all_positions(x.shape[0], x.shape[1], x.device)  # (B, T)
    permuted = x.gather(1, perm[..., None].expand_as(x))  # (B, T, D)
    keep = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) >= p_perm  # (B, 1, D)
    return torch.where(keep, x, permuted)


class EmbeddingAugment(nn.Module):
    """The Table 12 regularisers behind one switch; identity in eval mode or with kind `none`."""

    def __init__(
        self, *, kind: AugmentKind, p_apply: float, p_perm: float, dropout: float, noise_std: float,
        permutation: Permutation = "per_sample",
    ) -> None:
        super().__init__()
        self.kind = kind
        self.p_apply = p_apply
        self.p_perm = p_perm
        self.permutation = permutation
        self.dropout = dropout
        self.noise_std = noise_std

    def extra_repr(self) -> str:
        return f"kind={self.kind}, p_apply={self.p_apply}, p_perm={self.p_perm}, permutation={self.permutation}"

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, T, D) text embeddings, mask: (B, T) bool (True = real token)
        if not self.training or self.kind == "none" or self.p_apply <= 0.0:
            return x
        if self.p_apply < 1.0 and float(torch.rand(())) >= self.p_apply:
            return x
        if self.kind == "seqaug":
            return seqaug(x, mask, self.p_perm, permutation=self.permutation)
        if self.kind == "dropout":
            return F.dropout(x, p=self.dropout, training=True)
        if self.kind == "noise":
            # Noise relative to the embedding scale, which differs a lot between LMs.
            real = x[mask]
            rms = real.float().pow(2).mean().sqrt() if real.numel() else x.new_tensor(1.0)
            return x + torch.randn_like(x) * (self.noise_std * rms).to(x.dtype)
        raise ValueError(f"unknown augmentation kind {self.kind!r}")  # config validation prevents this


class FrameSoftPerm(nn.Module):
    """The authors' AV SoftPerm: SeqAug on raw frames (B, L, D) in training, at every step.

    per_sample keeps each sample's real frames (the first `lengths[b]`) among themselves and leaves
    the padding untouched, so the length-aware pooling still averages real frames only; per_batch
    is the authors' one permutation of all L frames. Identity in eval mode or with p_perm = 0.
    """

    def __init__(self, *, p_perm: float, permutation: Permutation = "per_sample") -> None:
        super().__init__()
        self.p_perm = p_perm
        self.permutation = permutation

    def extra_repr(self) -> str:
        return f"p_perm={self.p_perm}, permutation={self.permutation}"

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        # x: (B, L, D) raw frames, lengths: (B,) real frames per sample
        if not self.training or self.p_perm <= 0.0:
            return x
        L = x.shape[1]
        mask = torch.arange(L, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, L)
        return seqaug(x, mask, self.p_perm, permutation=self.permutation)
