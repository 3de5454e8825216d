"""A rationale run end to end on tiny GPT-2: assistant, student (fewer layers, token KD), explain, predict, score."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data.mmsa import load_mmsa
from deepmlf.errors import ConfigError
from deepmlf.rationale.teachers import write_jsonl

from .conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, toy_pickle):
    data = load_mmsa(toy_pickle)
    path = tmp_path_factory.mktemp("teacher") / "teacher.jsonl"
    rows = [{"id": i, "rationale": f"Voice: {'sarcastic' if y < 0 else 'sincere'}. Prediction: {y:.1f}"}
            for name in ("train", "valid", "test") for i, y in zip(data[name].ids, data[name].labels.tolist())]
    write_jsonl(path, rows)
    return path


def _cfg(toy_pickle, teacher, *extra):
    return tiny_config(toy_pickle, "model.rationale.enabled=true", f"model.rationale.path={teacher}",
                       "model.rationale.max_len=8", "train.max_epochs=1", "pretrain.max_epochs=1",
                       "model.av_encoder.init=random_tune", *extra)


def test_assistant_student_explain_predict(tmp_path, toy_pickle, teacher_file):
    from deepmlf.train import train_run

    a_dir, s_dir = tmp_path / "assistant", tmp_path / "student"
    train_run(_cfg(toy_pickle, teacher_file, "model.rationale.label_task=true"), a_dir, progress=False)
    hist = [json.loads(line) for line in (a_dir / "seed-1" / "history.jsonl").read_text().splitlines()]
    assert {"rationale", "label"} <= set(hist[-1]["train"]) and "rationale" in hist[-1]["valid"]

    best = a_dir / "seed-1" / "best.pt"
    train_run(_cfg(toy_pickle, teacher_file, "model.backbone_layers=2", "model.mm_layers=[1]",
                   f"model.rationale.teacher_checkpoint={best}"), s_dir, progress=False)
    hist = [json.loads(line) for line in (s_dir / "seed-1" / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["train"]["rationale_kd"] > 0

    out = tmp_path / "rationales.jsonl"
    res = CliRunner().invoke(app, ["explain", "--checkpoint", str(s_dir / "seed-1" / "best.pt"), "--data",
                                   str(toy_pickle), "--out", str(out), "--max-len", "5"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"id", "rationale", "parsed", "y_o", "label"}

    csv = tmp_path / "pred.csv"
    res = CliRunner().invoke(app, ["predict", "--checkpoint", str(best), "--data", str(toy_pickle), "--out", str(csv)])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(csv, keep_default_na=False)
    assert "rationale" in frame.columns and len(frame) == 8

    res = CliRunner().invoke(app, ["rationale", "score", str(out), str(teacher_file), "--no-cosine"])
    assert res.exit_code == 0 and "field Voice" in res.output


def test_explain_refuses_a_model_without_rationale_head(trained_run, toy_pickle, tmp_path):
    _, run_dir, _ = trained_run
    res = CliRunner().invoke(app, ["explain", "--checkpoint", str(run_dir / "seed-1" / "best.pt"), "--data",
                                   str(toy_pickle), "--out", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 2 and "no rationale head" in res.output


def test_student_with_another_tokenizer_is_rejected(tmp_path, toy_pickle, teacher_file):
    from deepmlf.model import build_model
    from deepmlf.backbones.tiny import tiny_gpt2

    from deepmlf.train import train_run

    a_dir = tmp_path / "a"
    train_run(_cfg(toy_pickle, teacher_file, "train.max_steps=1"), a_dir, progress=False)
    bb = tiny_gpt2()
    from deepmlf.backbones.tiny import bert_char_tokenizer

    bb.tokenizer = bert_char_tokenizer()
    cfg = _cfg(toy_pickle, teacher_file, f"model.rationale.teacher_checkpoint={a_dir / 'seed-1' / 'best.pt'}")
    with pytest.raises(ConfigError, match="token-level KD needs one tokenizer"):
        build_model(cfg, audio_dim=5, vision_dim=20, backbone=bb)
