"""UMCA (SDUMC, arXiv 2410.15029 §3.2): unified modality cross-attention, a second MSA fusion model.

Text is read from a frozen LM as per-token states (final norm, no gradients), cached per transcript:
the LM is frozen and never augmented here, so a transcript's states never change. Audio and vision
are the MMSA frame features. Per modality m ∈ {a, t, v} (d = model.umca.d):
  X_m = P_m(frames)                                        (B, L_m, d)
  FRA2UTT:  α = softmax_L(0.3 · tanh(W_m X_m) c_m),  h_m = MLP(Σ_L α X_m)    (masked over real frames)
  w = fc(MLP([h_a ‖ h_t ‖ h_v])) ∈ R³  (no softmax, as SDUMC)
  seven multi-view queries Q = {Σ w h, w_a h_a + w_t h_t, w_t h_t + w_v h_v, w_a h_a + w_v h_v, h_a, h_t, h_v},
      each through its own MLP                               (B, 7, d)
  UMCA:  U_m = MLP(softmax_L(0.3 · (W^q_m Q)(tanh(W^k_m X_m))ᵀ) X_m)     (B, 7, d_out): shared queries,
      modality-specific keys; values are the frames themselves
  gathering: G = Σ_m w_m U_m;  β = softmax_7(fc(MLP(G)));  f = Σ_7 β G     (B, d_out)
  ŷ = Linear(f)
Loss: L1(ŷ, y). With `model.double_flow.enabled`, SDUMC's double flow: the missing flow replaces the
text frames X_t by n_i imagined frames (learned queries attending over [X_a ; X_v]), optional MIA on
h_t, and L = w_full L1(ŷ^F) + w_missing L(ŷ^M) + λ_mkd RMSE(h_t^M, sg h_t^F) + λ_query RMSE(c_t^M, sg c_t^F)
+ λ_rs RMSE(f^M, f^F) + λ_rnc RnC([r^F, r^M], y), c_t = the text UMCA output pooled over views.

Shapes: B batch, T tokens, L_m frames, D LM width, d model width, 7 views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.adapter import Backbone
from ..data.batch import Batch
from ..losses import rmse, rnc_loss, sg_rmse
from .av_encoder import labels_usable
from .double_flow import MIA, DoubleFlowWeights
from .prefix_cache import BoundedCache, tensor_bytes
from .registry import Arch, register_arch
from .state import count_parameters, load_strict, state_without

SCALE = 0.3  # SDUMC's attention temperature on both FRA2UTT and UMCA scores
N_VIEWS = 7
MODS = ("a", "t", "v")


@dataclass
class UMCAOutput:
    y_o: Tensor  # (B,) the prediction
    loss: Tensor | None
    loss_terms: dict[str, Tensor]
    y_m: Tensor | None = None  # (B,) the text-missing flow's prediction (double flow)
    states: dict[str, Tensor] | None = None  # what the distillation terms compare (double flow)

    @property
    def prediction(self) -> Tensor:
        return self.y_o


def _mlp(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout))


def _frame_mask(lengths: Tensor, length: int) -> Tensor:
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]  # (B, L) True = real


class Fra2Utt(nn.Module):
    """Attention pooling over real frames: α = softmax(0.3 · tanh(W X) c), then MLP."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.w = nn.Linear(d, d)
        self.context = nn.Parameter(torch.randn(d) * 0.02)
        self.mlp = _mlp(d, d, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # (B, L, d), (B, L) -> (B, d)
        score = SCALE * torch.tanh(self.w(x)) @ self.context  # (B, L)
        alpha = score.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.mlp((alpha[..., None] * x).sum(1))


class ModalityCrossAttention(nn.Module):
    """Shared queries, this modality's keys (tanh(W^k X)) and frames as values."""

    def __init__(self, d: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.out = _mlp(d, d_out, dropout)

    def forward(self, queries: Tensor, x: Tensor, mask: Tensor) -> Tensor:  # (B, 7, d), (B, L, d) -> (B, 7, d_out)
        score = SCALE * self.q(queries) @ torch.tanh(self.k(x)).transpose(1, 2)  # (B, 7, L)
        attn = score.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        return self.out(attn @ x)


class UMCA(nn.Module):
    def __init__(self, *, backbone: Backbone, audio_dim: int, vision_dim: int, d: int, d_out: int, dropout: float,
                 double_flow: DoubleFlowWeights | None = None, imagined_tokens: int = 8, mia: bool = False,
                 rnc_dim: int = 64, text_cache_bytes: int = 2**30) -> None:
        super().__init__()
        backbone.freeze()
        self.backbone = backbone  # accessors only (not registered: it is frozen and cached)
        self.backbone_model = backbone.model.eval()
        self.proj = nn.ModuleDict({"a": nn.Linear(audio_dim, d), "t": nn.Linear(backbone.hidden_size, d),
                                   "v": nn.Linear(vision_dim, d)})
        self.pool = nn.ModuleDict({m: Fra2Utt(d, dropout) for m in MODS})
        self.weights_mlp = nn.Sequential(_mlp(3 * d, d, dropout), nn.Linear(d, 3))
        self.view_mlps = nn.ModuleList([_mlp(d, d, dropout) for _ in range(N_VIEWS)])
        self.cross = nn.ModuleDict({m: ModalityCrossAttention(d, d_out, dropout) for m in MODS})
        self.gather = nn.Sequential(_mlp(d_out, d_out, dropout), nn.Linear(d_out, 1))
        self.head = nn.Linear(d_out, 1)
        self.flow = double_flow
        if double_flow is not None:  # the missing flow's parts, built last
            self.imagined = nn.Parameter(torch.randn(imagined_tokens, d) * 0.02)
            self.imagine_attn = nn.MultiheadAttention(d, 1, batch_first=True)
            self.mia = MIA(d_model=d, d_av=2 * d, hidden=2 * d, dropout=dropout) if mia else None
            self.rnc_proj = (nn.Sequential(nn.Linear(d_out, rnc_dim), nn.ReLU(), nn.Linear(rnc_dim, rnc_dim))
                             if double_flow.lambda_rnc > 0 else None)
        # Per-transcript text states, bounded (perf.prefix_cache_mb): past the budget, new transcripts
        # are recomputed each time instead of growing memory with the corpus.
        self._cache = BoundedCache(text_cache_bytes, size=tensor_bytes)

    def train(self, mode: bool = True) -> "UMCA":
        super().train(mode)
        self.backbone_model.eval()
        return self

    # ------------------------------------------------------------------ text features (frozen, cached)
    @torch.no_grad()
    def text_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, D) float32 final-normed LM states, zero on padding; cached per transcript."""
        B, T = input_ids.shape
        keys = [tuple(ids[m.bool()].tolist()) for ids, m in zip(input_ids.cpu(), attention_mask.cpu())]
        found = [self._cache.get(k) for k in keys]
        todo = [i for i, e in enumerate(found) if e is None]
        if todo:
            hidden = self.backbone_model.base_model(input_ids=input_ids[todo], attention_mask=attention_mask[todo],
                                                    use_cache=False).last_hidden_state.float()  # (b, T, D)
            for j, i in enumerate(todo):
                found[i] = hidden[j, : len(keys[i])].cpu()
                self._cache.admit(keys[i], found[i].clone())
        out = torch.zeros(B, T, self.backbone.hidden_size, device=input_ids.device)
        for i, k in enumerate(keys):
            out[i, : len(k)] = found[i].to(out.device)
        return out

    # ------------------------------------------------------------------ one flow
    def fuse(self, x: dict[str, Tensor], mask: dict[str, Tensor], *, z_bar_for_mia: bool = False) -> dict[str, Tensor]:
        """x[m]: (B, L_m, d) projected frames, mask[m]: (B, L_m) -> f (B, d_out), ŷ, h_t, c_t."""
        h = {m: self.pool[m](x[m], mask[m]) for m in MODS}  # (B, d) each
        if z_bar_for_mia and self.mia is not None:
            h["t"] = self.mia(h["t"], torch.cat([h["a"], h["v"]], dim=-1))
        w = self.weights_mlp(torch.cat([h["a"], h["t"], h["v"]], dim=-1))  # (B, 3)
        wa, wt, wv = (w[:, i:i + 1] * h[m] for i, m in enumerate(MODS))
        views = [wa + wt + wv, wa + wt, wt + wv, wa + wv, h["a"], h["t"], h["v"]]
        q = torch.stack([mlp(v) for mlp, v in zip(self.view_mlps, views)], dim=1)  # (B, 7, d)
        u = {m: self.cross[m](q, x[m], mask[m]) for m in MODS}  # (B, 7, d_out) each
        g = sum(w[:, i, None, None] * u[m] for i, m in enumerate(MODS))  # (B, 7, d_out)
        beta = self.gather(g).softmax(1)  # (B, 7, 1)
        f = (beta * g).sum(1)  # (B, d_out)
        return {"f": f, "y": self.head(f).squeeze(-1), "h_t": h["t"], "c_t": u["t"].mean(1)}

    def forward(self, batch: Batch) -> UMCAOutput:
        text = self.text_states(batch.input_ids, batch.attention_mask)  # (B, T, D)
        x = {"a": self.proj["a"](batch.audio.float()), "t": self.proj["t"](text), "v": self.proj["v"](batch.vision.float())}
        mask = {"a": _frame_mask(batch.audio_lengths, batch.audio.shape[1]), "t": batch.attention_mask.bool(),
                "v": _frame_mask(batch.vision_lengths, batch.vision.shape[1])}
        full = self.fuse(x, mask)
        out = UMCAOutput(y_o=full["y"], loss=None, loss_terms={})
        text_missing = getattr(batch, "text_missing", None)
        absent = text_missing is not None and bool(text_missing.any())
        miss = None
        if self.flow is not None and (self.training or absent):
            miss = self.fuse({**x, "t": self._imagine(x, mask)},
                             {**mask, "t": mask["a"].new_ones(len(batch), self.imagined.shape[0])}, z_bar_for_mia=True)
            out.y_m = miss["y"]
            out.states = {**{f"{k}_full": v for k, v in full.items()}, **{f"{k}_missing": v for k, v in miss.items()}}
            if absent and not self.training:
                out.y_o = torch.where(text_missing.to(out.y_o.device), miss["y"], full["y"])
        if labels_usable(batch.labels):
            y = batch.labels.to(full["y"].dtype)
            task = F.l1_loss(out.y_o, y)
            out.loss_terms = {"task": task}
            out.loss = task
            if miss is not None and self.training:
                out.loss, out.loss_terms = self._double_flow_loss(task, full, miss, y)
        return out

    def _imagine(self, x: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        """n_i imagined text frames (B, n_i, d): learned queries over the audio and vision frames."""
        mem = torch.cat([x["a"], x["v"]], dim=1)  # (B, La+Lv, d)
        mem_mask = torch.cat([mask["a"], mask["v"]], dim=1)
        q = self.imagined.expand(mem.shape[0], -1, -1)
        out, _ = self.imagine_attn(q, mem, mem, key_padding_mask=~mem_mask, need_weights=False)
        return out

    def _double_flow_loss(self, task: Tensor, full, miss, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        w = self.flow
        loss_fn = F.l1_loss if w.task_loss == "l1" else F.mse_loss
        terms = {"task": task, "missing": loss_fn(miss["y"], y), "mkd": sg_rmse(miss["h_t"], full["h_t"]),
                 "query": sg_rmse(miss["c_t"], full["c_t"]), "rs": rmse(miss["f"], full["f"])}
        loss = (w.w_full * task + w.w_missing * terms["missing"] + w.lambda_mkd * terms["mkd"]
                + w.lambda_query * terms["query"] + w.lambda_rs * terms["rs"])
        if self.rnc_proj is not None:
            terms["rnc"] = rnc_loss(torch.stack([self.rnc_proj(full["f"]), self.rnc_proj(miss["f"])], 1), y,
                                    temperature=w.rnc_tau)
            loss = loss + w.lambda_rnc * terms["rnc"]
        return loss, terms

    # ------------------------------------------------------------------ checkpoints & introspection
    def trainable_state_dict(self) -> dict[str, Tensor]:
        return state_without(self, frozenset(id(t) for t in self.backbone_model.state_dict(keep_vars=True).values()))

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        load_strict(self, state, expected=self.trainable_state_dict(), what="UMCA")

    def parameter_counts(self) -> dict:
        rest = [p for n, p in self.named_parameters() if not n.startswith("backbone_model.")]
        return count_parameters({"backbone": self.backbone_model, "umca": rest})


def build_umca(cfg, *, dims: Mapping[str, int], backbone: Backbone) -> UMCA:
    m, df = cfg.model, cfg.model.double_flow
    if m.backbone_layers is not None:  # the same truncated LM as DeepMLF reads (model.backbone_layers)
        from .build import keep_first_layers

        keep_first_layers(backbone, m.backbone_layers)
    weights = DoubleFlowWeights.from_config(df) if df.enabled else None
    return UMCA(backbone=backbone, audio_dim=dims["audio"], vision_dim=dims["vision"], d=m.umca.d, d_out=m.umca.d_out,
                dropout=m.umca.dropout, double_flow=weights, imagined_tokens=df.imagined_tokens, mia=df.mia,
                rnc_dim=df.rnc_dim, text_cache_bytes=cfg.perf.prefix_cache_mb * 2**20)


register_arch(Arch(
    name="umca", task="msa", build=build_umca, inputs=("text", "audio", "vision"), needs_backbone=True,
    av_pretraining=False, display_name="UMCA",
    description="SDUMC's unified modality cross-attention on frozen-LM text states (arXiv 2410.15029)",
))
