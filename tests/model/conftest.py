"""Shared helpers for the model tests: tiny backbones of both families, small configs, batches.

One battery runs over tiny random GPT-2 and Llama models (peft's habit), all on CPU in seconds.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from deepmlf.backbones.adapter import Backbone
from deepmlf.backbones.tiny import tiny_gpt2, tiny_llama
from deepmlf.config import Config, config_from_dict
from deepmlf.data.batch import Batch

AUDIO_DIM, VISION_DIM = 5, 7
FAMILIES = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def small_config(**model: Any) -> Config:
    """A config sized for the tiny backbones (4 layers, D=32); `model` entries override `model.*`."""
    tree: dict[str, Any] = {
        "model": {
            "backbone": "tiny",
            "mm_layers": [1, 3],
            "n_fusion": 3,
            "n_heads": 4,
            "head_hidden": 8,
            "augment": {"kind": "none"},
            "av_encoder": {"d_av": 8, "av_len": 4, "n_layers": 1, "n_heads": 2, "init": "random_tune"},
        },
        "loss": {"lambda_lm": 1.0},
    }
    for key, value in model.items():
        if isinstance(value, dict) and isinstance(tree["model"].get(key), dict):
            tree["model"][key] = {**tree["model"][key], **value}
        else:
            tree["model"][key] = value
    return config_from_dict(tree, "test")


def make_batch(
    B: int = 4, T: int = 7, *, seed: int = 0, la: int = 9, lv: int = 11, labels: bool = True
) -> Batch:
    """Right-padded text with varied real lengths (one full-length sample), varied AV lengths."""
    g = torch.Generator().manual_seed(seed)
    text_len = torch.tensor([T, 3, 5, 1, 6, 2][:B])
    mask = (torch.arange(T)[None, :] < text_len[:, None]).long()
    ids = torch.randint(0, 256, (B, T), generator=g).masked_fill(mask == 0, 256)  # pad = eos = 256
    a_len = torch.tensor([la, 2, 5, 1, 7, 3][:B])
    v_len = torch.tensor([lv, 6, 1, 3, 4, 9][:B])
    audio = torch.randn(B, la, AUDIO_DIM, generator=g) * (torch.arange(la)[None, :, None] < a_len[:, None, None])
    vision = torch.randn(B, lv, VISION_DIM, generator=g) * (torch.arange(lv)[None, :, None] < v_len[:, None, None])
    return Batch(
        input_ids=ids, attention_mask=mask, audio=audio, audio_lengths=a_len, vision=vision,
        vision_lengths=v_len, labels=torch.randn(B, generator=g) if labels else None,
        ids=[f"s{i}" for i in range(B)],
    )


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture
def new_backbone(family: str) -> Callable[..., Backbone]:
    """A factory: every call gives a fresh tiny backbone of the family with identical weights."""
    return lambda **kw: FAMILIES[family](**kw)
