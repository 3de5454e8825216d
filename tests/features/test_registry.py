"""Feature sets: stable identity, rebuilt from what a checkpoint records, mismatches named."""

from __future__ import annotations

import dataclasses

import pytest

from deepmlf.errors import DataError
from deepmlf.features.registry import (FeatureSetMismatch, check_same_feature_set, feature_set_from_meta,
                                       get_feature_set)


def test_librosa_fer_identity_and_dims():
    fs = get_feature_set("librosa-fer")
    assert fs.id == "librosa-fer@1" and (fs.audio_dim, fs.vision_dim) == (26, 140)
    meta = fs.describe()
    assert meta["audio"]["names"][:2] == ["mfcc_0", "mfcc_1"] and meta["vision"]["names"][5] == "expr_angry"
    assert feature_set_from_meta(meta).fingerprint == fs.fingerprint == get_feature_set("librosa-fer@1").fingerprint


def test_changed_settings_are_another_feature_set():
    fs = get_feature_set("librosa-fer")
    other = dataclasses.replace(fs, vision=dataclasses.replace(fs.vision, fps=25.0))
    assert other.id == fs.id and other.fingerprint != fs.fingerprint
    with pytest.raises(FeatureSetMismatch, match="was recorded with other settings"):
        feature_set_from_meta(other.describe())
    with pytest.raises(DataError, match="unknown feature set 'openface'"):
        get_feature_set("openface")
    with pytest.raises(DataError, match="is at version 1"):
        get_feature_set("librosa-fer@7")


def test_mismatch_message_names_both_feature_sets():
    a = get_feature_set("librosa-fer").describe()
    b = {**a, "id": "egemaps-fer@1", "fingerprint": "f" * 64}
    check_same_feature_set(a, dict(a), expected_what="ckpt", got_what="data")
    check_same_feature_set(None, None, expected_what="ckpt", got_what="data")
    with pytest.raises(FeatureSetMismatch) as e:
        check_same_feature_set(a, b, expected_what="checkpoint best.pt", got_what="new.pkl")
    assert "new.pkl has features from egemaps-fer@1" in str(e.value)
    assert "checkpoint best.pt was trained on librosa-fer@1" in str(e.value)
    with pytest.raises(FeatureSetMismatch, match="no feature set recorded"):
        check_same_feature_set(None, a, expected_what="ckpt", got_what="data")
