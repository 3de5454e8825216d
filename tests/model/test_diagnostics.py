"""deepmlf.diagnostics: the deep-path report on a tiny model (issue 8 item 1)."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.diagnostics import deep_fusion_report, parameter_parts
from deepmlf.model import build_model

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config


def _model(new_backbone, **kw):
    torch.manual_seed(0)
    return build_model(small_config(**kw), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone())


def test_report_measures_grads_scales_attention_and_leaves_the_model_as_it_was(new_backbone):
    model = _model(new_backbone).eval()
    b = make_batch()
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    r = deep_fusion_report(model, b, gate_lr=3e-4, steps=100)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.trainable_state_dict().items())
    assert set(r["grad"]) == set(parameter_parts(model))
    assert {"fusion_tokens", "L1.gca", "L1.gate_attn", "L3.ffw", "heads.fusion", "av_encoder"} <= set(r["grad"])
    assert r["grad"]["fusion_tokens"]["grad_norm"] > 0 and r["grad"]["fusion_tokens"]["n"] == 3 * 32
    emb = model.lm.backbone.embed_tokens.weight
    assert r["rms"]["embedding_table"] == pytest.approx(float(emb.pow(2).mean().sqrt()), rel=1e-5)
    assert r["rms"]["fusion_tokens"] == pytest.approx(float(model.lm.fusion_tokens.pow(2).mean().sqrt()), rel=1e-5)
    assert set(r["rms"]["mm_layers"]) == {"L1", "L3"}
    assert r["rms"]["mm_layers"]["L1"]["gca_branch"] > 0
    assert set(r["gca_entropy"]) == {"L1", "L3"} and all(0 < e <= 1 + 1e-6 for e in r["gca_entropy"].values())
    att = r["fusion_attention"]
    assert set(att) == {"0", "1", "2", "3"}
    for shares in att.values():  # the three shares are all of the fusion tokens' attention
        assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-4)
    assert r["gate_adam_bound"] == {"lr": 3e-4, "steps": 100, "max_delta_a": pytest.approx(0.03),
                                    "max_delta_sigmoid": pytest.approx(0.0075)}


def test_report_shows_the_gca_scale_on_the_branch(new_backbone):
    b = make_batch()
    plain = deep_fusion_report(_model(new_backbone).eval(), b)
    scaled = deep_fusion_report(_model(new_backbone, gca_scale=8.0).eval(), b)
    p, s = plain["rms"]["mm_layers"]["L1"], scaled["rms"]["mm_layers"]["L1"]
    assert s["stream_fusion"] == pytest.approx(p["stream_fusion"], rel=1e-5)  # before the first block's GCA
    assert s["gca_branch"] == pytest.approx(8.0 * p["gca_branch"], rel=1e-4)
