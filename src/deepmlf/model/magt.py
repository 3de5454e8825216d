"""MAGTKD stage 2: the Multi-modal Anchor Gated Transformer (eq. 15-25) and the Concat baseline (Fig. 3).

Shapes: B dialogues, K utterances (padded), D = d_model, C classes, N = real utterances.

    H_m      = Linear_m(F_m) + PE + SE                                     (eq. 15-18; the Linear maps any width to D)
    E_{n→m}  = Block(q = H_m, k = v = H_n)                                  (eq. 19-20; n = m: self)
    Block(x, y) = z + Drop(W2 Drop(GELU(W1 LN(z)))),  z = x + Drop(MHA(x, y, y, key padding))
    G(x)     = σ(W x + b) ⊙ x     (eq. 21-22; `gate: sigmoid_relu` = the authors' σ(ReLU(·)) ⊙ x, ≥ x/2)
    A'       = R_a[G_aa(E_{a→a}) ‖ G_ta(E_{t→a}) ‖ G_va(E_{v→a})],  V' likewise (audio/video anchors first)
    T'       = R_t[G_tt(E_{t→t}) ‖ G_at(E_{A'→t}) ‖ G_vt(E_{V'→t})]   (raw text anchors the enriched A', V')
    p_x      = W_x x'  for x ∈ {t, a, v};  prediction = p_t                  (eq. 23, three heads)
    L        = CE(p_t) + α L_KD^a + β L_KD^v,  L_KD^m = Σ_{kd_terms} {CE(p_m) | L_s(p_m, p_t) | L_f(m', t')}  (eq. 24-25)

`share_text_anchor` (authors' code) reuses E_tt and G_tt for all three text branches. Attention is
bidirectional over the dialogue (offline ERC) with a key-padding mask, so outputs at real
utterances do not depend on padding; without SE and PE the model is permutation-equivariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses.kd import batch_similarity_kl, dist_loss
from .registry import Arch, register_arch

MOD_KEY = {"text": "t", "audio": "a", "video": "v"}


@dataclass
class ERCOutput:
    logits: Tensor  # (N, C) text head at the real utterances: the prediction
    loss: Tensor | None
    loss_terms: dict[str, Tensor] = field(default_factory=dict)
    heads: dict[str, Tensor] = field(default_factory=dict)  # other heads' logits (N, C)
    features: Tensor | None = None  # (N, d) the readout features (stage 1: written for stage 2)

    @property
    def prediction(self) -> Tensor:
        return self.logits


def sinusoidal(positions: Tensor, d: int) -> Tensor:
    """PE of eq. 15-16 at integer positions (B, K) -> (B, K, d)."""
    i = torch.arange(0, d, 2, device=positions.device, dtype=torch.float32)
    angle = positions.float()[..., None] / torch.pow(10000.0, i / d)  # (B, K, d/2)
    pe = torch.zeros(*positions.shape, d, device=positions.device)
    pe[..., 0::2] = torch.sin(angle)
    pe[..., 1::2] = torch.cos(angle[..., : d // 2])
    return pe


class Gate(nn.Module):
    def __init__(self, d: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.proj = nn.Linear(d, d) if kind != "none" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.proj is None:
            return x
        z = self.proj(x)
        return torch.sigmoid(F.relu(z) if self.kind == "sigmoid_relu" else z) * x


class AnchorBlock(nn.Module):
    """Transformer(Q = anchor, K = V = other), eq. 19-20: cross attention + residual, pre-LN FFN + residual."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float, n_layers: int = 1) -> None:
        super().__init__()
        self.attn = nn.ModuleList(nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
                                  for _ in range(n_layers))
        self.ffn = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout),
                                               nn.Linear(d_ff, d)) for _ in range(n_layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, kv: Tensor, pad: Tensor) -> Tensor:
        x = q
        for attn, ffn in zip(self.attn, self.ffn):
            x = x + self.drop(attn(x, kv, kv, key_padding_mask=pad, need_weights=False)[0])
            x = x + self.drop(ffn(x))
        return x


def _kd_terms(student_logits: Tensor, teacher_logits: Tensor, student_feat: Tensor, teacher_feat: Tensor,
              labels: Tensor, cfg) -> dict[str, Tensor]:
    kd = cfg.stage1.kd
    out = {}
    for term in cfg.loss.kd_terms:
        if term == "ce":
            out["ce"] = F.cross_entropy(student_logits, labels)
        elif term == "logit":
            out["logit"] = dist_loss(student_logits, teacher_logits, tau=kd.tau, beta=kd.beta_inter,
                                     gamma=kd.gamma_intra, detach_teacher=cfg.loss.detach_teacher)
        else:
            out["feat"] = batch_similarity_kl(student_feat, teacher_feat, tau=kd.tau_feat,
                                              detach_teacher=cfg.loss.detach_teacher)
    return out


class _ERCModule(nn.Module):
    """Trainable-state protocol shared by the ERC models."""

    def trainable_state_dict(self) -> dict[str, Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, sd: Mapping[str, Tensor]) -> None:
        missing, unexpected = self.load_state_dict(dict(sd), strict=False)
        if unexpected:
            raise KeyError(f"unexpected keys in the checkpoint: {unexpected[:5]}")

    def parameter_counts(self) -> dict:
        by = {}
        for name, mod in self.named_children():
            ps = list(mod.parameters())
            by[name] = {"trainable": sum(p.numel() for p in ps if p.requires_grad), "total": sum(p.numel() for p in ps)}
        ps = list(self.parameters())
        return {"trainable": sum(p.numel() for p in ps if p.requires_grad), "total": sum(p.numel() for p in ps),
                "by_module": by}


class MAGT(_ERCModule):
    def __init__(self, cfg, *, dims: Mapping[str, int], n_classes: int, n_speakers: int) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.mods = [MOD_KEY[x] for x in m.modalities]  # "t" first is not required; order fixed below
        self.others = [x for x in ("a", "v") if x in self.mods]
        D, d_ff = m.d_model, m.d_ff or m.d_model
        self.inp = nn.ModuleDict({x: nn.Linear(dims[x], D) for x in self.mods})
        self.spk = nn.Embedding(n_speakers + 1, D) if m.speaker_embedding else None  # + padding row
        if self.spk is not None:
            nn.init.normal_(self.spk.weight, std=0.1)
        self.use_pe = m.position_embedding
        self.in_drop = nn.Dropout(m.dropout)
        block = lambda: AnchorBlock(D, m.n_heads, d_ff, m.dropout, m.n_layers)  # noqa: E731
        # Branches n->m for every anchor m over the modalities present.
        pairs = [(n, x) for x in self.others for n in self.mods]
        text_sources = ["t", *self.others]
        if not m.share_text_anchor:
            pairs += [(n, "t") for n in text_sources]
        else:
            pairs += [("t", "t")]
        self.blocks = nn.ModuleDict({f"{n}{x}": block() for n, x in pairs})
        self.gates = nn.ModuleDict({f"{n}{x}": Gate(D, m.gate) for n, x in pairs})
        self.reduce = nn.ModuleDict({x: nn.Linear(D * len(self.mods), D) for x in self.mods})
        self.heads = nn.ModuleDict({x: nn.Linear(D, n_classes) for x in self.mods})
        self.share_text = m.share_text_anchor

    def embed(self, batch) -> dict[str, Tensor]:
        D = self.cfg.model.d_model
        h = {}
        extra = 0.0
        if self.use_pe:
            extra = extra + sinusoidal(batch.positions, D)
        if self.spk is not None:
            extra = extra + self.spk(batch.speakers)
        for x in self.mods:
            h[x] = self.in_drop(self.inp[x](batch.features[_feature_key(self.cfg, x)]) + extra)
        return h

    def forward(self, batch) -> ERCOutput:
        pad = ~batch.mask  # (B, K) True at padding
        h = self.embed(batch)
        enriched = {}
        for x in self.others:  # audio / video anchors aggregate every modality
            parts = [self.gates[f"{n}{x}"](self.blocks[f"{n}{x}"](h[x], h[n], pad)) for n in self.mods]
            enriched[x] = self.reduce[x](torch.cat(parts, -1))
        parts = []
        for n in ["t", *self.others]:  # raw text anchors itself and the enriched A', V'
            key = "tt" if self.share_text else f"{n}t"
            src = h["t"] if n == "t" else enriched[n]
            parts.append(self.gates[key](self.blocks[key](h["t"], src, pad)))
        enriched["t"] = self.reduce["t"](torch.cat(parts, -1))
        sel = batch.mask
        feats = {x: enriched[x][sel] for x in self.mods}  # (N, D)
        logits = {x: self.heads[x](feats[x]) for x in self.mods}
        out = ERCOutput(logits=logits["t"], loss=None, features=feats["t"],
                        heads={f"logits_{x}": logits[x] for x in self.others})
        labels = batch.labels
        if labels is None:
            return out
        ce = F.cross_entropy(logits["t"], labels)
        terms = {"ce": ce}
        loss = ce
        for x, w in (("a", self.cfg.loss.alpha), ("v", self.cfg.loss.beta)):
            if x not in self.mods:
                continue
            kd = _kd_terms(logits[x], logits["t"], feats[x], feats["t"], labels, self.cfg)
            total = sum(kd.values()) if kd else torch.zeros((), device=ce.device)
            for k, v in kd.items():
                terms[f"kd_{x}_{k}"] = v
            if w:
                loss = loss + w * total  # w = 0 adds nothing: L is exactly CE (eq. 25)
        out.loss, out.loss_terms = loss, terms
        return out


class ConcatFusion(_ERCModule):
    """Fig. 3: per modality Linear -> LN -> Dropout, one shared module over each, concatenated, Linear."""

    def __init__(self, cfg, *, dims: Mapping[str, int], n_classes: int, n_speakers: int) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.mods = [MOD_KEY[x] for x in m.modalities]
        D = m.d_model
        self.inp = nn.ModuleDict({x: nn.Sequential(nn.Linear(dims[x], D), nn.LayerNorm(D), nn.Dropout(m.dropout))
                                  for x in self.mods})
        self.shared = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Dropout(m.dropout))
        self.out = nn.Linear(D * len(self.mods), n_classes)

    def forward(self, batch) -> ERCOutput:
        sel = batch.mask
        parts = [self.shared(self.inp[x](batch.features[_feature_key(self.cfg, x)][sel])) for x in self.mods]
        logits = self.out(torch.cat(parts, -1))
        out = ERCOutput(logits=logits, loss=None)
        if batch.labels is not None:
            out.loss = F.cross_entropy(logits, batch.labels)
            out.loss_terms = {"ce": out.loss.detach()}
        return out


def _feature_key(cfg, x: str) -> str:
    """The batch feature a modality reads in stage 2: text, audio(_kd), video(_kd)."""
    m = cfg.model
    if x == "t":
        return "text"
    which = m.audio_input if x == "a" else m.video_input
    name = "audio" if x == "a" else "video"
    return f"{name}_kd" if which == "kd" else name


def stage2_inputs(cfg) -> list[str]:
    return [_feature_key(cfg, MOD_KEY[x]) for x in cfg.model.modalities]


def _dims(cfg, dims: Mapping[str, int]) -> dict[str, int]:
    return {MOD_KEY[x]: int(dims[_feature_key(cfg, MOD_KEY[x])]) for x in cfg.model.modalities}


def resolved_sizes(cfg) -> tuple[int, int]:
    """(classes, speakers) of a resolved config (the runner fills data.classes and model.n_speakers)."""
    if not isinstance(cfg.data.classes, list) or cfg.model.n_speakers is None:
        raise ValueError("an ERC model is built from a resolved config: data.classes (a list) and model.n_speakers set")
    return len(cfg.data.classes), int(cfg.model.n_speakers)


def build_magt(cfg, *, dims: Mapping[str, int], backbone=None) -> MAGT:
    n_classes, n_speakers = resolved_sizes(cfg)
    return MAGT(cfg, dims=_dims(cfg, dims), n_classes=n_classes, n_speakers=n_speakers)


def build_concat(cfg, *, dims: Mapping[str, int], backbone=None) -> ConcatFusion:
    n_classes, n_speakers = resolved_sizes(cfg)
    return ConcatFusion(cfg, dims=_dims(cfg, dims), n_classes=n_classes, n_speakers=n_speakers)


register_arch(Arch(name="magt", task="erc", build=build_magt, inputs=("text", "audio", "video"),
                   display_name="MAGT", description="MAGTKD's anchor-gated transformer over a dialogue (eq. 15-25)"))
register_arch(Arch(name="concat", task="erc", build=build_concat, inputs=("text", "audio", "video"),
                   display_name="Concat", description="MAGTKD Fig. 3: utterance-level concatenation baseline"))
