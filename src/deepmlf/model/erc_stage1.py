"""MAGTKD stage 1 on frozen utterance features (§3.2-3.3): text teacher head, audio/video students.

    teacher:  f_t = Drop(GELU(Linear(F_t)))  (d_feature),  p_t = W f_t                  trained with CE
    student:  f_m = Drop(GELU(Linear(F_m))),  p_m = W f_m
              L = CE(p_m, y) + w_logit · L_s(p_m, p_t) + w_feat · L_f(f_m, f_t)        (eq. 14; teacher frozen)

The paper fine-tunes RoBERTa / data2vec / TimesFormer; here the encoders stay frozen and a head is
trained on their features (DESIGN.md §7: what runs offline on CPU). The students' features f_m
(KD or CE-only) are what stage 2 reads as A_KD / A (Table 3).
"""

from __future__ import annotations

from typing import Mapping

import torch.nn.functional as F
from torch import nn

from ..losses.kd import batch_similarity_kl, dist_loss
from .magt import ERCOutput, _ERCModule, resolved_sizes
from .registry import Arch, register_arch


class UtteranceHead(_ERCModule):
    """Feature + classifier over one modality's utterance vectors; optionally distilled from a frozen teacher."""

    def __init__(self, *, modality: str, d_in: int, d_feature: int, n_classes: int, dropout: float,
                 teacher: "UtteranceHead | None" = None, kd=None) -> None:
        super().__init__()
        self.modality = modality
        self.encode = nn.Sequential(nn.Linear(d_in, d_feature), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(d_feature, n_classes)
        self.kd = kd
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen: no dropout
        return self

    def forward(self, batch) -> ERCOutput:
        sel = batch.mask
        f = self.encode(batch.features[self.modality][sel])  # (N, d_feature)
        logits = self.head(f)
        out = ERCOutput(logits=logits, loss=None, features=f)
        if batch.labels is None:
            return out
        ce = F.cross_entropy(logits, batch.labels)
        loss, terms = ce, {"ce": ce.detach()}
        if self.teacher is not None and self.kd is not None:
            t = self.teacher(batch)
            ls = dist_loss(logits, t.logits, tau=self.kd.tau, beta=self.kd.beta_inter, gamma=self.kd.gamma_intra)
            lf = batch_similarity_kl(f, t.features, tau=self.kd.tau_feat)
            loss = loss + self.kd.w_logit * ls + self.kd.w_feat * lf
            terms.update(logit=ls.detach(), feat=lf.detach())
        out.loss, out.loss_terms = loss, terms
        return out


def build_utterance_head(cfg, *, dims: Mapping[str, int], backbone=None, modality: str = "text",
                         teacher: UtteranceHead | None = None, kd: bool = False) -> UtteranceHead:
    n_classes, _ = resolved_sizes(cfg)
    s1 = cfg.stage1
    return UtteranceHead(modality=modality, d_in=int(dims[modality]), d_feature=s1.d_feature, n_classes=n_classes,
                         dropout=s1.dropout, teacher=teacher, kd=s1.kd if kd else None)


register_arch(Arch(name="erc-utterance-head", task="erc", build=build_utterance_head, inputs=("text",),
                   display_name="utterance head", description="MAGTKD stage 1: teacher / student head on frozen features"))
