"""DeepMLF on the real SmolLM2-135M (the demo's backbone): the wrapping is exact on real weights."""

from __future__ import annotations

import pytest
import torch

from deepmlf.config import load_config
from deepmlf.model import build_model

from .conftest import make_batch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from deepmlf.backbones import load_backbone
    from deepmlf.errors import BackboneError

    try:
        return lambda: load_backbone("smollm2-135m")
    except BackboneError as e:  # pragma: no cover - the Makefile installs the weights
        pytest.skip(str(e))


def _text_batch(backbone, B=4, T=16):
    b = make_batch(B=B, T=T)
    texts = ["what a wonderful film", "i hated it", "the plot was fine i guess", "meh"]
    enc = backbone.tokenizer(texts, padding="max_length", max_length=T, truncation=True, return_tensors="pt")
    b.input_ids, b.attention_mask = enc["input_ids"], enc["attention_mask"]
    return b


def test_closed_gates_equal_the_frozen_smollm2(smollm2):
    reference = smollm2()
    cfg = load_config(preset="demo", overrides=["model.gate=tanh", "model.gate_init=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg, audio_dim=5, vision_dim=7, backbone=smollm2()).eval()
    b = _text_batch(reference)
    with torch.no_grad():
        expected = reference.model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
        enc = model.av_encoder.encode_batch(b)
        got = model.lm(b.input_ids, b.attention_mask, model.av_norm(enc.z), enc.mask).text_hidden
    real = b.attention_mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_demo_model_trains_a_step_on_smollm2(smollm2):
    cfg = load_config(preset="demo", overrides=["loss.lambda_lm=1.0"])  # the demo trains without it
    torch.manual_seed(0)
    backbone = smollm2()
    model = build_model(cfg, audio_dim=5, vision_dim=7, backbone=backbone)
    assert model.eos_token_id == backbone.tokenizer.eos_token_id
    counts = model.parameter_counts()
    assert counts["by_module"]["backbone"]["trainable"] == 0
    # 5 MM blocks of D=576, cross-attention only (the demo's model.ffw=off), AV encoder, heads
    assert 3_000_000 < counts["trainable"] < 4_500_000
    model.train()
    out = model(_text_batch(backbone))
    assert out.lm_logits.shape == (4, 16, backbone.vocab_size)
    # Nothing trainable touches the text stream (fusion tokens query the AV memory): CE is the frozen
    # LM's on these short texts (~11, last token -> <|im_end|>).
    assert 0 < out.loss_terms["lm"].item() < 40 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_rationale_head_on_smollm2_keeps_text_states_and_decodes(smollm2):
    """The demo's rationale model (first 8 layers, LoRA on 6-7) on real weights: the suffix leaves the
    text and fusion states alone, and greedy decoding is deterministic and bounded."""
    from deepmlf.model.rationale import tokenize_rationales

    cfg = load_config(preset="demo", overrides=[
        "model.backbone_layers=8", "model.mm_layers=[5,6,7]", "model.n_fusion=4", "model.rationale.enabled=true",
        "model.rationale.path=t.jsonl", "model.rationale.lora_layers=2", "model.rationale.max_len=5"])
    torch.manual_seed(0)
    model = build_model(cfg, audio_dim=5, vision_dim=7, backbone=smollm2()).eval()
    for p in model._lora:
        torch.nn.init.normal_(p, std=0.05)
    b = _text_batch(model.lm.backbone)
    with torch.no_grad():
        ref = model(b)
        b.rationale_ids, b.rationale_mask = tokenize_rationales(
            model.tokenizer, ["Voice: sarcastic", "Voice: sincere", None, "Face: smile"], 5)
        out = model(b)
    assert out.rationale_logits.shape[:2] == (4, 5)
    for name in ("y_t", "y_o", "y_f"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=1e-5)
    first, ids = model.explain(b)
    again, ids2 = model.explain(b)
    assert torch.equal(ids, ids2) and ids.shape[1] <= 5 and first.rationale == again.rationale
