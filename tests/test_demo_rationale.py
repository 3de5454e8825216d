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


def test_demo_recipe_reads_the_fusion_tokens_in_every_model(tmp_path):
    """The assistant, the control and the student all train with the suffix's read-out of the fusion
    tokens (model.rationale.readout=fusion): the control differs from the assistant in its data only."""
    from deepmlf.demo.rationale_demo import demo_configs

    cfgs = demo_configs(tmp_path, tmp_path / "p.pkl", tmp_path / "c.pkl", tmp_path / "t.jsonl", fast=False,
                        overrides=None)
    assert all(c.model.rationale.readout == "fusion" for c in cfgs.values())
    a, c, s = (cfgs[k] for k in ("DeepMLF assistant", "text-only control", "student"))
    assert (a.data.batch_size, a.train.max_epochs) == (8, 2)
    assert a.model == c.model and a.train == c.train and a.data.path != c.data.path
    assert s.model.mm_layers == [28, 29] and s.model.n_fusion == 2 and s.model.rationale.teacher_checkpoint
    fast = demo_configs(tmp_path, tmp_path / "p.pkl", tmp_path / "c.pkl", tmp_path / "t.jsonl", fast=True,
                        overrides=None)
    assert s.train.max_epochs == 3
    assert fast["DeepMLF assistant"].train.max_epochs == 1 and fast["student"].train.max_epochs == 1
