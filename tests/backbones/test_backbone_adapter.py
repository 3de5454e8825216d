"""The family-independent view over tiny random GPT-2 and Llama models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import OPTConfig, OPTForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.pytorch_utils import Conv1D

from deepmlf.backbones import Backbone, UnsupportedBackbone
from deepmlf.backbones.tiny import byte_tokenizer, tiny_gpt2, tiny_llama


def test_gpt2_structure_points_at_the_models_own_modules():
    bb = tiny_gpt2(n_layers=3, hidden=16, n_heads=2)
    m = bb.model
    assert bb.model_type == "gpt2"
    assert bb.n_layers == 3 and bb.layers is m.transformer.h
    assert bb.hidden_size == 16 and bb.vocab_size == 257
    assert bb.embed_tokens is m.transformer.wte
    assert bb.final_norm is m.transformer.ln_f
    assert bb.lm_head is m.lm_head
    for i in range(3):
        assert bb.mlp(i) is m.transformer.h[i].mlp
    assert bb.mlp_kind == "gpt2"
    assert isinstance(bb.mlp(0).c_fc, Conv1D) and isinstance(bb.mlp(0).c_proj, Conv1D)
    assert bb.n_parameters == sum(p.numel() for p in m.parameters())


def test_llama_structure_points_at_the_models_own_modules():
    bb = tiny_llama(n_layers=2, hidden=16, n_heads=2)
    m = bb.model
    assert bb.model_type == "llama"
    assert bb.n_layers == 2 and bb.layers is m.model.layers
    assert bb.hidden_size == 16
    assert bb.embed_tokens is m.model.embed_tokens
    assert bb.final_norm is m.model.norm
    assert bb.lm_head is m.lm_head
    assert bb.lm_head.weight is bb.embed_tokens.weight  # tie_word_embeddings
    assert bb.mlp_kind == "swiglu"
    mlp = bb.mlp(1)
    assert mlp is m.model.layers[1].mlp
    assert {n for n, _ in mlp.named_children()} >= {"gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize(
    ("make", "kind", "source"),
    [
        (tiny_gpt2, nn.LayerNorm, lambda m: m.transformer.h[0].ln_1),
        (tiny_llama, LlamaRMSNorm, lambda m: m.model.layers[0].input_layernorm),
    ],
)
def test_make_norm_is_fresh_and_of_the_backbones_kind(make, kind, source):
    bb = make(hidden=16, n_heads=2)
    bb.freeze()
    with torch.no_grad():  # a trained-looking source norm must not leak into the new one
        for p in source(bb.model).parameters():
            p.fill_(3.0)
    norm = bb.make_norm()
    assert type(norm) is kind
    assert norm is not source(bb.model)
    assert norm.weight.shape == (16,)
    assert torch.equal(norm.weight, torch.ones(16))
    if kind is nn.LayerNorm:
        assert torch.equal(norm.bias, torch.zeros(16))
    assert all(p.requires_grad for p in norm.parameters())
    assert all(p.dtype == torch.float32 for p in norm.parameters())
    assert torch.all(source(bb.model).weight == 3.0)  # the backbone's own norm is untouched


def test_pad_defaults_to_eos_with_right_padding():
    tok = byte_tokenizer()
    tok.pad_token = None
    tok.padding_side = "left"
    bb = Backbone(model=tiny_gpt2().model, tokenizer=tok, name="x")
    assert bb.tokenizer.pad_token == bb.tokenizer.eos_token == "<|endoftext|>"
    assert bb.tokenizer.padding_side == "right"


def test_unsupported_model_type_names_it_and_the_supported_ones():
    cfg = OPTConfig(vocab_size=257, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                    word_embed_proj_dim=16, max_position_embeddings=64)
    with pytest.raises(UnsupportedBackbone, match=r"model_type 'opt'; supported: gpt2, llama"):
        Backbone(model=OPTForCausalLM(cfg), tokenizer=byte_tokenizer(), name="tiny-opt")
