"""load_mmsa: the MMSA layout is read exactly, and every kind of bad file gets an error naming file, split and key."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from deepmlf.data import MMSAData, Split, load_mmsa, mmsa_from_dict
from deepmlf.data.testing import make_mmsa_dict, write_mmsa_pickle
from deepmlf.errors import ConfigError, DataError


def _write(tmp_path, name="f.pkl", **kwargs):
    return write_mmsa_pickle(tmp_path / name, **kwargs)


def _raises(match: str):
    return pytest.raises(DataError, match=re.escape(match))


# --------------------------------------------------------------------------------------- good files
def test_reads_the_mmsa_layout_exactly(mmsa_pickle):
    expected = make_mmsa_dict()  # same defaults and seed as the fixture
    data = load_mmsa(mmsa_pickle)
    assert isinstance(data, MMSAData) and isinstance(data, dict)
    assert list(data) == ["train", "valid", "test"]
    for name, n in zip(("train", "valid", "test"), (24, 8, 8)):
        split = data[name]
        raw = expected[name]
        assert isinstance(split, Split) and split.name == name and len(split) == n
        assert split.audio.shape == (n, 30, 5) and split.audio.dtype == np.float32
        assert split.vision.shape == (n, 40, 20) and split.vision.dtype == np.float32
        assert (split.audio_dim, split.vision_dim) == (5, 20)
        np.testing.assert_array_equal(split.audio, raw["audio"])
        np.testing.assert_array_equal(split.vision, raw["vision"])
        assert split.audio_lengths.dtype == np.int64 and split.vision_lengths.dtype == np.int64
        assert split.audio_lengths.tolist() == raw["audio_lengths"]
        assert split.vision_lengths.tolist() == raw["vision_lengths"]
        assert split.labels.dtype == np.float32 and split.labels.shape == (n,)
        np.testing.assert_array_equal(split.labels, raw["regression_labels"])
        assert split.ids == list(raw["id"]) and all(type(i) is str for i in split.ids)
        assert split.raw_text == list(raw["raw_text"]) and all(type(t) is str for t in split.raw_text)
        assert split.nonfinite_replaced == {"audio": 0, "vision": 0}
        assert split.has_labels
    assert data.dataset == "mosi" and data.label_range == (-3.0, 3.0)
    assert "ignored keys (not used by deepmlf): annotations, classification_labels, text, text_bert" in data.notes


def test_float64_features_become_float32_and_float32_is_not_copied():
    raw = make_mmsa_dict()
    raw["train"]["audio"] = raw["train"]["audio"].astype(np.float64)
    vision_in = raw["train"]["vision"]
    data = mmsa_from_dict(raw, dataset="mosi")
    assert data["train"].audio.dtype == np.float32
    assert data["train"].vision is vision_in  # already float32: used in place, no multi-GB copy


def test_labels_of_shape_n_by_1_are_flattened_and_raw_text_may_be_a_unicode_array(tmp_path):
    raw = make_mmsa_dict()
    labels = raw["train"]["regression_labels"]
    path = _write(
        tmp_path,
        train__regression_labels=labels.reshape(-1, 1).astype(np.float64),
        train__raw_text=np.array(raw["train"]["raw_text"].tolist()),  # dtype <U.., not object
        train__id=np.array(raw["train"]["id"].tolist()),
    )
    split = load_mmsa(path)["train"]
    assert split.labels.shape == (24,)
    np.testing.assert_array_equal(split.labels, labels)
    assert split.raw_text == raw["train"]["raw_text"].tolist() and type(split.raw_text[0]) is str
    assert type(split.ids[0]) is str


def test_nonfinite_features_are_zeroed_and_counted(tmp_path):
    raw = make_mmsa_dict()
    audio = raw["train"]["audio"].copy()
    audio[0, 0, 0] = np.nan
    audio[1, 2, 3] = -np.inf  # as in real MOSEI COVAREP
    audio[5, 1, 1] = np.inf
    vision = raw["valid"]["vision"].copy()
    vision[2, 3, :4] = np.nan
    data = load_mmsa(_write(tmp_path, train__audio=audio, valid__vision=vision))
    assert data["train"].nonfinite_replaced == {"audio": 3, "vision": 0}
    assert data["valid"].nonfinite_replaced == {"audio": 0, "vision": 4}
    assert data["test"].nonfinite_replaced == {"audio": 0, "vision": 0}
    assert data["train"].audio[0, 0, 0] == 0 and data["train"].audio[1, 2, 3] == 0 and data["train"].audio[5, 1, 1] == 0
    assert np.isfinite(data["train"].audio).all() and np.isfinite(data["valid"].vision).all()
    untouched = np.isfinite(audio)
    np.testing.assert_array_equal(data["train"].audio[untouched], audio[untouched])
    assert "train: replaced 3 non-finite values (NaN/±inf) in audio with 0" in data.notes
    assert "valid: replaced 4 non-finite values (NaN/±inf) in vision with 0" in data.notes


def test_missing_lengths_are_derived_from_the_last_nonzero_frame(tmp_path):
    raw = make_mmsa_dict()
    audio = raw["train"]["audio"].copy()
    audio[0] = 0.0  # all-zero sample -> length 1
    audio[1, :] = 0.0
    audio[1, 4] = 1.0  # frames 0-3 zero, 4 real, rest zero -> 5 (a zero frame inside does not shorten)
    audio[1, 2] = 0.0
    data = load_mmsa(_write(tmp_path, train__audio=audio, train__audio_lengths=None, test__vision_lengths=None))
    derived = data["train"].audio_lengths
    assert derived.dtype == np.int64
    assert derived[0] == 1 and derived[1] == 5
    assert derived[2:].tolist() == raw["train"]["audio_lengths"][2:]
    assert data["test"].vision_lengths.tolist() == raw["test"]["vision_lengths"]
    assert "train: no 'audio_lengths'; derived as the last non-zero audio frame + 1 (min 1)" in data.notes
    assert "test: no 'vision_lengths'; derived as the last non-zero vision frame + 1 (min 1)" in data.notes


def test_length_zero_becomes_one_with_a_note(tmp_path):
    lengths = make_mmsa_dict()["valid"]["audio_lengths"]
    lengths[3] = 0
    lengths[5] = 0
    data = load_mmsa(_write(tmp_path, valid__audio_lengths=lengths))
    assert data["valid"].audio_lengths[3] == 1 and data["valid"].audio_lengths[5] == 1
    assert "valid: 2 audio_lengths of 0 set to 1" in data.notes


def test_missing_ids_are_generated(tmp_path):
    data = load_mmsa(_write(tmp_path, valid__id=None))
    assert data["valid"].ids == [f"valid-{i}" for i in range(8)]
    assert "valid: no 'id'; generated ids valid-0 .. valid-7" in data.notes


def test_prediction_files_may_hold_any_split_and_no_labels(tmp_path):
    path = _write(tmp_path, train=None, valid=None, test__regression_labels=None)
    data = load_mmsa(path, require_labels=False)
    assert list(data) == ["test"]
    assert not data["test"].has_labels and np.isnan(data["test"].labels).all()
    assert "test: no 'regression_labels'; labels are NaN (prediction only)" in data.notes
    assert "train" not in data and data.get("train") is None
    with _raises(f"{path}: no split 'train'; the file holds: test"):
        data["train"]
    with pytest.raises(KeyError):  # Mapping idioms keep working
        data["train"]


def test_dataset_inference(tmp_path):
    sims = load_mmsa(_write(tmp_path, "s.pkl", dataset="sims", audio_dim=33, vision_dim=709, n_per_split=(4, 2, 2), lv=5))
    assert sims.dataset == "sims" and sims.label_range == (-1.0, 1.0) and sims.family == "sims"
    assert (
        "dataset inferred as sims: it holds regression_labels_T/A/V (CH-SIMS's unimodal labels); "
        "feature dims (audio 33, vision 709) are the standard CH-SIMS features"
    ) in sims.notes
    # SIMS dims with MOSI-range labels: not SIMS (the label range outranks the dims, and says so).
    odd = load_mmsa(_write(tmp_path, "o.pkl", dataset="mosi", audio_dim=33, vision_dim=709, n_per_split=(4, 2, 2), lv=5))
    assert odd.dataset is None and odd.dataset_label == "mosi/mosei-like" and odd.family == "mosi"
    assert any("set aside: feature dims (audio 33, vision 709) are the standard CH-SIMS features" in n for n in odd.notes)
    mosei = load_mmsa(_write(tmp_path, "m.pkl", dataset="mosei", audio_dim=74, vision_dim=35, n_per_split=(4, 2, 2)))
    assert mosei.dataset == "mosei"
    custom = load_mmsa(_write(tmp_path, "c.pkl", audio_dim=7, vision_dim=9))
    assert custom.dataset is None and custom.label_range == (-3.0, 3.0)
    assert any("treated as mosi/mosei-like (labels in [-3, 3])" in n for n in custom.notes)
    explicit = load_mmsa(_write(tmp_path, "e.pkl", audio_dim=7, vision_dim=9), dataset="mosei")
    assert explicit.dataset == "mosei"
    assert any("differ from the standard mosei features (audio 74, vision 35)" in n for n in explicit.notes)


def test_unknown_dataset_name_is_a_config_error(mmsa_pickle):
    with pytest.raises(ConfigError, match="dataset='iemocap': expected one of mosi, mosei, sims"):
        load_mmsa(mmsa_pickle, dataset="iemocap")


def test_label_slack_of_float_roundoff_is_accepted(tmp_path):
    labels = make_mmsa_dict()["train"]["regression_labels"].astype(np.float64)
    labels[0] = 3.0 + 5e-7
    assert load_mmsa(_write(tmp_path, train__regression_labels=labels))["train"].labels.shape == (24,)


# --------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    path = tmp_path / "nope.pkl"
    with _raises(f"{path}: file not found"):
        load_mmsa(path)


def test_directory_instead_of_file(tmp_path):
    with _raises(f"{tmp_path}: is a directory; expected an MMSA pickle file"):
        load_mmsa(tmp_path)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("this is not a pickle\n")
    with _raises(f"{path}: not a readable pickle"):
        load_mmsa(path)


def test_truncated_pickle(tmp_path, mmsa_pickle):
    path = tmp_path / "cut.pkl"
    path.write_bytes(mmsa_pickle.read_bytes()[:5000])
    with _raises(f"{path}: not a readable pickle"):
        load_mmsa(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with _raises(f"{path}: expected a dict with splits train, valid, test (MMSA layout); found list"):
        load_mmsa(path)


def test_flat_split_at_top_level_is_explained(tmp_path):
    path = tmp_path / "flat.pkl"
    path.write_bytes(pickle.dumps(make_mmsa_dict()["test"]))
    with _raises("the top level holds feature keys (raw_text, audio, vision"):
        load_mmsa(path)


def test_missing_split_lists_what_was_found(tmp_path):
    path = _write(tmp_path, valid=None)
    with _raises(f"{path}: missing split 'valid'; expected train, valid, test; found keys: train, test"):
        load_mmsa(path)


def test_no_split_at_all_even_for_prediction(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(pickle.dumps({"meta": 1}))
    with _raises(f"{path}: holds none of the splits train, valid, test; found keys: meta"):
        load_mmsa(path, require_labels=False)


def test_split_that_is_not_a_dict(tmp_path):
    path = _write(tmp_path, test=[1, 2])
    with _raises(f"{path}: split 'test': expected a dict of arrays (raw_text, audio, vision, ...); found list"):
        load_mmsa(path)


@pytest.mark.parametrize("key", ["raw_text", "audio", "vision", "regression_labels"])
def test_missing_key_lists_the_keys_found(tmp_path, key):
    path = _write(tmp_path, **{f"train__{key}": None})
    with pytest.raises(DataError) as err:
        load_mmsa(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: split 'train': missing key {key!r}; expected raw_text, audio, vision, regression_labels")
    assert "found keys: " in msg and "annotations" in msg


def test_mismatched_sample_counts_name_both_keys(tmp_path):
    text = make_mmsa_dict()["train"]["raw_text"][:23]
    path = _write(tmp_path, train__raw_text=text)
    with _raises(f"{path}: split 'train': sample counts differ: 'audio' has 24 samples but 'raw_text' has 23"):
        load_mmsa(path)
    path = _write(tmp_path, "l.pkl", valid__vision_lengths=[5] * 9)
    with _raises("split 'valid': sample counts differ: 'audio' has 8 samples but 'vision_lengths' has 9"):
        load_mmsa(path)


def test_non_3d_features(tmp_path):
    path = _write(tmp_path, train__vision=np.zeros((24, 40), np.float32))
    with _raises(f"{path}: split 'train': key 'vision': expected a 3-D array (N, L, D) of frames; found shape (24, 40)"):
        load_mmsa(path)


def test_non_numeric_features(tmp_path):
    path = _write(tmp_path, valid__audio=np.full((8, 30, 5), "x", dtype=object))
    with _raises("split 'valid': key 'audio': expected numeric features; found dtype object"):
        load_mmsa(path)


def test_feature_dims_must_agree_across_splits(tmp_path):
    audio = np.ones((8, 30, 6), np.float32)
    path = _write(tmp_path, test__audio=audio)
    with _raises(f"{path}: key 'audio': feature dim differs across splits: 'train' has 5, 'test' has 6"):
        load_mmsa(path)


@pytest.mark.parametrize("bad", [31, -1])
def test_lengths_outside_the_frame_count(tmp_path, bad):
    lengths = make_mmsa_dict()["train"]["audio_lengths"]
    lengths[7] = bad
    path = _write(tmp_path, train__audio_lengths=lengths)
    with _raises(
        f"{path}: split 'train': key 'audio_lengths': expected lengths in [0, 30] (the array holds 30 frames); "
        f"1 outside, e.g. sample 7 has {bad}"
    ):
        load_mmsa(path)


def test_fractional_lengths(tmp_path):
    lengths = np.array(make_mmsa_dict()["test"]["vision_lengths"], dtype=np.float64)
    lengths[2] = 3.5
    path = _write(tmp_path, test__vision_lengths=lengths)
    with _raises("split 'test': key 'vision_lengths': expected integer frame counts; sample 2 has 3.5"):
        load_mmsa(path)


def test_labels_outside_the_dataset_range(tmp_path):
    labels = make_mmsa_dict()["train"]["regression_labels"].copy()
    labels[4] = 3.5
    labels[9] = -4.0
    path = _write(tmp_path, train__regression_labels=labels)
    with _raises(
        f"{path}: split 'train': key 'regression_labels': expected scores in [-3, 3] for mosi; "
        "2 outside, e.g. 3.5 (id 'trainvid002$_$0')"
    ):
        load_mmsa(path)


def test_mosi_range_labels_declared_as_sims(mmsa_pickle):
    with _raises("key 'regression_labels': expected scores in [-1, 1] for sims"):
        load_mmsa(mmsa_pickle, dataset="sims")


def test_nonfinite_labels(tmp_path):
    labels = make_mmsa_dict()["valid"]["regression_labels"].copy()
    labels[6] = np.nan
    path = _write(tmp_path, valid__regression_labels=labels)
    with _raises(f"{path}: split 'valid': key 'regression_labels': 1 non-finite labels, e.g. sample 6 has nan"):
        load_mmsa(path)


def test_labels_of_wrong_shape(tmp_path):
    path = _write(tmp_path, test__regression_labels=np.zeros((8, 3), np.float32))
    with _raises("split 'test': key 'regression_labels': expected shape (N,) or (N, 1); found (8, 3)"):
        load_mmsa(path)


def test_empty_split(tmp_path):
    path = _write(tmp_path, n_per_split=(24, 0, 8))
    with _raises(f"{path}: split 'valid': holds no samples"):
        load_mmsa(path)
