"""Utterance-level audio/video features from real (synthesised) clips: espeak-ng speech over a moving face."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from deepmlf.data.erc import load_erc
from deepmlf.data.erc import testing as T
from deepmlf.encoders.features import attach_features, load_features
from deepmlf.encoders.media import extract_media_features, pool_audio, pool_video
from deepmlf.errors import DataError

MEDIA = ("librosa", "cv2", "imageio_ffmpeg", "h5py", "fer", "skimage")
need_media = pytest.mark.skipif(shutil.which("espeak-ng") is None or any(importlib.util.find_spec(m) is None for m in MEDIA),
                                reason="needs espeak-ng and the [media] extra")


def test_pooling():
    f = np.array([[1.0, 2.0], [3.0, 6.0]])
    assert pool_audio(f).tolist() == [2.0, 4.0, 1.0, 2.0]
    assert pool_video(f, np.array([False, True])).tolist() == [3.0, 6.0]
    assert pool_video(f, np.array([False, False])).tolist() == [0.0, 0.0]


def test_missing_clip_is_named(tmp_path):
    data = load_erc(T.write_meld_csvs(tmp_path / "meld"))
    (tmp_path / "media").mkdir()
    with pytest.raises(DataError, match=r"no clip for 9 utterance\(s\), e.g. dia0_utt0"):
        extract_media_features(data, tmp_path / "media", out_audio=tmp_path / "a.npz", out_video=tmp_path / "v.npz",
                               progress=False)


@pytest.mark.slow
@need_media
def test_media_features_from_clips(tmp_path):
    from deepmlf.features.testing import make_clip

    data = load_erc(T.write_meld_csvs(tmp_path / "meld"))
    data.splits = {"test": data["test"]}  # two utterances keep it short
    for c in data["test"]:
        for j, u in enumerate(c.utterance_ids):
            make_clip(tmp_path / "media" / "sub" / f"{u}.mp4", c.texts[j], seed=j)
    a, v = extract_media_features(data, tmp_path / "media", out_audio=tmp_path / "a.npz", out_video=tmp_path / "v.npz",
                                  cache_dir=tmp_path / "cache", progress=False)
    ids, X, meta, _ = load_features(a)
    assert ids == ["test/dia3_utt0", "test/dia3_utt1"] and X.shape[0] == 2 and np.isfinite(X).all()
    assert meta["modality"] == "audio"
    _, V, _, _ = load_features(v)
    from deepmlf.features.registry import get_feature_set

    assert V.shape == (2, get_feature_set("librosa-fer").vision_dim) and np.abs(V).sum() > 0  # a face was found
    assert attach_features(data, "audio", a) == X.shape[1]
