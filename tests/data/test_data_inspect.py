"""`deepmlf data inspect`: the facts it prints (human and --json) and a clear exit 2 on a bad file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.cli.data_cmd import label_histogram
from deepmlf.data.testing import make_mmsa_dict, write_mmsa_pickle

runner = CliRunner()


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["data", "inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_holds_the_facts_of_every_split(mmsa_pickle):
    raw = make_mmsa_dict()
    out = _json(str(mmsa_pickle))
    assert out["path"] == str(mmsa_pickle)
    assert out["dataset"] == "mosi" and out["dataset_label"] == "mosi" and out["label_range"] == [-3.0, 3.0]
    assert list(out["splits"]) == ["train", "valid", "test"]
    for name, n in zip(("train", "valid", "test"), (24, 8, 8)):
        s = out["splits"][name]
        a_len = np.array(raw[name]["audio_lengths"])
        v_len = np.array(raw[name]["vision_lengths"])
        y = raw[name]["regression_labels"]
        assert s["n"] == n
        assert s["audio"] == {
            "dim": 5, "max_len": 30, "length_min": int(a_len.min()),
            "length_mean": round(float(a_len.mean()), 2), "length_max": int(a_len.max()),
        }
        assert s["vision"] == {
            "dim": 20, "max_len": 40, "length_min": int(v_len.min()),
            "length_mean": round(float(v_len.mean()), 2), "length_max": int(v_len.max()),
        }
        assert s["labels"]["min"] == pytest.approx(float(y.min()), abs=1e-4)
        assert s["labels"]["max"] == pytest.approx(float(y.max()), abs=1e-4)
        assert s["labels"]["mean"] == pytest.approx(float(y.mean()), abs=1e-4)
        hist = s["labels"]["histogram"]
        assert list(hist) == ["-3", "-2", "-1", "0", "1", "2", "3"] and sum(hist.values()) == n
        assert s["nonfinite_replaced"] == {"audio": 0, "vision": 0}
    assert "ignored keys (not used by deepmlf): annotations, classification_labels, text, text_bert" in out["notes"]


def test_json_histogram_repairs_and_notes(tmp_path):
    mosei_dims = {"audio_dim": 74, "vision_dim": 35}  # MOSEI's standard features, as --dataset says
    raw = make_mmsa_dict(n_per_split=(8, 4, 4), **mosei_dims)
    labels = np.array([-3, -2.6, -2.5, -0.5, 0.5, 1.5, 2.5, 3], np.float32)
    audio = raw["train"]["audio"].copy()
    audio[0, 0, :2] = -np.inf
    path = write_mmsa_pickle(
        tmp_path / "f.pkl", n_per_split=(8, 4, 4), train__regression_labels=labels, train__audio=audio,
        train__vision_lengths=None, **mosei_dims,
    )
    out = _json(str(path), "--dataset", "mosei")
    assert out["dataset"] == "mosei"
    train = out["splits"]["train"]
    # round(clip(y)) with numpy's half-to-even rounding, as MMSA's Acc7
    assert train["labels"]["histogram"] == {"-3": 2, "-2": 1, "-1": 0, "0": 2, "1": 0, "2": 2, "3": 1}
    assert train["nonfinite_replaced"] == {"audio": 2, "vision": 0}
    assert "train: replaced 2 non-finite values (NaN/±inf) in audio with 0" in out["notes"]
    assert "train: no 'vision_lengths'; derived as the last non-zero vision frame + 1 (min 1)" in out["notes"]


def test_sims_histogram_uses_the_acc5_bins(tmp_path):
    labels = np.array([-1.0, -0.7, -0.5, 0.0, 0.1, 0.2, 0.7, 0.8, 1.0], np.float32)
    assert label_histogram(labels, "sims") == {
        "negative": 2, "weak_negative": 1, "neutral": 2, "weak_positive": 2, "positive": 2,
    }
    path = write_mmsa_pickle(
        tmp_path / "s.pkl", dataset="sims", n_per_split=(9, 2, 2), train__regression_labels=labels
    )
    out = _json(str(path), "--dataset", "sims")
    assert out["label_range"] == [-1.0, 1.0]
    assert out["splits"]["train"]["labels"]["histogram"]["positive"] == 2


def test_unlabelled_prediction_file(tmp_path):
    path = write_mmsa_pickle(tmp_path / "p.pkl", train=None, valid=None, test__regression_labels=None)
    out = _json(str(path), "--unlabelled")
    assert list(out["splits"]) == ["test"] and out["splits"]["test"]["labels"] is None
    result = runner.invoke(app, ["data", "inspect", str(path)])
    assert result.exit_code == 2 and "missing split 'train', 'valid'" in result.output


def test_human_output_shows_sizes_dims_classes_and_notes(mmsa_pickle):
    result = runner.invoke(app, ["data", "inspect", str(mmsa_pickle)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "dataset: mosi" in out and "labels expected in [-3, 3]" in out
    lines = out.splitlines()
    assert any(line.split("│")[1:5] and [c.strip() for c in line.split("│")[1:5]] == ["samples", "24", "8", "8"]
               for line in lines)
    assert any([c.strip() for c in line.split("│")[1:5]] == ["audio dim", "5", "5", "5"] for line in lines)
    assert any([c.strip() for c in line.split("│")[1:5]] == ["vision frames (L)", "40", "40", "40"] for line in lines)
    assert "label classes (Acc7)" in out
    assert "dataset inferred as mosi: labels reach -3 (outside CH-SIMS's [-1, 1]); feature dims (audio 5, vision 20)" in out


def test_bad_file_exits_2_with_the_message(tmp_path):
    path = write_mmsa_pickle(tmp_path / "bad.pkl", train__audio=np.zeros((24, 30), np.float32))
    result = runner.invoke(app, ["data", "inspect", str(path)])
    assert result.exit_code == 2
    assert "error:" in result.stderr
    assert "split 'train': key 'audio': expected a 3-D array (N, L, D) of frames; found shape (24, 30)" in " ".join(
        result.stderr.split()
    )
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["data", "inspect", str(tmp_path / "none.pkl"), "--json"])
    assert missing.exit_code == 2 and "file not found" in missing.stderr and missing.stdout == ""
