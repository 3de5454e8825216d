"""The MM block's feed-forward (eq. 11): a copy of decoder layer i's MLP, trained or LoRA-adapted.

Modes (DESIGN.md §1, Table 10):
  full   copy the layer's MLP weights (and biases) and train them all
  lora   copy them, freeze the copy, train LoRA adapters (peft) on each linear
  random the same architecture, freshly initialised (ablation)
  off    no FFW sub-block (the builder returns None)

Both families become plain `nn.Linear`s: GPT-2's Conv1D stores (in, out) weights, so they are
transposed on copy. Llama's SwiGLU is `down(act(gate(x)) * up(x))` — the product, not the
authors' sum.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn

from ..backbones.adapter import Backbone

FFWMode = Literal["full", "lora", "random", "off"]


class GeluMLP(nn.Module):
    """GPT-2's MLP with nn.Linear: c_proj(act(c_fc(x))), then dropout (as GPT2MLP)."""

    def __init__(self, *, d_model: int, d_inner: int, act: nn.Module, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, d_inner)
        self.act = act
        self.c_proj = nn.Linear(d_inner, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class SwiGLUMLP(nn.Module):
    """Llama's MLP: down(act(gate(x)) * up(x))."""

    def __init__(self, *, d_model: int, d_inner: int, act: nn.Module, bias: bool) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_inner, bias=bias)
        self.up_proj = nn.Linear(d_model, d_inner, bias=bias)
        self.act = act
        self.down_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


# Linear layers LoRA adapts, per MLP kind (peft's habit: defaults keyed by architecture).
LORA_TARGETS = {"gpt2": ["c_fc", "c_proj"], "swiglu": ["gate_proj", "up_proj", "down_proj"]}


def _copy_linear(dst: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    with torch.no_grad():
        dst.weight.copy_(weight.float())
        if dst.bias is not None:
            dst.bias.copy_(bias.float()) if bias is not None else dst.bias.zero_()


def copy_mlp(backbone: Backbone, layer_index: int) -> nn.Module:
    """A float32, trainable copy of decoder layer `layer_index`'s MLP (same function, own weights)."""
    src = backbone.mlp(layer_index)
    if backbone.mlp_kind == "gpt2":
        d_model, d_inner = src.c_fc.weight.shape  # Conv1D weight: (in, out)
        mlp = GeluMLP(d_model=d_model, d_inner=d_inner, act=copy.deepcopy(src.act), dropout=src.dropout.p)
        _copy_linear(mlp.c_fc, src.c_fc.weight.t(), src.c_fc.bias)
        _copy_linear(mlp.c_proj, src.c_proj.weight.t(), src.c_proj.bias)
    else:
        d_inner, d_model = src.gate_proj.weight.shape  # Linear weight: (out, in)
        mlp = SwiGLUMLP(
            d_model=d_model, d_inner=d_inner, act=copy.deepcopy(src.act_fn), bias=src.gate_proj.bias is not None
        )
        for name in ("gate_proj", "up_proj", "down_proj"):
            s = getattr(src, name)
            _copy_linear(getattr(mlp, name), s.weight, s.bias)
    return mlp.float().requires_grad_(True)


def random_mlp(backbone: Backbone, layer_index: int) -> nn.Module:
    """Same architecture as `copy_mlp`, initialised like the backbone (normal(0, initializer_range))."""
    mlp = copy_mlp(backbone, layer_index)
    std = float(getattr(backbone.model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for m in mlp.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, std)
                if m.bias is not None:
                    m.bias.zero_()
    return mlp


def add_lora(mlp: nn.Module, *, mlp_kind: str, r: int, alpha: float, dropout: float) -> nn.Module:
    """Freeze `mlp` and inject LoRA adapters (B initialised to 0, so the output starts unchanged)."""
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS[mlp_kind])
    # peft marks only the adapters trainable: the copied base weights are frozen here, once.
    return inject_adapter_in_model(config, mlp)


def make_ffw(
    backbone: Backbone, layer_index: int, *, mode: FFWMode, lora_r: int = 64, lora_alpha: float = 128.0,
    lora_dropout: float = 0.05,
) -> nn.Module | None:
    """The FFW of the MM block after layer `layer_index`, or None when mode is `off`."""
    if mode == "off":
        return None
    if mode == "full":
        return copy_mlp(backbone, layer_index)
    if mode == "random":
        return random_mlp(backbone, layer_index)
    if mode == "lora":
        return add_lora(
            copy_mlp(backbone, layer_index), mlp_kind=backbone.mlp_kind, r=lora_r, alpha=lora_alpha,
            dropout=lora_dropout,
        )
    raise ValueError(f"model.ffw={mode!r}: expected full, lora, random or off")
