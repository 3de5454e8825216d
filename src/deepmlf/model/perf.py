"""The `perf` config switches applied to a built DeepMLF (issue 14; benchmarks/RESULTS.md).

Each one is exact (outputs and gradients equal the reference path up to float rounding;
tests/model/test_perf.py) except `autocast`, which computes the backbone and the MM blocks in bf16.
"""

from __future__ import annotations

from torch import nn

from ..backbones.adapter import Backbone
from ..config import PerfConfig
from .prefix_cache import PrefixCache

# GPT-2's activations that are the tanh approximation of GELU (transformers' ACT2FN names).
_TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def fuse_tanh_gelu(backbone: Backbone) -> int:
    """Replace a GPT-2 backbone's tanh-GELU module in every MLP by nn.GELU(approximate="tanh"),
    the same function in one kernel (copies made afterwards, e.g. the MM blocks' FFWs, inherit
    it). Returns how many were replaced (0 for other families or activations)."""
    if backbone.mlp_kind != "gpt2":
        return 0
    if getattr(backbone.model.config, "activation_function", None) not in _TANH_GELU_NAMES:
        return 0
    n = 0
    for i in range(backbone.n_layers):
        mlp = backbone.mlp(i)
        if not isinstance(mlp.act, nn.GELU):
            mlp.act = nn.GELU(approximate="tanh")
            n += 1
    return n


def apply_perf(model: nn.Module, perf: PerfConfig) -> None:
    """Set the switches of `perf` on a DeepMLF (fused_gelu is applied by the builder, earlier)."""
    lm = model.lm
    lm.dynamic_padding = perf.dynamic_padding
    lm.prefix_cache = PrefixCache(perf.prefix_cache_mb * 2**20) if perf.prefix_cache else None
    lm.autocast_mode = perf.autocast  # resolved per device at forward time
    lm.set_checkpoint_frozen(perf.checkpoint_frozen)
    lm.set_pack_tokens(perf.pack_tokens)
    model.lm_loss_chunk = perf.lm_loss_chunk
    model.eval_inference_mode = perf.inference_mode  # read by deepmlf.train.evaluate / the Predictor
