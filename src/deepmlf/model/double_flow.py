"""DeepMLF's double flow: text-missing self-distillation after SDUMC (arXiv 2410.15029, §3).

Per batch the same network runs twice (weights shared, AV memory computed once):
  full flow F:    the real transcript -> frozen LM + MM blocks + fusion tokens (today's DeepMLF);
  missing flow M: n_i "imagined" tokens Ĩ = P(Z) stand in place of the transcript in the same LM.
Ĩ: n_i learned queries attend over the normed AV memory Z (masked), Linear(D_av -> D), each token
rescaled to the RMS of the LM's input embeddings. This is our substitute for SDUMC's simulated text
(WavLM -> a pre-trained speech projector -> Vicuna generating words): it is trained only by the
losses below and it is AV-conditioned, not audio-only (docs/missing-modalities.md).
The optional MIA (modality imagination autoencoder, the paper's eq. for a residual AE; SDUMC's released
forward never calls it) refines the missing flow's text state: x̃_tK = x_tK + Dec(Enc(Tr([x_tK ‖ z̄]))),
last layer zero-initialised, so it is the identity at init.

Losses (each weighted, config `model.double_flow`):
  L = w_full L_DeepMLF(F) + w_missing L_task(y_o^M, y)
      + λ_mkd RMSE(x_tK^M, sg x_tK^F) + λ_query RMSE(x̄_f^M, sg x̄_f^F)     (L_MKD: stop-gradient)
      + λ_rs RMSE(h^M, h^F)                                                  (L_RS: both sides move)
      + λ_rnc RnC([r^F, r^M], y; τ)                                          (L_RNC: the flows are the views)
h: the task head's hidden (after BatchNorm-ReLU); r = MLP(h). At inference the missing flow runs
only for samples whose transcript is empty (`Batch.text_missing`), and gives their y_o.

The task head's BatchNorm (`head_bn`): with "full" (default) only the full flow's batch updates its
running statistics, and in training the missing flow is normalised by the full flow's batch
statistics (detached), so at test time, when both flows read the running statistics, each sees the
normalisation it was trained with. "per_flow" (the first version) normalises each flow by its own
batch and lets both update the running statistics, which then describe neither flow.

Shapes: B batch, n_i imagined tokens, K fusion tokens, S AV steps, D LM width, D_av AV width, H head hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import rmse, rnc_loss, sg_rmse
from .av_encoder import labels_usable

if TYPE_CHECKING:  # pragma: no cover
    from .deepmlf import DeepMLF, DeepMLFOutput


@dataclass(frozen=True)
class DoubleFlowWeights:
    w_full: float = 1.0
    w_missing: float = 1.0
    lambda_mkd: float = 0.1
    lambda_query: float = 0.7
    lambda_rs: float = 0.13
    lambda_rnc: float = 0.0
    rnc_tau: float = 2.0
    task_loss: str = "l1"
    head_bn: str = "full"  # whose batch statistics the task head's BatchNorm uses (module docstring)
    rs_detach: bool = False  # L_RS with sg on the full flow's h (True) or both sides moving (SDUMC)

    @classmethod
    def from_config(cls, df) -> "DoubleFlowWeights":
        """From a `config.DoubleFlowConfig` (model.double_flow)."""
        return cls(w_full=df.w_full, w_missing=df.w_missing, lambda_mkd=df.lambda_mkd, lambda_query=df.lambda_query,
                   lambda_rs=df.lambda_rs, lambda_rnc=df.lambda_rnc, rnc_tau=df.rnc_tau, task_loss=df.task_loss,
                   head_bn=df.head_bn, rs_detach=df.rs_detach)


class ImaginedTokens(nn.Module):
    """Ĩ = rms_e · normalise(Linear(Attn(Q, Z, Z))): (B, S, D_av) AV memory -> (B, n_i, D) input embeddings."""

    def __init__(self, *, d_av: int, d_model: int, n_tokens: int, n_heads: int, embed_rms: float) -> None:
        super().__init__()
        # N(0, 1): the scale of the LayerNormed memory Z they are compared with. At 0.02 the attention
        # over Z is uniform, so all n_i tokens are one and the same token (the projected mean of Z)
        # until the queries grow, which Adam's ~lr-sized steps take hundreds of steps to do.
        self.queries = nn.Parameter(torch.randn(n_tokens, d_av))
        self.attn = nn.MultiheadAttention(d_av, n_heads, batch_first=True)
        self.proj = nn.Linear(d_av, d_model)
        self.embed_rms = float(embed_rms)  # the LM's own embedding scale: imagined tokens look like tokens

    def forward(self, z: Tensor, z_mask: Tensor) -> Tensor:
        B = z.shape[0]
        q = self.queries.expand(B, -1, -1)  # (B, n_i, D_av)
        a, _ = self.attn(q, z, z, key_padding_mask=~z_mask.bool(), need_weights=False)  # (B, n_i, D_av)
        x = self.proj(a)  # (B, n_i, D)
        return x * (self.embed_rms / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())


class MIA(nn.Module):
    """Residual autoencoder on the missing flow's text state: x + Dec(Enc(Tr([x ‖ z̄]))); identity at init."""

    def __init__(self, *, d_model: int, d_av: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.transition = nn.Sequential(nn.Linear(d_model + d_av, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.encoder = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(hidden // 2, hidden), nn.ReLU(), nn.Linear(hidden, d_model))
        nn.init.zeros_(self.decoder[-1].weight)  # zero tail: the residual starts at exactly 0
        nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, x: Tensor, z_bar: Tensor) -> Tensor:  # (B, D), (B, D_av) -> (B, D)
        return x + self.decoder(self.encoder(self.transition(torch.cat([x, z_bar], dim=-1))))


class DoubleFlow(nn.Module):
    """The missing flow's parts (imagined tokens, MIA, RnC projection) and the double-flow losses."""

    def __init__(self, *, imagine: ImaginedTokens, mia: MIA | None, rnc_proj: nn.Module | None,
                 weights: DoubleFlowWeights) -> None:
        super().__init__()
        self.imagine = imagine
        self.mia = mia
        self.rnc_proj = rnc_proj
        self.weights = weights

    def missing_flow(self, model: "DeepMLF", z: Tensor, z_mask: Tensor, z_bar: Tensor,
                     bn_stats: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
        """The text-missing flow: never reads the transcript (input_ids), only the AV memory.
        bn_stats: (mean, var) for the task head's BatchNorm in training (head_bn "full"), or None."""
        tokens = self.imagine(z, z_mask)  # (B, n_i, D)
        ones = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)  # (B, n_i)
        lm_out = model.lm(None, ones, z, z_mask, inputs_embeds=tokens)
        x_tk = lm_out.text_hidden[:, -1]  # (B, D): the last imagined token
        if self.mia is not None:
            x_tk = self.mia(x_tk, z_bar)
        x_f = lm_out.fusion_hidden.mean(1)  # (B, D)
        h, _ = head_hidden(model, torch.cat([x_f, x_tk, z_bar], dim=-1), bn_stats=bn_stats)  # (B, H)
        return {"x_tk": x_tk, "x_f": x_f, "h": h, "y_o": head_out(model, h)}

    def losses(self, model: "DeepMLF", out: "DeepMLFOutput", batch, full: dict[str, Tensor],
               miss: dict[str, Tensor], *, use_lm: bool) -> tuple[Tensor, dict[str, Tensor]]:
        w = self.weights
        base, terms = model.losses(out, batch, use_lm=use_lm)  # L_DeepMLF on the full flow (eq. 14)
        y = batch.labels.to(miss["y_o"].dtype)
        task = F.l1_loss if w.task_loss == "l1" else F.mse_loss
        terms = dict(terms)
        terms["missing"] = task(miss["y_o"], y)
        terms["mkd"] = sg_rmse(miss["x_tk"], full["x_tk"])
        terms["query"] = sg_rmse(miss["x_f"], full["x_f"])
        terms["rs"] = sg_rmse(miss["h"], full["h"]) if w.rs_detach else rmse(miss["h"], full["h"])
        loss = (w.w_full * base + w.w_missing * terms["missing"] + w.lambda_mkd * terms["mkd"]
                + w.lambda_query * terms["query"] + w.lambda_rs * terms["rs"])
        if self.rnc_proj is not None:
            views = torch.stack([self.rnc_proj(full["h"]), self.rnc_proj(miss["h"])], dim=1)  # (B, 2, r)
            terms["rnc"] = rnc_loss(views, y, temperature=w.rnc_tau)
            loss = loss + w.lambda_rnc * terms["rnc"]
        return loss, terms


def head_hidden(model: "DeepMLF", features: Tensor, *,
                bn_stats: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """h: the task head g up to its last Linear (Linear -> BatchNorm -> ReLU), (B, 2D+D_av) -> (B, H),
    and the pre-BatchNorm activations a (B, H). bn_stats (mean, var): normalise by these instead
    (running statistics untouched), as the missing flow does in training under head_bn "full"."""
    linear, bn, act = model.heads.task.net[:3]
    a = linear(features)  # (B, H)
    if bn_stats is None:
        return act(bn(a)), a
    mean, var = bn_stats
    return act(F.batch_norm(a, mean, var, bn.weight, bn.bias, training=False, eps=bn.eps)), a


def head_out(model: "DeepMLF", h: Tensor) -> Tensor:
    return model.heads.task.net[-1](h).squeeze(-1)  # (B,)


def forward_double_flow(model: "DeepMLF", batch, lm_out, z: Tensor, z_mask: Tensor) -> "DeepMLFOutput":
    """DeepMLF.forward when `model.double_flow` is set: the full flow's heads (eq. 12-13, as
    DeepMLF.head_outputs), the missing flow (training, or samples without a transcript), the loss."""
    from .av_encoder import masked_mean
    from .deepmlf import DeepMLFOutput

    flow: DoubleFlow = model.double_flow
    text_h, fusion_h = lm_out.text_hidden, lm_out.fusion_hidden  # (B, T, D), (B, K, D)
    last = (batch.attention_mask.sum(1) - 1).clamp(min=0)  # (B,)
    x_tk = text_h[torch.arange(text_h.shape[0], device=text_h.device), last]  # (B, D)
    x_f = fusion_h.mean(1)  # (B, D)
    z_bar = masked_mean(z, z_mask)  # (B, D_av)
    h, a = head_hidden(model, torch.cat([x_f, x_tk, z_bar], dim=-1))  # (B, H), (B, H)
    full = {"x_tk": x_tk, "x_f": x_f, "h": h}
    use_lm = model.loss_weights.lambda_lm > 0
    out = DeepMLFOutput(
        y_o=head_out(model, h), y_t=model.heads.text(x_tk), y_av=model.heads.av(z_bar),
        y_f=model.heads.fusion(fusion_h), lm_logits=model.lm.lm_logits(text_h) if use_lm else None,
        loss=None, loss_terms={},
    )
    text_missing = getattr(batch, "text_missing", None)
    absent = text_missing is not None and bool(text_missing.any())
    if not (model.training or absent):
        if labels_usable(batch.labels):
            out.loss, out.loss_terms = model.losses(out, batch, use_lm=use_lm)
        return out
    bn_stats = None
    if model.training and flow.weights.head_bn == "full":  # the full batch's statistics, as BatchNorm used them
        a = a.detach()
        bn_stats = (a.mean(0), a.var(0, unbiased=False))
    miss = flow.missing_flow(model, z, z_mask, z_bar, bn_stats=bn_stats)
    out.y_m = miss["y_o"]
    out.states = {"x_tk_full": x_tk, "x_f_full": x_f, "h_full": h,
                  "x_tk_missing": miss["x_tk"], "x_f_missing": miss["x_f"], "h_missing": miss["h"]}
    if absent and not model.training:
        out.y_o = torch.where(text_missing.to(out.y_o.device), miss["y_o"], out.y_o)  # imagined flow
    if labels_usable(batch.labels):
        if model.training:
            out.loss, out.loss_terms = flow.losses(model, out, batch, full, miss, use_lm=use_lm)
        else:
            out.loss, out.loss_terms = model.losses(out, batch, use_lm=use_lm)
    return out
