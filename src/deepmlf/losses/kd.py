"""Cross-modal knowledge-distillation losses of MAGTKD (seed 004, §3.3).

Soft labels, eq. 6-9 (the DIST loss): with Y^x = softmax(P^x / τ) row-wise for the teacher (text)
and student logits P^t, P^s (B×C) and d(u, v) = 1 − ρ(u, v), ρ the Pearson correlation,

    L_s = τ² · [ β/B · Σ_i d(Y^s_i,:, Y^t_i,:)  +  γ/C · Σ_j d(Y^s_:,j, Y^t_:,j) ]

(the paper's eq. 9 is β = γ = 1: inter-class relation per sample plus intra-class relation per
class). ρ is the cosine of the mean-centred vectors with ε = 1e-8 in the denominator.

Features, eq. 10-12: rows L2-normalised, T = t̂ t̂ᵀ (text × text) and S = t̂ ŝᵀ (text × student)
are B×B similarity matrices; row-wise softmax(·/τ) gives target and source distributions and

    L_f = 1/B · Σ_i KL( softmax(T_i / τ) ‖ softmax(S_i / τ) ).

(eq. 10-11 lack the /τ in the denominators: a typo, harmless at the paper's τ = 1.)
`detach_teacher` (default) stops gradients into the teacher side (the paper's frozen teacher);
MAGTKD's stage-2 code lets them through (`detach_teacher=False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PEARSON_EPS = 1e-8


def pearson(a: Tensor, b: Tensor, *, dim: int = -1, eps: float = PEARSON_EPS) -> Tensor:
    """Pearson correlation of a and b along `dim` (cosine of the mean-centred vectors)."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + eps)


def dist_loss(student_logits: Tensor, teacher_logits: Tensor, *, tau: float = 2.0, beta: float = 1.0,
              gamma: float = 1.0, detach_teacher: bool = True) -> Tensor:
    """L_s of eq. 9 for (B, C) logits: τ²·(β·mean_i (1−ρ rows) + γ·mean_j (1−ρ columns))."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"dist_loss: expected two (B, C) logit matrices of one shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if detach_teacher:
        teacher_logits = teacher_logits.detach()
    ys = F.softmax(student_logits / tau, dim=1)
    yt = F.softmax(teacher_logits / tau, dim=1)
    inter = (1.0 - pearson(ys, yt, dim=1)).mean()  # over the B samples (rows)
    intra = (1.0 - pearson(ys, yt, dim=0)).mean()  # over the C classes (columns)
    return tau ** 2 * (beta * inter + gamma * intra)


def batch_similarity_kl(student_features: Tensor, teacher_features: Tensor, *, tau: float = 1.0,
                        detach_teacher: bool = True) -> Tensor:
    """L_f of eq. 10-12 for (B, d) features of one width: mean_i KL(softmax(T_i/τ) ‖ softmax(S_i/τ))."""
    if student_features.shape != teacher_features.shape or student_features.dim() != 2:
        raise ValueError(f"batch_similarity_kl: expected two (B, d) feature matrices of one shape, got "
                         f"{tuple(student_features.shape)} and {tuple(teacher_features.shape)}")
    t = F.normalize(teacher_features, dim=1)
    s = F.normalize(student_features, dim=1)
    if detach_teacher:
        t = t.detach()
    target = t @ t.T  # (B, B) text × text
    source = t @ s.T  # (B, B) text × student
    return F.kl_div(F.log_softmax(source / tau, dim=1), F.log_softmax(target / tau, dim=1), reduction="batchmean",
                    log_target=True)
