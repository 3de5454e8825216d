"""MM block (eq. 8-11): gates, who queries the AV memory, AV key-padding mask."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.backbones.tiny import tiny_gpt2
from deepmlf.model import Gate, GatedCrossAttention, MMBlock, copy_mlp


def test_gate_kinds():
    assert Gate(kind="sigmoid", init=0.0).value().item() == 0.5
    assert Gate(kind="tanh", init=0.0).value().item() == 0.0
    assert Gate(kind="tanh", init=0.5).value().item() == pytest.approx(math.tanh(0.5))
    none = Gate(kind="none")
    assert list(none.parameters()) == [] and none.value().item() == 1.0
    x = torch.randn(3)
    assert torch.equal(none(x), x)
    torch.testing.assert_close(Gate(kind="sigmoid", init=2.0)(x), torch.sigmoid(torch.tensor(2.0)) * x)


def test_cross_attention_ignores_masked_av_steps():
    torch.manual_seed(0)
    attn = GatedCrossAttention(d_model=16, d_av=6, n_heads=4, dropout=0.1).eval()
    x, z = torch.randn(2, 3, 16), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    ref = attn(x, z, mask)
    z2 = z.clone()
    z2[~mask] = 1e3
    torch.testing.assert_close(attn(x, z2, mask), ref)
    # Only one real step: attention output is that step's value, projected.
    v = attn.v_proj(z[1, :1])  # (1, 16)
    torch.testing.assert_close(ref[1], attn.o_proj(v).expand(3, 16), atol=1e-5, rtol=1e-5)


def _block(query: str, *, gate: str = "sigmoid", ffw: bool = True) -> MMBlock:
    bb = tiny_gpt2()
    torch.manual_seed(0)
    return MMBlock(
        attn=GatedCrossAttention(d_model=32, d_av=6, n_heads=4, dropout=0.0),
        norm_attn=bb.make_norm(),
        gate_attn=Gate(kind=gate, init=0.0),
        ffw=copy_mlp(bb, 0) if ffw else None,
        norm_ffw=bb.make_norm() if ffw else None,
        gate_ffw=Gate(kind=gate, init=0.0) if ffw else None,
        query=query,
    ).eval()


@pytest.mark.parametrize(
    "query, text_sees_av, fusion_sees_av",
    [("fusion", False, True), ("text", True, False), ("text+fusion", True, True)],
)
def test_who_queries_the_av_memory(query, text_sees_av, fusion_sees_av):
    block = _block(query)
    T = 4
    h = torch.randn(2, T + 3, 32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    z1, z2 = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    a, b = block(h, z1, mask, n_text=T), block(h, z2, mask, n_text=T)
    assert a.shape == h.shape
    assert torch.allclose(a[:, :T], b[:, :T]) != text_sees_av
    assert torch.allclose(a[:, T:], b[:, T:]) != fusion_sees_av


def test_closed_tanh_gates_make_the_block_an_identity():
    block = _block("text+fusion", gate="tanh")
    h = torch.randn(2, 7, 32)
    out = block(h, torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool), n_text=4)
    assert torch.equal(out, h)
    assert block.gate_values() == (0.0, 0.0)


def test_ffw_off_and_ffw_on_text_tokens():
    no_ffw = _block("fusion", ffw=False)
    assert no_ffw.ffw is None and no_ffw.gate_values()[1] is None
    h = torch.randn(2, 7, 32)
    z, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(no_ffw(h, z, mask, n_text=4)[:, :4], h[:, :4])  # text untouched without FFW
    with_ffw = _block("fusion")
    assert not torch.allclose(with_ffw(h, z, mask, n_text=4)[:, :4], h[:, :4])  # eq. 11 acts on text too
    with pytest.raises(ValueError, match="together"):
        MMBlock(attn=no_ffw.attn, norm_attn=no_ffw.norm_attn, gate_attn=no_ffw.gate_attn,
                ffw=with_ffw.ffw, norm_ffw=None, gate_ffw=None)


def test_gca_scale_multiplies_only_the_cross_attention_branch():
    """model.gca_scale = s: X_f <- X_f + s · g1 · GCA(...) exactly; 1 leaves the block as eq. 9."""
    h = torch.randn(2, 7, 32)
    z, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    plain = _block("fusion", ffw=False)
    scaled = _block("fusion", ffw=False)
    scaled.gca_scale = 8.0
    a, b = plain(h, z, mask, n_text=4), scaled(h, z, mask, n_text=4)
    assert torch.equal(b[:, :4], h[:, :4])
    torch.testing.assert_close(b[:, 4:] - h[:, 4:], 8.0 * (a[:, 4:] - h[:, 4:]), rtol=1e-5, atol=1e-5)


def test_ffw_on_fusion_tokens_only_leaves_text_untouched():
    """model.ffw_tokens=fusion: text tokens pass the block unchanged; fusion tokens get exactly what
    the paper's block (FFW on all tokens, token-wise) gives them."""
    h = torch.randn(2, 7, 32)
    z, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    both = _block("fusion")
    only = _block("fusion")
    only.ffw_tokens = "fusion"
    a, b = both(h, z, mask, n_text=4), only(h, z, mask, n_text=4)
    assert torch.equal(b[:, :4], h[:, :4])
    assert not torch.allclose(a[:, :4], h[:, :4])
    torch.testing.assert_close(b[:, 4:], a[:, 4:], rtol=1e-6, atol=1e-6)
