"""The audio-visual encoder E_av (paper eq. 6, DESIGN.md §1) and its stage-1 regressor.

Per modality: optional AV SoftPerm on the raw frames (training only; the authors' code), length-aware
average pooling of the raw frames to S steps (a step mask marks the
steps that hold real frames), optional BatchNorm on the raw features (SIMS), a scaled linear
projection to D_av, sinusoidal positions, dropout and a pre-norm TransformerEncoder whose keys
ignore padded steps. A "fusion FFW" merges audio ‖ vision channel-wise into Z (B, S, D_av).

Unlike the authors' strided `align` (which averages frames m, m+S, m+2S, ... and reads the zero
padding as data), each step here averages a contiguous window of *real* frames, so padding never
changes Z (a tested invariant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AVEncoderConfig
from ..data.batch import Batch
from .augment import FrameSoftPerm
from .state import count_parameters, load_strict


def length_aware_pool(x: Tensor, lengths: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Average contiguous windows of real frames: (B, L, D) -> (B, S, D) plus a (B, S) step mask.

    Sample b with n_b real frames gets S'_b = min(n_b, S) steps; step k averages frames
    [floor(k n_b / S'_b), floor((k+1) n_b / S'_b)). Steps k >= S'_b are zero and masked out.
    Built as one (B, S, L) weight matrix so the batch is pooled by a single matmul.
    """
    B, L, _ = x.shape
    n = lengths.to(device=x.device, dtype=torch.long).clamp(0, L)  # (B,)
    s_real = n.clamp(max=steps)  # (B,) S'_b
    k = torch.arange(steps, device=x.device)  # (S,)
    denom = s_real.clamp(min=1)[:, None]  # (B, 1); guards n_b = 0
    start = (k[None, :] * n[:, None]) // denom  # (B, S)
    end = ((k[None, :] + 1) * n[:, None]) // denom  # (B, S)
    mask = k[None, :] < s_real[:, None]  # (B, S)
    frame = torch.arange(L, device=x.device)  # (L,)
    inside = (frame[None, None, :] >= start[..., None]) & (frame[None, None, :] < end[..., None])  # (B, S, L)
    inside &= mask[..., None]
    weights = inside.to(x.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return weights @ x, mask  # (B, S, D), (B, S)


def sinusoidal_positions(n_positions: int, dim: int) -> Tensor:
    """Vaswani et al. sinusoidal table (n_positions, dim): [sin | cos] halves, as in fairseq."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angle = torch.arange(n_positions, dtype=torch.float32)[:, None] * freq[None, :]  # (S, half)
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over dim 1 of (B, S, D) counting only steps where mask (B, S) is True -> (B, D)."""
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def last_real_step(x: Tensor, mask: Tensor) -> Tensor:
    """x[b, s_b] for the last step s_b where mask (B, S) is True (step 0 when none) -> (B, D)."""
    S = mask.shape[1]
    steps = torch.arange(S, device=mask.device)[None, :].expand_as(mask)  # (B, S)
    last = torch.where(mask, steps, torch.zeros_like(steps)).max(dim=1).values  # (B,)
    return x[torch.arange(x.shape[0], device=x.device), last]


class ModalityEncoder(nn.Module):
    """One modality: [SoftPerm] -> pool -> [BatchNorm] -> Linear*sqrt(D_av) -> +positions -> dropout -> Transformer."""

    def __init__(self, raw_dim: int, cfg: AVEncoderConfig) -> None:
        super().__init__()
        # Off (p_perm 0) adds no module, so state dicts and RNG draws stay as without the switch.
        sp = cfg.softperm
        self.softperm = FrameSoftPerm(p_perm=sp.p_perm, permutation=sp.permutation) if sp.p_perm > 0 else None
        self.steps = cfg.av_len
        self.batchnorm = nn.BatchNorm1d(raw_dim) if cfg.batchnorm else None
        self.proj = nn.Linear(raw_dim, cfg.d_av, bias=False)
        self.scale = math.sqrt(cfg.d_av)
        self.register_buffer("positions", sinusoidal_positions(cfg.av_len, cfg.d_av), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.d_av,
            nhead=cfg.n_heads,
            dim_feedforward=cfg.ffn_mult * cfg.d_av,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only applies to post-norm layers; off avoids a warning.
        self.transformer = nn.TransformerEncoder(layer, num_layers=cfg.n_layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, L, D_raw), lengths: (B,) -> (B, S, D_av), mask (B, S)
        x = x.float()
        if self.softperm is not None:
            x = self.softperm(x, lengths)  # training only
        pooled, mask = length_aware_pool(x, lengths, self.steps)  # (B, S, D_raw)
        if self.batchnorm is not None:
            # Statistics over real steps only: padding would bias the running mean towards 0.
            normed = torch.zeros_like(pooled)
            normed[mask] = self.batchnorm(pooled[mask])
            pooled = normed
        h = self.proj(pooled) * self.scale + self.positions  # (B, S, D_av)
        h = self.dropout(h)
        # A sample with no real step would make every key masked (softmax of all -inf = NaN):
        # let it attend to step 0; its output is zeroed below anyway.
        key_padding = ~mask
        key_padding[:, 0] &= mask.any(1)
        h = self.transformer(h, src_key_padding_mask=key_padding)
        return h * mask[..., None].to(h.dtype), mask


@dataclass
class AVEncoderOutput:
    z: Tensor  # (B, S, D_av) fused AV sequence, zero at masked steps
    mask: Tensor  # (B, S) bool, True where audio or vision has a real step


class AVEncoder(nn.Module):
    """Z = E_av(X_a, X_v) (eq. 6): two modality encoders and a channel-wise fusion FFW."""

    def __init__(self, audio_dim: int, vision_dim: int, cfg: AVEncoderConfig) -> None:
        super().__init__()
        self.d_av = cfg.d_av
        self.audio = ModalityEncoder(audio_dim, cfg)
        self.vision = ModalityEncoder(vision_dim, cfg)
        self.fusion = nn.Linear(2 * cfg.d_av, cfg.d_av)  # "Fusion FFW": audio ‖ vision -> D_av

    def forward(self, audio: Tensor, audio_lengths: Tensor, vision: Tensor, vision_lengths: Tensor) -> AVEncoderOutput:
        # audio: (B, La, Da), vision: (B, Lv, Dv) -> z: (B, S, D_av)
        h_a, mask_a = self.audio(audio, audio_lengths)
        h_v, mask_v = self.vision(vision, vision_lengths)
        mask = mask_a | mask_v  # (B, S)
        z = self.fusion(torch.cat([h_a, h_v], dim=-1))  # (B, S, D_av)
        return AVEncoderOutput(z=z * mask[..., None].to(z.dtype), mask=mask)

    def encode_batch(self, batch: Batch) -> AVEncoderOutput:
        return self(batch.audio, batch.audio_lengths, batch.vision, batch.vision_lengths)


def labels_usable(labels: Tensor | None) -> bool:
    """Losses are computed only for labelled batches (prediction sets may carry NaN labels)."""
    return labels is not None and bool(torch.isfinite(labels).all())


@dataclass
class AVRegressorOutput:
    y_av: Tensor  # (B,) scalar sentiment from the masked mean of Z
    loss: Tensor | None  # L1 vs the label; None for unlabelled batches
    loss_terms: dict[str, Tensor]  # {"task": L1} (empty when unlabelled)

    @property
    def prediction(self) -> Tensor:
        return self.y_av


class AVRegressor(nn.Module):
    """Stage 1 ("AV init", Table 8): the AV encoder alone plus a scalar head, trained with L1.

    `encoder` is what initialises stage 2 (`load_av_encoder_checkpoint`). `readout`: the head reads
    the masked mean of Z ("mean", ours) or Z's last real step ("last", the authors' BI_ENC, which
    takes the last time step of the fused sequence).
    """

    def __init__(self, *, encoder: AVEncoder, readout: str = "mean") -> None:
        super().__init__()
        if readout not in ("mean", "last"):
            raise ValueError(f"readout={readout!r}: expected 'mean' or 'last'")
        self.encoder = encoder
        self.readout = readout
        self.head = nn.Linear(encoder.d_av, 1)

    def forward(self, batch: Batch) -> AVRegressorOutput:
        enc = self.encoder.encode_batch(batch)  # z: (B, S, D_av)
        pooled = masked_mean(enc.z, enc.mask) if self.readout == "mean" else last_real_step(enc.z, enc.mask)  # (B, D_av)
        y_av = self.head(pooled).squeeze(-1)  # (B,)
        if labels_usable(batch.labels):
            task = F.l1_loss(y_av, batch.labels.to(y_av.dtype))
            return AVRegressorOutput(y_av=y_av, loss=task, loss_terms={"task": task})
        return AVRegressorOutput(y_av=y_av, loss=None, loss_terms={})

    # Same checkpoint/count protocol as DeepMLF, so the one training loop treats both alike.
    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        load_strict(self, state, expected=self.trainable_state_dict(), what="AV regressor")

    def parameter_counts(self) -> dict:
        return count_parameters({"av_encoder": self.encoder, "head": self.head})
