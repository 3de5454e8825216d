"""`deepmlf demo rationale` end to end on tiny GPT-2 (seconds): files, table, verdict keys."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from deepmlf.cli.demo_cmd import get_demo

TINY = ["model.backbone=tiny-gpt2", "model.dtype=float32", "model.backbone_layers=4", "model.mm_layers=[1,2]",
        "model.n_heads=4", "model.head_hidden=8", "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2",
        "model.av_encoder.n_layers=1", "model.av_encoder.av_len=5", "model.rationale.lora_layers=1",
        "model.rationale.max_len=6", "train.max_epochs=1", "train.mixed_precision=no", "data.batch_size=32"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_rationale_demo_on_tiny_backbone(tmp_path):
    run = get_demo("rationale").load()
    console = Console(record=True, width=160)
    summary = run(tmp_path, n=120, overrides=TINY, progress=False, console=console)
    text = console.export_text()
    assert "field Voice acc %" in text and "text-only control" in text and "symbolic" in text
    assert set(summary["results"]) == {"DeepMLF assistant", "text-only control", "student"}
    assert set(summary["verdict"]) >= {"voice_gap_points", "voice_beats_control_by_20", "student_within_10pct"}
    saved = json.loads((tmp_path / "rationale_demo.json").read_text())
    assert saved["teacher"].startswith("symbolic") and (tmp_path / "report.md").is_file()
    rows = [json.loads(line) for line in (tmp_path / "rationales_student.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and {"id", "rationale", "parsed", "y_o", "label"} <= set(rows[0])
    # The control's probe has no audio or video at all.
    from deepmlf.data.mmsa import load_mmsa

    control = load_mmsa(tmp_path / "probe" / "control_no_av.pkl")
    assert float(abs(control["train"].audio).max()) == 0.0 and float(abs(control["test"].vision).max()) == 0.0
