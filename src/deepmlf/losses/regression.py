"""RMSE and its stop-gradient ("distillation") variants.

SDUMC (arXiv 2410.15029) aligns the text-missing flow with the complete one by
    L_MKD = RMSE(h^M, sg h^F) (+ the same on the query-side state),   L_RS = RMSE(f^M, f^F),
RMSE(a, b) = sqrt(mean((a - b)^2)) over every element. `sg_*` detach the target (the teacher),
so the loss moves only the student; `rmse` lets both sides move (L_RS is not detached).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

# sqrt has an infinite slope at 0: below this mean square the loss is flat (value <= 1e-6).
RMSE_EPS = 1e-12


def rmse(a: Tensor, b: Tensor, *, eps: float = RMSE_EPS) -> Tensor:
    """sqrt(mean((a - b)^2)) over all elements, a scalar; gradients reach both a and b."""
    if a.shape != b.shape:
        raise ValueError(f"rmse: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return F.mse_loss(a, b).clamp_min(eps).sqrt()


def sg_rmse(student: Tensor, teacher: Tensor, *, eps: float = RMSE_EPS) -> Tensor:
    """RMSE(student, sg teacher): the teacher receives no gradient (SDUMC's L_MKD)."""
    return rmse(student, teacher.detach(), eps=eps)


def sg_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """mean((student - sg teacher)^2)."""
    return F.mse_loss(student, teacher.detach())


def sg_l1(student: Tensor, teacher: Tensor) -> Tensor:
    """mean(|student - sg teacher|)."""
    return F.l1_loss(student, teacher.detach())
