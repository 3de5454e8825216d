"""A missing modality reaches DeepMLF only through its own inputs: y_t ignores audio loss, y_av text loss."""

from __future__ import annotations

import pytest
import torch

from deepmlf.backbones.tiny import tiny_gpt2
from deepmlf.data import load_mmsa, make_loader
from deepmlf.data.missing import apply_missing
from deepmlf.model import build_model

from .conftest import small_config


@pytest.fixture(scope="module")
def model_and_split(mmsa_pickle):
    split = load_mmsa(mmsa_pickle)["test"]
    torch.manual_seed(0)
    model = build_model(small_config(), audio_dim=split.audio_dim, vision_dim=split.vision_dim,
                        backbone=tiny_gpt2()).eval()
    return model, split


def _outputs(model, split, tokenizer):
    batch = next(iter(make_loader(split, tokenizer, max_text_len=10, batch_size=len(split), shuffle=False)))
    with torch.no_grad():
        return model(batch)


def test_audio_missing_leaves_the_text_head_bit_identical(model_and_split, byte_tok):
    model, split = model_and_split
    full, gone = _outputs(model, split, byte_tok), _outputs(model, apply_missing(split, "audio+vision"), byte_tok)
    assert torch.equal(full.y_t, gone.y_t)
    assert not torch.equal(full.y_av, gone.y_av)


def test_text_missing_leaves_the_av_head_bit_identical(model_and_split, byte_tok):
    model, split = model_and_split
    full, gone = _outputs(model, split, byte_tok), _outputs(model, apply_missing(split, "text"), byte_tok)
    assert torch.equal(full.y_av, gone.y_av)
    assert not torch.equal(full.y_t, gone.y_t)
