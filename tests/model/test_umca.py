"""UMCA (model.arch: umca): shapes, padding invariance, cached frozen-LM text, double flow, runner."""

from __future__ import annotations

import json

import pytest
import torch

from deepmlf.backbones.tiny import tiny_gpt2
from deepmlf.config import load_config
from deepmlf.model.registry import build_arch

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config


def _umca(**model):
    torch.manual_seed(0)
    cfg = small_config(arch="umca", umca={"d": 16, "d_out": 8, "dropout": 0.0}, **model)
    return build_arch("umca", cfg, dims={"audio": AUDIO_DIM, "vision": VISION_DIM}, backbone=tiny_gpt2())


def test_shapes_and_loss():
    model = _umca().train()
    out = model(make_batch())
    assert out.y_o.shape == (4,) and out.prediction is out.y_o
    assert out.loss.item() == pytest.approx(torch.nn.functional.l1_loss(out.y_o, make_batch().labels).item())
    out.loss.backward()
    assert all(p.grad is None for p in model.backbone_model.parameters())  # the LM stays frozen
    assert model.proj["t"].weight.grad.abs().sum() > 0
    assert model.parameter_counts()["trainable"] > 0


def test_padding_invariance():
    model = _umca().eval()
    batch = make_batch(T=7, la=9, lv=11)
    longer = make_batch(T=7, la=9, lv=11)
    pad = lambda x, n: torch.cat([x, torch.zeros(x.shape[0], n, x.shape[2])], dim=1)  # noqa: E731
    longer.audio, longer.vision = pad(batch.audio, 5), pad(batch.vision, 3)  # more padded frames
    longer.input_ids = torch.cat([batch.input_ids, torch.full((4, 4), 256)], dim=1)  # more pad tokens
    longer.attention_mask = torch.cat([batch.attention_mask, torch.zeros(4, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, b = model(batch), model(longer)
    torch.testing.assert_close(a.y_o, b.y_o, rtol=0, atol=1e-5)
    garbage = make_batch(T=7, la=9, lv=11)
    garbage.audio = batch.audio + 100 * (torch.arange(9)[None, :, None] >= batch.audio_lengths[:, None, None])
    with torch.no_grad():
        torch.testing.assert_close(model(garbage).y_o, a.y_o, rtol=0, atol=1e-5)  # padded frames are masked


def test_text_states_are_cached_and_exact():
    model = _umca().eval()
    batch = make_batch()
    first = model.text_states(batch.input_ids, batch.attention_mask)
    assert len(model._cache) == 4
    again = model.text_states(batch.input_ids, batch.attention_mask)
    assert torch.equal(first, again)
    direct = model.backbone_model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    real = batch.attention_mask.bool()
    torch.testing.assert_close(first[real], direct[real].float(), rtol=0, atol=1e-5)
    assert not first[~real].any()


def test_text_state_cache_stays_within_its_budget_and_stays_exact():
    model = _umca().eval()
    batch = make_batch()
    lengths = batch.attention_mask.sum(1).tolist()
    one = int(lengths[0]) * model.backbone.hidden_size * 4  # float32 states of the first transcript
    model._cache.max_bytes = one  # room for the first transcript only (perf.prefix_cache_mb in MB)
    first = model.text_states(batch.input_ids, batch.attention_mask)
    assert len(model._cache) == 1 and model._cache.nbytes == one
    again = model.text_states(batch.input_ids, batch.attention_mask)  # the others are recomputed
    assert torch.equal(first, again) and len(model._cache) == 1
    assert _umca(**{})._cache.max_bytes == load_config().perf.prefix_cache_mb * 2**20


def test_double_flow_missing_flow_ignores_the_transcript():
    model = _umca(double_flow={"enabled": True, "lambda_rnc": 0.5, "mia": True}).train()
    out = model(make_batch())
    assert {"missing", "mkd", "query", "rs", "rnc"} <= set(out.loss_terms)
    (g,) = torch.autograd.grad(out.loss_terms["mkd"], out.states["h_t_full"], retain_graph=True, allow_unused=True)
    assert g is None or not g.any()
    model.eval()
    a, b = make_batch(), make_batch(seed=5)
    b.audio, b.vision, b.audio_lengths, b.vision_lengths = a.audio, a.vision, a.audio_lengths, a.vision_lengths
    for x in (a, b):
        x.text_missing = torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        ya, yb = model(a), model(b)
    assert torch.equal(ya.y_o, yb.y_o) and torch.equal(ya.y_o, ya.y_m)


def test_umca_trains_through_the_runner(tmp_path):
    from deepmlf.data.testing import write_mmsa_pickle
    from deepmlf.train import evaluate_checkpoint, train_run

    data = write_mmsa_pickle(tmp_path / "toy.pkl", n_per_split=(16, 8, 8), la=12, lv=10)
    cfg = load_config(overrides=[
        "model.arch=umca", "model.backbone=tiny-gpt2", "model.umca.d=16", "model.umca.d_out=8",
        "data.max_text_len=12", "data.batch_size=8", "train.grad_accum=1", "train.max_epochs=1",
        "train.mixed_precision=no", "train.seeds=[1]", f"data.path={data}",
    ])
    result = train_run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "seed-1" / "stage1").exists()  # no AV pre-training
    metrics = json.loads((tmp_path / "run" / "seed-1" / "test_metrics.json").read_text())
    assert metrics["MAE"] == pytest.approx(result.per_seed[1]["MAE"])
    again = evaluate_checkpoint(tmp_path / "run" / "seed-1" / "best.pt", data)
    assert again["MAE"] == pytest.approx(metrics["MAE"], abs=1e-6)


def test_umca_reads_the_truncated_backbone():
    full, cut = _umca(), _umca(backbone_layers=2, mm_layers=[1])
    assert len(full.backbone.layers) == 4 and len(cut.backbone.layers) == 2  # tiny: 4 layers
    batch = make_batch()
    with torch.no_grad():
        a = full.text_states(batch.input_ids, batch.attention_mask)
        b = cut.text_states(batch.input_ids, batch.attention_mask)
    assert a.shape == b.shape and not torch.equal(a, b)
