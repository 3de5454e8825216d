"""deepmlf demo missing on a tiny backbone: every row trained and scored complete and text-missing."""

from __future__ import annotations

import json

from deepmlf.demo.missing import VARIANTS, run_missing_demo

TINY = ["model.backbone=tiny-gpt2", "model.mm_layers=[1,3]", "model.n_heads=4", "model.n_fusion=3",
        "model.head_hidden=8", "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2", "model.av_encoder.n_layers=1",
        "model.av_encoder.av_len=5", "model.umca.d=8", "model.umca.d_out=4", "data.max_text_len=12",
        "train.max_steps=1", "pretrain.max_epochs=1", "train.max_epochs=1", "train.mixed_precision=no"]


def test_missing_demo_rows_and_files(tmp_path):

    result = run_missing_demo(tmp_path / "out", n=60, overrides=TINY, progress=False)
    assert list(result["rows"]) == list(VARIANTS)
    for r in result["rows"].values():
        assert set(r) == {"complete", "text_missing"} and "MAE" in r["complete"]
    stored = json.loads((tmp_path / "out" / "missing.json").read_text())
    assert set(stored["oracle"]) == {"complete", "text_missing"}
    assert len(stored["verdict"]) == 2
    md = (tmp_path / "out" / "missing.md").read_text()
    assert "| DeepMLF double flow |" in md and "oracle" in md
    # stage 1 ran once: the later DeepMLF variants started from the first run's checkpoint
    assert (tmp_path / "out" / "deepmlf" / "seed-1111" / "stage1" / "best.pt").is_file()
    assert not (tmp_path / "out" / "deepmlf-double-flow" / "seed-1111" / "stage1").exists()


def test_missing_demo_has_its_own_preset_and_times_each_row():
    from deepmlf.config import load_config
    from deepmlf.demo.missing import PRESET, markdown_table

    cfg = load_config(preset=PRESET)
    assert PRESET == "demo-missing" and cfg.model.backbone_layers == 4 and cfg.model.mm_layers == [2, 3]
    assert cfg.model.text_cache and cfg.model.ffw_tokens == "fusion"
    row = {"MAE": 0.5, "Has0_acc_2": 0.9}
    md = markdown_table({"rows": {"DeepMLF": {"complete": row, "text_missing": row}},
                         "oracle": {"complete": row, "text_missing": row}, "timings": {"DeepMLF": 61.4},
                         "verdict": []})
    assert "| DeepMLF | 0.500 | 90.0 | 0.500 | 90.0 | 61 |" in md
