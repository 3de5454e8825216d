"""DeepMLF (paper §4): AV encoder -> multimodal LM with MM blocks -> heads, and the losses.

Features are read after the LM's final norm (DESIGN.md §1):
    x_tK = last real text token, x̄_f = mean of the fusion tokens, z̄ = masked mean of Norm(Z)
    y_o = g([x̄_f ‖ x_tK ‖ z̄]),  y_t = W_t x_tK,  y_av = W_av z̄,  y_f = W_f X_f   (eq. 12-13)
    L = L1(y_o) + λ_f L1(y_f) + λ_av L1(y_av) + λ_t L1(y_t) + λ_LM CE          (eq. 13-14)

Shapes: B batch, T text tokens, K fusion tokens, S AV steps, D LM width, D_av AV width, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batch import Batch
from .av_encoder import AVEncoder, labels_usable, masked_mean
from .heads import DeepMLFHeads
from .multimodal_lm import MultimodalLM
from .state import count_parameters, load_strict, state_without


@dataclass(frozen=True)
class LossWeights:
    """λ of eq. 13-14; the task loss L1(y_o) always has weight 1."""

    lambda_f: float = 1.0
    lambda_av: float = 1.0
    lambda_t: float = 1.0
    lambda_lm: float = 1.0


@dataclass
class DeepMLFOutput:
    y_o: Tensor  # (B,) task head, the prediction
    y_t: Tensor  # (B,) text head on x_tK (AV-free)
    y_av: Tensor  # (B,) AV head on z̄ (text-free)
    y_f: Tensor  # (B, K) fusion head on each fusion token
    lm_logits: Tensor | None  # (B, T, V) next-token logits on the text positions; None when λ_LM = 0 (not computed)
    loss: Tensor | None  # eq. 14 total; None for unlabelled batches
    loss_terms: dict[str, Tensor]  # "task", "f", "av", "t", "lm" (unweighted; empty when unlabelled)
    # model.double_flow only (deepmlf.model.double_flow), when the missing flow ran: its prediction
    # (B,) and the states the distillation terms compare.
    y_m: Tensor | None = None
    states: dict[str, Tensor] | None = None

    @property
    def prediction(self) -> Tensor:
        return self.y_o


def next_token_targets(input_ids: Tensor, attention_mask: Tensor, eos_token_id: int) -> Tensor:
    """(B, T) targets for the LM loss: token t predicts t+1, the last real token predicts EOS,
    pads are ignored (-100)."""
    mask = attention_mask.bool()
    targets = torch.roll(input_ids, shifts=-1, dims=1)
    last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
    targets[torch.arange(input_ids.shape[0], device=input_ids.device), last] = eos_token_id
    return targets.masked_fill(~mask, -100)


class DeepMLF(nn.Module):
    """The composition; takes already-built parts (see `deepmlf.model.build.build_model`)."""

    def __init__(
        self,
        *,
        lm: MultimodalLM,
        av_encoder: AVEncoder,
        av_norm: nn.LayerNorm,
        heads: DeepMLFHeads,
        loss_weights: LossWeights,
        eos_token_id: int,
        freeze_av_encoder: bool = False,
        double_flow: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.av_encoder = av_encoder
        self.av_norm = av_norm  # one LayerNorm(D_av) on Z shared by every MM block
        self.heads = heads
        self.loss_weights = loss_weights
        self.eos_token_id = eos_token_id
        self.lm_loss_chunk = 0  # perf.lm_loss_chunk (set by the builder): 0 = full logits
        self.double_flow = double_flow  # model.double_flow: the text-missing flow and its losses, or None
        # Table 8 `pretrain_freeze`: decided here, once, by module; train() keeps it in eval.
        self.av_encoder_frozen = freeze_av_encoder
        if freeze_av_encoder:
            self.av_encoder.requires_grad_(False)
        self.train(True)

    def train(self, mode: bool = True) -> "DeepMLF":
        super().train(mode)  # MultimodalLM.train keeps the backbone in eval
        if self.av_encoder_frozen:
            self.av_encoder.eval()  # frozen means frozen: no dropout, fixed BatchNorm statistics
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch) -> DeepMLFOutput:
        enc = self.av_encoder.encode_batch(batch)  # z: (B, S, D_av), mask: (B, S)
        z = self.av_norm(enc.z)  # (B, S, D_av)
        lm_out = self.lm(batch.input_ids, batch.attention_mask, z, enc.mask)
        if self.double_flow is not None:  # model.double_flow: the text-missing flow too
            from .double_flow import forward_double_flow

            return forward_double_flow(self, batch, lm_out, z, enc.mask)
        chunked = bool(self.lm_loss_chunk)
        out = self.head_outputs(batch, lm_out, z, enc.mask, chunked=chunked)
        if labels_usable(batch.labels):
            use_lm = out.lm_logits is not None or (chunked and self.loss_weights.lambda_lm > 0)
            out.loss, out.loss_terms = self.losses(out, batch, use_lm=use_lm, text_hidden=lm_out.text_hidden)
        return out

    def head_outputs(self, batch: Batch, lm_out, z: Tensor, z_mask: Tensor, *, chunked: bool = False) -> DeepMLFOutput:
        """Eq. 12-13 heads on the LM's outputs (shared with the rationale model); no loss.
        chunked: leave the LM logits to `losses` (perf.lm_loss_chunk), returning lm_logits=None."""
        text_h, fusion_h = lm_out.text_hidden, lm_out.fusion_hidden  # (B, T, D), (B, K, D)
        B = text_h.shape[0]
        last = (batch.attention_mask.sum(1) - 1).clamp(min=0)  # (B,) index of the last real token
        x_tk = text_h[torch.arange(B, device=text_h.device), last]  # (B, D)
        x_f = fusion_h.mean(1)  # (B, D)
        z_bar = masked_mean(z, z_mask)  # (B, D_av)
        y_o = self.heads.task(torch.cat([x_f, x_tk, z_bar], dim=-1))  # (B,), eq. 12
        y_t = self.heads.text(x_tk)  # (B,)
        y_av = self.heads.av(z_bar)  # (B,)
        y_f = self.heads.fusion(fusion_h)  # (B, K)
        # λ_LM = 0: the vocabulary projection (B·T·D·V, the costliest head) is not computed at all.
        use_lm = self.loss_weights.lambda_lm > 0
        # perf.lm_loss_chunk (`chunked`): the loss is computed in chunks over real positions (in
        # `losses`) and no logits are returned. Under perf.dynamic_padding T is the longest transcript.
        lm_logits = self.lm.lm_logits(text_h) if use_lm and not chunked else None  # (B, T, V)
        return DeepMLFOutput(y_o=y_o, y_t=y_t, y_av=y_av, y_f=y_f, lm_logits=lm_logits, loss=None, loss_terms={})

    def losses(self, out: DeepMLFOutput, batch: Batch, *, use_lm: bool,
               text_hidden: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 13-14. The LM term is skipped (0) when λ_LM = 0: it is the costliest one."""
        y = batch.labels.to(out.y_o.dtype)  # (B,)
        terms = {
            "task": F.l1_loss(out.y_o, y),
            "f": F.l1_loss(out.y_f, y[:, None].expand_as(out.y_f)),  # mean over tokens and samples
            "av": F.l1_loss(out.y_av, y),
            "t": F.l1_loss(out.y_t, y),
        }
        if use_lm:
            targets = next_token_targets(batch.input_ids, batch.attention_mask, self.eos_token_id)  # (B, T)
            if out.lm_logits is None:  # perf.lm_loss_chunk
                terms["lm"] = self.lm.lm_loss_chunked(text_hidden, targets[:, : text_hidden.shape[1]],
                                                      self.lm_loss_chunk)
            else:
                # Under dynamic padding the logits stop at the longest transcript: the targets
                # behind it are all pads (-100).
                targets = targets[:, : out.lm_logits.shape[1]]
                terms["lm"] = F.cross_entropy(out.lm_logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        else:
            terms["lm"] = out.y_o.new_zeros(())
        w = self.loss_weights
        loss = (
            terms["task"] + w.lambda_f * terms["f"] + w.lambda_av * terms["av"] + w.lambda_t * terms["t"]
            + w.lambda_lm * terms["lm"]
        )
        return loss, terms

    # ------------------------------------------------------------------ checkpoints & introspection
    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Everything but the frozen backbone: MM blocks (LoRA bases included), fusion tokens,
        AV encoder, AV norm, heads, BatchNorm statistics."""
        return state_without(self, frozenset(id(t) for t in self.lm.frozen_tensors()))

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Strict: missing or unexpected keys, or a shape mismatch, raise CheckpointError."""
        load_strict(self, state, expected=self.trainable_state_dict(), what="DeepMLF")

    def gate_values(self) -> list[dict]:
        """Per MM layer: {"layer": i, "gate_attn": g1, "gate_ffw": g2 (None without FFW)}."""
        out = []
        for i, block in self.lm.mm_blocks():
            g1, g2 = block.gate_values()
            out.append({"layer": i, "gate_attn": g1, "gate_ffw": g2})
        return out

    def lr_parts(self) -> dict[str, list[nn.Parameter]]:
        """Named parts for `train.lr_parts` (the AV encoder has its own lr, `train.lr_av`)."""
        blocks = [b for _, b in self.lm.mm_blocks()]
        gates = [p for b in blocks for g in (b.gate_attn, b.gate_ffw) if g is not None for p in g.parameters()]
        norms = [p for b in blocks for n in (b.norm_attn, b.norm_ffw) if n is not None for p in n.parameters()]
        readouts = [b.readout for b in blocks if b.readout is not None]  # model.rationale.readout: fusion
        gates += [p for r in readouts for p in r.gate.parameters()]  # its gate moves with the others
        return {
            "gates": gates,
            "gca": [p for b in blocks for p in b.attn.parameters()],
            # the suffix's read-out of the fusion tokens: its attention and norms (empty without it)
            "readout": [p for r in readouts for m in (r.attn, r.norm_q, r.norm_kv) for p in m.parameters()],
            "ffw": [p for b in blocks if b.ffw is not None for p in b.ffw.parameters()],
            "norms": norms,
            "fusion_tokens": [self.lm.fusion_tokens],
            "heads": list(self.heads.parameters()),
            # model.double_flow: the imagined tokens, MIA and the RnC projection (empty without it)
            "double_flow": list(self.double_flow.parameters()) if self.double_flow is not None else [],
        }

    def parameter_counts(self) -> dict:
        """{"trainable", "total", "by_module": {name: {"trainable", "total"}}}."""
        return count_parameters(
            {
                "backbone": self.lm.backbone_parameters(),
                "mm_blocks": self.lm.mm_parameters(),
                "fusion_tokens": [self.lm.fusion_tokens],
                "av_encoder": self.av_encoder,
                "av_norm": self.av_norm,
                "heads": self.heads,
                **({"double_flow": self.double_flow} if self.double_flow is not None else {}),
            }
        )
