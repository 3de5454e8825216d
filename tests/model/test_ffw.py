"""The MM block FFW: an exact copy of the layer's MLP (GPT-2 transposed, Llama SwiGLU product)."""

from __future__ import annotations

import pytest
import torch

from deepmlf.model import GeluMLP, SwiGLUMLP, copy_mlp, make_ffw


def test_copy_equals_the_layer_mlp(new_backbone):
    bb = new_backbone()
    x = torch.randn(3, 5, bb.hidden_size)
    for i in (0, 2):
        ffw = copy_mlp(bb, i).eval()
        assert isinstance(ffw, GeluMLP if bb.mlp_kind == "gpt2" else SwiGLUMLP)
        torch.testing.assert_close(ffw(x), bb.mlp(i)(x), atol=1e-6, rtol=1e-5)
    # Own weights: training the copy leaves the frozen layer alone.
    assert all(p.requires_grad for p in ffw.parameters())
    assert not any(p.data_ptr() == q.data_ptr() for p in ffw.parameters() for q in bb.mlp(2).parameters())


def test_swiglu_is_the_product_not_the_sum():
    torch.manual_seed(0)
    mlp = SwiGLUMLP(d_model=4, d_inner=6, act=torch.nn.SiLU(), bias=False)
    x = torch.randn(2, 4)
    expected = mlp.down_proj(torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    torch.testing.assert_close(mlp(x), expected)


def test_lora_starts_equal_and_trains_only_adapters(new_backbone):
    bb = new_backbone()
    ffw = make_ffw(bb, 1, mode="lora", lora_r=4, lora_alpha=8.0, lora_dropout=0.0).eval()
    x = torch.randn(2, 3, bb.hidden_size)
    torch.testing.assert_close(ffw(x), bb.mlp(1)(x), atol=1e-6, rtol=1e-5)  # lora_B = 0 at init
    trainable = {n for n, p in ffw.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    n_targets = 2 if bb.mlp_kind == "gpt2" else 3
    assert len(trainable) == 2 * n_targets  # A and B per adapted linear


def test_random_and_off_modes(new_backbone):
    bb = new_backbone()
    torch.manual_seed(0)
    rnd = make_ffw(bb, 1, mode="random").eval()
    x = torch.randn(2, 3, bb.hidden_size)
    assert type(rnd) is type(copy_mlp(bb, 1))
    assert not torch.allclose(rnd(x), bb.mlp(1)(x))
    assert make_ffw(bb, 1, mode="off") is None
    with pytest.raises(ValueError, match="model.ffw"):
        make_ffw(bb, 1, mode="bogus")
