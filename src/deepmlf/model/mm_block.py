"""The MM block (paper §4.3.3, eq. 8-11): gated cross-attention to Z, then a gated FFW.

    X_f <- X_f + g1 · GCA(q=Norm1(X_f), kv=Z)        (eq. 9; who queries: Table 10)
    H   <- H + g2 · FFW(Norm2(H)),  H = [X_t ‖ X_f]   (eq. 10-11; token-wise, text never sees AV)

With a rationale suffix (model.rationale.readout: fusion) the block also owns a read-out, the same
gated cross-attention with the fusion tokens' states of this layer as keys/values and the suffix
(prompt + rationale) tokens as queries:

    X_s <- X_s + g_r · GCA_r(q=Norm_q(X_s), kv=Norm_kv(X_f))

so the generated text reads AV through the fusion tokens only (never the AV memory itself).

Shapes: B batch, T text tokens, K fusion tokens, S AV steps, D LM width, D_av AV width, L suffix tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .packing import RealTokens, residual_update

GateKind = Literal["sigmoid", "tanh", "none"]
QueryKind = Literal["fusion", "text+fusion", "text"]
FFWTokens = Literal["all", "fusion"]


class Gate(nn.Module):
    """A scalar gate g on a residual branch (Table 13): sigmoid(a), tanh(a), or the constant 1."""

    def __init__(self, *, kind: GateKind, init: float = 0.0) -> None:
        super().__init__()
        self.kind = kind
        # `none` has no parameter at all: nothing to train, nothing to decay.
        self.a = nn.Parameter(torch.tensor(float(init))) if kind != "none" else None

    def value(self) -> Tensor:
        if self.kind == "sigmoid":
            return torch.sigmoid(self.a)
        if self.kind == "tanh":
            return torch.tanh(self.a)
        return torch.ones(())

    def forward(self, x: Tensor) -> Tensor:
        return x if self.a is None else self.value().to(x.dtype) * x

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


class GatedCrossAttention(nn.Module):
    """Multi-head cross-attention from LM tokens (D) to the AV memory (D_av), no biases.

    Scores scale by 1/sqrt(head_dim) (SDPA's default; the authors used 1/sqrt(D)) and padded
    AV steps are masked out (the authors attended to padding).
    """

    def __init__(self, *, d_model: int, d_av: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.n_heads={n_heads} must divide the LM width {d_model}")
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_av, d_model, bias=False)
        self.v_proj = nn.Linear(d_av, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        self.attn_dropout = dropout
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, z: Tensor, z_mask: Tensor) -> Tensor:
        # x: (B, Q, D) queries, z: (B, S, D_av), z_mask: (B, S) bool -> (B, Q, D)
        B, Q, D = x.shape
        S = z.shape[1]
        hd = D // self.n_heads
        q = self.q_proj(x).view(B, Q, self.n_heads, hd).transpose(1, 2)  # (B, h, Q, hd)
        k = self.k_proj(z).view(B, S, self.n_heads, hd).transpose(1, 2)  # (B, h, S, hd)
        v = self.v_proj(z).view(B, S, self.n_heads, hd).transpose(1, 2)  # (B, h, S, hd)
        attn_mask = z_mask[:, None, None, :]  # (B, 1, 1, S), True = attend
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, h, Q, hd)
        y = y.transpose(1, 2).reshape(B, Q, D)
        return self.out_dropout(self.o_proj(y))


class FusionReadout(nn.Module):
    """The rationale suffix's read-out of the fusion tokens (model.rationale.readout: fusion).

    The frozen attention of the deep layers puts only 2-5 % of the suffix's weight on the fusion
    tokens and its value/output projections are the LM's own, so the written rationale barely
    moved with AV (benchmarks/RESULTS.md, "Rationale demo"). This is a trainable path from the
    fusion states into the suffix, after the MM blocks' own GCA (eq. 9) with the fusion tokens'
    states of the layer as the memory; both sides are normed, as the stream is hundreds of times
    the scale of a fresh projection (docs/deep-fusion.md), and `scale` plays gca_scale's part.
    """

    def __init__(self, *, attn: GatedCrossAttention, norm_q: nn.Module, norm_kv: nn.Module, gate: Gate,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.attn = attn
        self.norm_q = norm_q
        self.norm_kv = norm_kv
        self.gate = gate
        self.scale = float(scale)

    def forward(self, x_s: Tensor, x_f: Tensor) -> Tensor:
        # x_s: (B, L, D) suffix states, x_f: (B, K, D) the fusion tokens' states -> (B, L, D)
        mask = torch.ones(x_f.shape[:2], dtype=torch.bool, device=x_f.device)  # fusion tokens are never padding
        y = self.gate(self.attn(self.norm_q(x_s), self.norm_kv(x_f), mask))
        return x_s + (y * self.scale if self.scale != 1.0 else y)


class MMBlock(nn.Module):
    """Runs after one frozen decoder layer on H = [X_t ‖ X_f]; takes already-built parts."""

    def __init__(
        self,
        *,
        attn: GatedCrossAttention,
        norm_attn: nn.Module,
        gate_attn: Gate,
        ffw: nn.Module | None,
        norm_ffw: nn.Module | None,
        gate_ffw: Gate | None,
        query: QueryKind = "fusion",
        gca_scale: float = 1.0,
        ffw_tokens: FFWTokens = "all",
        readout: FusionReadout | None = None,
    ) -> None:
        super().__init__()
        if (ffw is None) != (norm_ffw is None) or (ffw is None) != (gate_ffw is None):
            raise ValueError("ffw, norm_ffw and gate_ffw are given together or not at all")
        self.attn = attn
        self.norm_attn = norm_attn
        self.gate_attn = gate_attn
        self.ffw = ffw
        self.norm_ffw = norm_ffw
        self.gate_ffw = gate_ffw
        self.query = query
        # A constant on the cross-attention branch (1 = eq. 9). Deep in a pretrained LM the
        # residual stream is hundreds of times larger than a fresh GCA output (SmolLM2-135M after
        # layer 25: RMS ~250 on text, ~550 on fusion tokens, vs ~0.1; docs/deep-fusion.md), so
        # the AV memory is a rounding error of the stream until the weights grow by that factor,
        # which Adam's ~lr-per-step updates cannot do in a few hundred steps.
        self.gca_scale = float(gca_scale)
        # all (eq. 11): the FFW acts on text and fusion tokens. fusion: on the fusion tokens only,
        # so the text tokens stay the frozen LM's own states at every layer.
        self.ffw_tokens = ffw_tokens
        # model.rationale.readout: fusion (None otherwise: no parameters, the state dict as before).
        self.readout = readout

    def _gca(self, x: Tensor, z: Tensor, z_mask: Tensor) -> Tensor:
        y = self.gate_attn(self.attn(self.norm_attn(x), z, z_mask))
        return y * self.gca_scale if self.gca_scale != 1.0 else y

    def forward(self, h: Tensor, z: Tensor, z_mask: Tensor, *, n_text: int, real: RealTokens | None = None) -> Tensor:
        # h: (B, T+K, D) with T = n_text, z: (B, S, D_av), z_mask: (B, S) -> (B, T+K, D)
        # real: h's real positions (perf.pack_tokens): the FFW then runs on those only.
        if self.query == "fusion":
            x_t, x_f = h[:, :n_text], h[:, n_text:]  # (B, T, D), (B, K, D)
            x_f = x_f + self._gca(x_f, z, z_mask)  # eq. 9
            h = torch.cat([x_t, x_f], dim=1)  # eq. 10
        elif self.query == "text":
            x_t, x_f = h[:, :n_text], h[:, n_text:]
            x_t = x_t + self._gca(x_t, z, z_mask)
            h = torch.cat([x_t, x_f], dim=1)
        else:  # "text+fusion": every token queries the AV memory
            h = h + self._gca(h, z, z_mask)
        if self.ffw is not None:
            if self.ffw_tokens == "fusion":
                fusion_real = real.slice(n_text) if real is not None else None
                h = torch.cat([h[:, :n_text], self.ffw_only(h[:, n_text:], fusion_real)], dim=1)  # fusion tokens only
            else:
                h = self.ffw_only(h, real)  # eq. 11, text and fusion tokens
        return h

    def ffw_only(self, h: Tensor, real: RealTokens | None = None) -> Tensor:
        """The gated FFW alone on every token of h (B, N, D) (eq. 11 without the cross-attention): for
        the rationale suffix (model.rationale.suffix_ffw), token-wise, so it never reads the AV memory.
        real: only those positions are updated (perf.pack_tokens; pads keep h)."""
        if self.ffw is None:
            return h
        return residual_update(lambda x: self.gate_ffw(self.ffw(self.norm_ffw(x))), h, real)

    def gate_values(self) -> tuple[float, float | None]:
        """(g1, g2) as Python floats; g2 is None when the block has no FFW."""
        g1 = float(self.gate_attn.value().detach())
        g2 = float(self.gate_ffw.value().detach()) if self.gate_ffw is not None else None
        return g1, g2
