"""The demo pipeline: probe caching, the text-only reference's cached features, the verdict, and
the whole `deepmlf demo` end to end on a tiny backbone (the real SmolLM2 run is `make demo`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from deepmlf.backbones.tiny import tiny_gpt2
from deepmlf.config import load_config
from deepmlf.data.dataset import make_loader
from deepmlf.data.mmsa import load_mmsa
from deepmlf.demo import comparison_table, demo_config, fusion_verdict, run_demo
from deepmlf.demo.probe_cache import FLOOR_ROWS, ensure_probe
from deepmlf.demo.text_reference import extract_features, fit_text_head
from deepmlf.errors import ConfigError
from deepmlf.model import build_text_regressor

# A demo sized for seconds: tiny random GPT-2 (4 layers, D=32), a small AV encoder, one epoch.
TINY = [
    "model.backbone=tiny-gpt2", "model.mm_layers=[2,3]", "model.n_heads=4", "model.n_fusion=2",
    "model.head_hidden=8", "model.av_encoder.d_av=8", "model.av_encoder.n_heads=2",
    "model.av_encoder.n_layers=1", "model.av_encoder.av_len=4", "data.max_text_len=12",
    "train.max_epochs=1", "pretrain.max_epochs=2", "model.dtype=float32",
]
MOSI_COLUMNS = ["Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"]


def test_probe_is_cached_while_its_parameters_hold(tmp_path: Path) -> None:
    path, floor, reused = ensure_probe(tmp_path, n=40, seed=3, preset="mosi")
    assert not reused and path.is_file()
    assert set(floor) == set(FLOOR_ROWS)
    # The oracle knows every cue: it must beat the single-modality oracles on MAE.
    assert floor["oracle"]["MAE"] < min(floor["text_only"]["MAE"], floor["av_only"]["MAE"])
    mtime = path.stat().st_mtime_ns
    _, floor2, reused2 = ensure_probe(tmp_path, n=40, seed=3, preset="mosi")
    assert reused2 and json.dumps(floor2) == json.dumps(floor) and path.stat().st_mtime_ns == mtime  # NaN-safe
    _, _, reused3 = ensure_probe(tmp_path, n=40, seed=4, preset="mosi")
    assert not reused3
    assert json.loads((tmp_path / "probe.json").read_text())["params"]["seed"] == 4


def test_text_reference_on_cached_features_is_the_text_regressor(tmp_path: Path) -> None:
    """Fitting W_t on cached x_tK must give a head that TextRegressor.forward reproduces exactly."""
    probe, _, _ = ensure_probe(tmp_path / "probe", n=40, seed=0, preset="mosi")
    cfg = demo_config(probe_path=probe, overrides=TINY)
    splits = load_mmsa(probe, dataset="mosi").splits
    model = build_text_regressor(cfg, backbone=tiny_gpt2())
    feats = {k: extract_features(model, s, cfg, name=k, progress=False) for k, s in splits.items()}
    assert feats["train"].x.shape == (len(splits["train"]), 32)
    metrics = fit_text_head(model, feats, cfg, tmp_path / "text", seed=1, progress=False)

    loader = make_loader(splits["test"], model.backbone.tokenizer, max_text_len=cfg.data.max_text_len,
                         batch_size=5, shuffle=False)
    model.eval()
    with torch.no_grad():
        direct = torch.cat([model(b).prediction for b in loader])
    saved = pd.read_csv(tmp_path / "text" / "predictions_test.csv")
    np.testing.assert_allclose(saved["y_o"].to_numpy(), direct.numpy(), rtol=1e-5, atol=1e-5)
    assert saved["id"].tolist() == list(splits["test"].ids)
    assert json.loads((tmp_path / "text" / "test_metrics.json").read_text())["MAE"] == pytest.approx(metrics["MAE"])
    history = [json.loads(l) for l in (tmp_path / "text" / "history.jsonl").read_text().splitlines()]
    assert history and {"Loss", "MAE"} <= set(history[0]["valid"]) and "task" in history[0]["train"]


def test_verdict_requires_beating_both_references_on_mae_and_corr() -> None:
    good = {"DeepMLF": {"MAE": 0.6, "Corr": 0.9}, "text-only": {"MAE": 1.3, "Corr": 0.4}, "AV-only": {"MAE": 1.5, "Corr": 0.3}}
    wins, text = fusion_verdict(good)
    assert wins and "54% lower" in text  # 1 - 0.6 / 1.3
    bad = {**good, "text-only": {"MAE": 0.5, "Corr": 0.4}}
    wins, text = fusion_verdict(bad)
    assert not wins and "does NOT beat" in text


def test_comparison_table_lists_models_then_reference_rows() -> None:
    m = {"Has0_acc_2": 0.8, "MAE": 0.7, "Corr": 0.6}
    group = comparison_table({"DeepMLF": m, "text-only": {**m, "MAE": 1.1}},
                             {"oracle": {**m, "MAE": 0.25}}, dataset="mosi")
    trained, reference = group.renderables
    # Metrics as rows, the trained models in one table and the probe's references in another.
    assert [c.header for c in trained.columns] == ["metric", "DeepMLF", "text-only"]
    assert [c.header for c in reference.columns] == ["metric", "oracle"]
    console = Console(record=True, width=80)
    console.print(group)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert re.search(r"Has0_acc_2[ │]+80\.00[ │]+80\.00", text)
    assert re.search(r"MAE[ │]+0\.7000[ │]+1\.1000", text) and re.search(r"MAE[ │]+0\.2500", text)
    firsts = [line.strip("│ ").split(" ")[0] for line in text.splitlines()]
    assert [w for w in firsts if w in MOSI_COLUMNS] == MOSI_COLUMNS * 2  # every MMSA metric, in MMSA's order


def test_demo_rejects_settings_that_break_the_comparison(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.seeds"):
        demo_config(probe_path=tmp_path / "p.pkl", overrides=["train.seeds=[1,2]"])
    with pytest.raises(ConfigError, match="init=pretrain_tune"):
        demo_config(probe_path=tmp_path / "p.pkl", overrides=["model.av_encoder.init=random_tune"])


def test_demo_size_is_2000_clips_1000_with_fast_and_an_explicit_n_wins() -> None:
    from deepmlf.demo.pipeline import demo_size

    assert (demo_size(None, False), demo_size(None, True)) == (2000, 1000)
    assert (demo_size(300, False), demo_size(300, True)) == (300, 300)
    # --fast's epochs: 5 stage-2 and 15 stage-1 epochs, against the preset's 10 and 30.
    cfg, fast = demo_config(probe_path=Path("p.pkl")), demo_config(probe_path=Path("p.pkl"), fast=True)
    assert (cfg.train.max_epochs, cfg.pretrain.max_epochs) == (10, 30)
    assert (fast.train.max_epochs, fast.pretrain.max_epochs) == (5, 15)


def test_demo_dtype_is_the_presets_not_a_timing(tmp_path: Path) -> None:
    """The printed table must not depend on the machine: float32 unless the caller says otherwise."""
    assert demo_config(probe_path=tmp_path / "p.pkl").model.dtype == "float32"
    assert demo_config(probe_path=tmp_path / "p.pkl", overrides=["model.dtype=bfloat16"]).model.dtype == "bfloat16"


def test_demo_keeps_its_fusion_tokens_fixed_and_their_prefix_cached(tmp_path: Path) -> None:
    """The demo's step runs from the first MM block on: fixed fusion tokens + text cache (docs/deep-fusion.md)."""
    from deepmlf.model.build import build_model

    cfg = demo_config(probe_path=tmp_path / "p.pkl", overrides=TINY)
    assert cfg.model.fusion_trainable is False and cfg.model.text_cache is True
    model = build_model(cfg, audio_dim=5, vision_dim=20)
    assert not model.lm.fusion_tokens.requires_grad and model.lm.text_cache is not None


def test_demo_mm_blocks_have_no_ffw(tmp_path: Path) -> None:
    """The demo's MM blocks are cross-attention only (model.ffw=off): the copied FFWs memorised the
    probe's transcripts (docs/deep-fusion.md item 10). The package default keeps eq. 10-11's FFW."""
    from deepmlf.model.build import build_model

    cfg = demo_config(probe_path=tmp_path / "p.pkl", overrides=TINY)
    assert cfg.model.ffw == "off"
    model = build_model(cfg, audio_dim=5, vision_dim=20)
    assert all(block.ffw is None and block.gate_ffw is None for _, block in model.lm.mm_blocks())
    assert load_config().model.ffw == "full"


@pytest.mark.slow
def test_demo_end_to_end_on_a_tiny_backbone(tmp_path: Path) -> None:
    console = Console(record=True, width=220)
    result = run_demo(tmp_path / "demo", n=60, overrides=TINY, progress=False, console=console)
    out = console.export_text()
    # The printed table: the three models, then the probe's reference rows, MMSA column names.
    for name in ("DeepMLF", "text-only", "AV-only", "oracle", "text oracle", "AV oracle", "constant"):
        assert name in out
    for col in MOSI_COLUMNS:
        assert col in out
    assert set(result.metrics) == {"DeepMLF", "text-only", "AV-only"}
    for m in result.metrics.values():
        assert set(MOSI_COLUMNS) <= set(m) and np.isfinite(m["MAE"])

    demo = tmp_path / "demo"
    for sub in ("deepmlf/seed-1111", "text-only", "av-only"):
        assert (demo / sub / "test_metrics.json").is_file()
        assert len(pd.read_csv(demo / sub / "predictions_test.csv")) == 9  # 15% of 60
    md = result.report.read_text()
    assert result.report == demo / "report.md"
    for name, m in result.metrics.items():
        row = next(l for l in md.splitlines() if l.startswith(f"| {name} |"))
        assert f"{m['MAE']:.4f}" in row
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (demo / png).stat().st_size > 5_000
    assert {"curves-deepmlf.png", "curves-av-only.png", "scatter.png", "confusion.png", "gates-deepmlf.png"} <= set(
        re.findall(r"\]\(([^)]+\.png)\)", md))
    assert result.timings["total"] > 0
    # The ablation row: the same DeepMLF weights scored with cross-attention off.
    assert result.ablation is not None and np.isfinite(result.ablation["MAE"])
    assert "cross-attention switched off" in out
    row = next(l for l in md.splitlines() if l.startswith("| *DeepMLF, cross-attention off at test* |"))
    assert f"{result.ablation['MAE']:.4f}" in row
    # The fusion head y_f alone: a column of the printed table and a row of the report.
    assert result.fusion_head is not None and np.isfinite(result.fusion_head["MAE"])
    assert "y_f alone" in out and "xattn off" in out and "fusion head y_f alone" in out
    row = next(l for l in md.splitlines() if l.startswith("| *DeepMLF fusion head y_f alone* |"))
    assert f"{result.fusion_head['MAE']:.4f}" in row
    y_f = pd.read_csv(demo / "deepmlf/seed-1111/predictions_test.csv")["y_f"].to_numpy()
    labels = pd.read_csv(demo / "deepmlf/seed-1111/predictions_test.csv")["label"].to_numpy()
    assert result.fusion_head["MAE"] == pytest.approx(float(np.abs(y_f - labels).mean()), abs=1e-4)

    # A second run reuses the probe and replaces the models.
    run_demo(tmp_path / "demo", n=60, overrides=TINY, progress=False, console=Console(record=True))


def test_cross_attention_off_cuts_the_av_path_to_the_fusion_tokens() -> None:
    """With the hooks on, the fusion head ignores audio/vision; on exit the model is unchanged."""
    import dataclasses

    from deepmlf.config import load_config
    from deepmlf.demo.ablation import cross_attention_off
    from deepmlf.model import build_model

    cfg = load_config(preset="demo", overrides=[*TINY, "model.av_encoder.init=random_tune"])
    torch.manual_seed(0)
    model = build_model(cfg, audio_dim=5, vision_dim=20, backbone=tiny_gpt2()).eval()
    g = torch.Generator().manual_seed(0)
    B = 4
    from deepmlf.data.batch import Batch

    ids = torch.randint(0, 256, (B, 12), generator=g)
    batch = Batch(input_ids=ids, attention_mask=torch.ones_like(ids), audio=torch.randn(B, 10, 5, generator=g),
                  audio_lengths=torch.full((B,), 10), vision=torch.randn(B, 10, 20, generator=g),
                  vision_lengths=torch.full((B,), 10), labels=torch.zeros(B), ids=[str(i) for i in range(B)])
    other_av = dataclasses.replace(batch, audio=torch.randn(B, 10, 5, generator=g), vision=torch.randn(B, 10, 20, generator=g))
    with torch.no_grad():
        before = model(batch).y_f
        assert not torch.allclose(before, model(other_av).y_f)  # normally the fusion tokens read Z
        with cross_attention_off(model):
            off, off_other = model(batch), model(other_av)
        after = model(batch).y_f
    torch.testing.assert_close(off.y_f, off_other.y_f)  # no AV reaches the fusion tokens
    assert not torch.allclose(off.y_av, off_other.y_av)  # the AV head still sees AV
    torch.testing.assert_close(after, before)  # hooks removed
