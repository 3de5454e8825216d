"""Token-level knowledge distillation (MulCoT-RD's student loss, generalised).

    L = w_ce · CE(z_S, y) + w_kd · [T²] · KL( softmax(z_A / T) ‖ softmax(z_S / T) )

averaged over the target positions (targets != ignore_index). MulCoT-RD uses w_ce = 1 − λ,
w_kd = λ = 0.3, T = 2 and no T² factor; Hinton et al. scale the KL by T² so its gradients keep
their size as T grows (`t2_scale`). Shapes: N positions (any leading dims flattened), V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


@dataclass
class KDLoss:
    loss: Tensor  # weighted total
    ce: Tensor  # CE on the targets (unweighted)
    kl: Tensor  # KL(teacher ‖ student) at T, × T² when t2_scale (unweighted); 0 without a teacher


def token_kd_loss(student_logits: Tensor, targets: Tensor, teacher_logits: Tensor | None = None, *,
                  ce_weight: float = 1.0, kd_weight: float = 0.0, temperature: float = 2.0,
                  t2_scale: bool = False, ignore_index: int = -100) -> KDLoss:
    """student/teacher logits (..., V), targets (...) int; see the module docstring."""
    if temperature <= 0:
        raise ConfigError(f"kd temperature={temperature}: expected > 0")
    V = student_logits.shape[-1]
    z_s = student_logits.reshape(-1, V).float()  # (N, V)
    y = targets.reshape(-1)  # (N,)
    ce = F.cross_entropy(z_s, y, ignore_index=ignore_index)
    if teacher_logits is None or kd_weight == 0:
        kl = ce.new_zeros(())
    else:
        if teacher_logits.shape != student_logits.shape:
            raise ConfigError(f"teacher logits {tuple(teacher_logits.shape)} vs student {tuple(student_logits.shape)}: "
                              "the two models must share the tokenizer and the sequence")
        keep = y != ignore_index  # (N,)
        log_s = F.log_softmax(z_s[keep] / temperature, dim=-1)
        log_t = F.log_softmax(teacher_logits.reshape(-1, V)[keep].float().detach() / temperature, dim=-1)
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum") / keep.sum().clamp(min=1)
        if t2_scale:
            kl = kl * temperature**2
    return KDLoss(loss=ce_weight * ce + kd_weight * kl, ce=ce, kl=kl)


def check_same_tokenizer(student: object, teacher: object, *, student_name: str = "student",
                         teacher_name: str = "teacher") -> None:
    """Token-level KD compares distributions position by position: both must share the vocabulary."""
    def vocab(tok: object) -> dict:
        get = getattr(tok, "get_vocab", None)
        return get() if callable(get) else {}

    vs, vt = vocab(student), vocab(teacher)
    if vs != vt:
        only_s = len(set(vs) - set(vt))
        raise ConfigError(
            f"token-level KD needs one tokenizer: {student_name} has {len(vs)} tokens, {teacher_name} {len(vt)} "
            f"({only_s} of the {student_name}'s are not the {teacher_name}'s); distil between models that share a tokenizer"
        )
    for attr in ("eos_token_id", "pad_token_id"):
        a, b = getattr(student, attr, None), getattr(teacher, attr, None)
        if a != b:
            raise ConfigError(f"token-level KD: {student_name} {attr}={a}, {teacher_name} {attr}={b}; they must agree")
