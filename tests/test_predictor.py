"""`deepmlf.load(...)` -> Predictor: arrays in, named heads out, input mistakes named (modality, expected, got)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import deepmlf
from deepmlf.errors import CheckpointError, DataError


def test_import_deepmlf_stays_light():
    code = "import sys, deepmlf; assert callable(deepmlf.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.fixture(scope="module")
def model(tiny_run):
    return deepmlf.load(tiny_run / "seed-1" / "best.pt")


def test_predict_one_sample_and_a_batch_agree_with_the_split_predictions(model, tiny_run):
    from deepmlf.data import load_mmsa

    test = load_mmsa(tiny_run.parent / "toy.pkl")["test"]
    frame = model.predict_split(tiny_run.parent / "toy.pkl", "test")
    assert list(frame.columns) == ["id", "label", "y_o", "y_t", "y_av", "y_f"] and len(frame) == 8
    one = model.predict(text=test.raw_text[0], audio=test.audio[0, : test.audio_lengths[0]],
                        vision=test.vision[0, : test.vision_lengths[0]])
    assert isinstance(one, deepmlf.Prediction) and set(one.heads) == {"y_o", "y_t", "y_av", "y_f"}
    assert one.score == pytest.approx(frame.loc[0, "y_o"], abs=1e-5)
    assert one.heads["y_av"] == pytest.approx(frame.loc[0, "y_av"], abs=1e-5) and len(one.fusion_scores) == 3
    batch = model.predict(text=test.raw_text, audio=test.audio, vision=test.vision, audio_lengths=test.audio_lengths,
                          vision_lengths=test.vision_lengths, ids=test.ids)
    np.testing.assert_allclose([p.score for p in batch], frame.y_o, atol=1e-5)
    assert [p.id for p in batch] == test.ids
    # A list of unpadded arrays is the same batch.
    listed = model.predict(text=test.raw_text[:2], audio=[test.audio[i, : test.audio_lengths[i]] for i in range(2)],
                           vision=[test.vision[i, : test.vision_lengths[i]] for i in range(2)])
    np.testing.assert_allclose([p.score for p in listed], frame.y_o[:2], atol=1e-5)


def test_dimension_mistakes_name_the_modality_and_both_dims(model):
    text, a, v = "great", np.zeros((12, 5), np.float32), np.zeros((10, 20), np.float32)
    with pytest.raises(DataError, match=r"audio: expected feature dim 5 per frame, as the model was trained; got 33 "
                                        r"\(sample 0, shape \(12, 33\)\)"):
        model.predict(text=text, audio=np.zeros((12, 33), np.float32), vision=v)
    with pytest.raises(DataError, match=r"vision: expected feature dim 20 .* got 709"):
        model.predict(text=text, audio=a, vision=np.zeros((10, 709), np.float32))
    with pytest.raises(DataError, match=r"vision: sample 0 has shape \(20,\); expected \(frames, 20\)"):
        model.predict(text=[text], audio=[a], vision=[np.zeros(20, np.float32)])
    with pytest.raises(DataError, match="2 transcript"):
        model.predict(text=["a", "b"], audio=[a], vision=[v])
    with pytest.raises(DataError, match="NaN/inf"):
        model.predict(text=text, audio=np.full((12, 5), np.nan, np.float32), vision=v)


def test_a_checkpoint_without_a_feature_set_cannot_take_a_video(model, tmp_path):
    from deepmlf.features.registry import FeatureSetMismatch

    with pytest.raises(FeatureSetMismatch, match="no feature set recorded"):
        model.predict_video(tmp_path / "clip.mp4")
    assert "feature_set='none recorded'" in repr(model)


def test_load_takes_a_run_dir_and_refuses_a_missing_path(tiny_run, model, tmp_path):
    best = deepmlf.load(tiny_run)  # the seed with the best validation MAE
    assert best.source.endswith("best.pt") and best.audio_dim == 5
    with pytest.raises(CheckpointError, match="does not exist"):
        deepmlf.load(tmp_path / "nothing.pt")
