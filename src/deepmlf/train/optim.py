"""Optimisers and learning-rate schedules of the two training stages (paper §5.5, DESIGN.md §2).

Stage 2: AdamW with separate groups for the AV encoder (`lr_av`, `weight_decay_av`) and for
everything else that trains (MM blocks, fusion tokens, heads: `lr`, `weight_decay`); linear
warm-up over `warmup_epochs` epochs of optimiser steps, then cosine down to `min_lr`
(transformers' `get_cosine_with_min_lr_schedule_with_warmup`), or, with `lr_schedule:
cosine_restarts`, the authors' cosine with warm restarts of period (max_epochs + 1) epochs minus
the warm-up (`warm_restart_lambda`).
Stage 1: one AdamW group over the AV regressor (the authors' BI_ENC recipe) and
ReduceLROnPlateau(factor 0.1) on the validation loss.

Which parameters skip weight decay is decided by what they are, never by their names: biases,
norm weights and scalar gates all have fewer than two dimensions, and every parameter owned by
a normalisation module is exempt as well.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Iterable

import torch
from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from ..config import PretrainConfig, TrainConfig
from ..errors import ConfigError

# Parameters owned by these modules never decay (torch's own norms; HF's RMSNorms are 1-D anyway).
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

# Stage 1 keeps PyTorch's default AdamW betas, as the authors' BI_ENC trainer does.
PRETRAIN_BETAS = (0.9, 0.999)


def _norm_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)}


def split_decay(params: Iterable[nn.Parameter], norm_ids: set[int]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): matrices decay; biases, norm weights and scalar gates (ndim < 2) do not."""
    decay, no_decay = [], []
    for p in params:
        (no_decay if p.ndim < 2 or id(p) in norm_ids else decay).append(p)
    return decay, no_decay


def _unique_trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def param_groups(model: nn.Module, cfg: TrainConfig, *, av_module: nn.Module | None = None) -> list[dict]:
    """AdamW parameter groups for stage 2; frozen parameters are absent and empty groups dropped.

    `av_module` (the model's `.av_encoder`) gets its own lr / weight decay; it is picked by module
    identity, so a renamed attribute can never silently move it into the other group.
    """
    norm_ids = _norm_parameter_ids(model)
    av_params = _unique_trainable(av_module.parameters()) if av_module is not None else []
    av_ids = {id(p) for p in av_params}
    rest = [p for p in _unique_trainable(model.parameters()) if id(p) not in av_ids]

    # train.lr_parts: named parts of the non-AV parameters get lr · factor (their own groups).
    part_groups: list[dict] = []
    if cfg.lr_parts:
        parts = _lr_parts(model, cfg)
        taken: set[int] = set()
        rest_ids = {id(p) for p in rest}
        for name, factor in cfg.lr_parts.items():
            params = [p for p in _unique_trainable(parts[name]) if id(p) in rest_ids and id(p) not in taken]
            taken.update(id(p) for p in params)
            decay, no = split_decay(params, norm_ids)
            part_groups += [
                {"name": name, "params": decay, "lr": cfg.lr * factor, "weight_decay": cfg.weight_decay},
                {"name": f"{name}_no_decay", "params": no, "lr": cfg.lr * factor, "weight_decay": 0.0},
            ]
        rest = [p for p in rest if id(p) not in taken]

    rest_decay, rest_no = split_decay(rest, norm_ids)
    av_decay, av_no = split_decay(av_params, norm_ids)
    groups = [
        {"name": "main", "params": rest_decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"name": "main_no_decay", "params": rest_no, "lr": cfg.lr, "weight_decay": 0.0},
        *part_groups,
        {"name": "av", "params": av_decay, "lr": cfg.lr_av, "weight_decay": cfg.weight_decay_av},
        {"name": "av_no_decay", "params": av_no, "lr": cfg.lr_av, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("nothing to train: every parameter of the model is frozen")
    return groups


def _lr_parts(model: nn.Module, cfg: TrainConfig) -> dict[str, list[nn.Parameter]]:
    parts_of = getattr(model, "lr_parts", None)
    if parts_of is None:
        raise ConfigError(f"train.lr_parts={dict(cfg.lr_parts)}: {type(model).__name__} has no named parts; "
                          "remove train.lr_parts")
    parts = parts_of()
    unknown = sorted(set(cfg.lr_parts) - set(parts))
    if unknown:
        raise ConfigError(f"train.lr_parts: unknown part(s) {', '.join(unknown)}; "
                          f"{type(model).__name__} has {', '.join(sorted(parts))}")
    return parts


def build_optimizer(model: nn.Module, cfg: TrainConfig, *, av_module: nn.Module | None = None,
                    fused: bool = False) -> AdamW:
    """Stage 2 AdamW (betas from `train.betas`) over `param_groups`. fused (perf.fused_adamw): torch's
    fused kernel, the same update to float rounding (None keeps torch's default, the per-parameter loop
    on CPU)."""
    return AdamW(param_groups(model, cfg, av_module=av_module), lr=cfg.lr, betas=tuple(cfg.betas),
                 fused=True if fused else None)


def load_optimizer_state(optimizer: Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)`, keeping how this optimiser computes its update (the groups'
    `fused`/`foreach` flags: perf.fused_adamw is this run's config, not the saved run's; torch's
    load_state_dict would restore the saved groups' flags with their hyperparameters)."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, kernel in zip(optimizer.param_groups, kernels):
        g.update(kernel)
        if kernel.get("fused"):  # the fused kernel reads `step` on the parameter's device, as float32
            for p in g["params"]:
                st = optimizer.state.get(p, {})
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def build_pretrain_optimizer(model: nn.Module, cfg: PretrainConfig) -> AdamW:
    """Stage 1 AdamW: one group, `pretrain.lr` / `pretrain.weight_decay` on every trainable parameter."""
    params = _unique_trainable(model.parameters())
    if not params:
        raise ConfigError("nothing to train in stage 1: every parameter of the AV regressor is frozen")
    return AdamW([{"name": "av", "params": params}], lr=cfg.lr, weight_decay=cfg.weight_decay, betas=PRETRAIN_BETAS)


def steps_per_epoch(n_batches: int, grad_accum: int, limit_batches: int | None = None) -> int:
    """Optimiser steps in one epoch: a partial accumulation group at the end still steps."""
    if limit_batches is not None:
        n_batches = min(n_batches, limit_batches)
    return max(1, math.ceil(n_batches / grad_accum))


def warm_restart_lambda(step: int, *, warmup: int, period: int, min_ratio: float) -> float:
    """lr factor of the authors' schedule: linear warm-up 0 -> 1 over `warmup` steps, then
    torch's CosineAnnealingWarmRestarts(T_0=period, eta_min=min_ratio·lr): the cosine from 1 to
    `min_ratio` over `period` steps, restarting at 1 after each period (never ends)."""
    if step < warmup:
        return step / max(1, warmup)
    t = (step - warmup) % period
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t / period))


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, *, steps_per_epoch: int) -> LambdaLR:
    """Linear warm-up over `warmup_epochs` epochs of steps, then cosine from each group's lr to
    `min_lr` (a ratio min_lr/lr applied to every group) at the end of `max_epochs` (or `max_steps`).

    `lr_schedule: cosine_restarts`: the authors' warm restarts, period (max_epochs + 1) epochs of
    steps minus the warm-up (hand-written as a LambdaLR so that it resumes like the other schedule).
    """
    total = cfg.max_epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    if cfg.min_lr >= cfg.lr:
        raise ConfigError(f"train.min_lr={cfg.min_lr} must be below train.lr={cfg.lr} (the cosine decays towards it)")
    if cfg.lr_schedule == "cosine_restarts":
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        period = max(1, (cfg.max_epochs + 1) * steps_per_epoch - warmup)
        return LambdaLR(optimizer, partial(warm_restart_lambda, warmup=warmup, period=period,
                                           min_ratio=cfg.min_lr / cfg.lr))
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=total, min_lr=cfg.min_lr
    )


def build_plateau(optimizer: Optimizer, cfg: PretrainConfig) -> ReduceLROnPlateau:
    """Stage 1: divide the lr by 10 after `plateau_patience` epochs without a lower validation loss."""
    return ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=cfg.plateau_patience)


def current_lr(optimizer: Optimizer) -> float:
    """The lr of the first group (the main group in stage 2), for logs and progress bars."""
    return float(optimizer.param_groups[0]["lr"])


def group_lrs(optimizer: Optimizer) -> dict[str, float]:
    return {str(g.get("name", i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}


def grad_clip_parameters(optimizer: Optimizer, *, exclude_groups: tuple[str, ...] = ()) -> list[torch.nn.Parameter]:
    """Parameters whose gradients are clipped: every group except the named ones (stage 2: the AV groups)."""
    return [p for g in optimizer.param_groups if g.get("name") not in exclude_groups for p in g["params"]]
