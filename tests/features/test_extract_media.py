"""From real media to a prediction (issue 13, "Done when"): espeak-ng speech muxed with a moving real face
(scikit-image's astronaut photo) and blank frames -> `features extract` on a raw-layout folder ->
one tiny training step -> prediction on the clip; plus the errors for malformed input."""

from __future__ import annotations

import csv
import importlib.util
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data import load_mmsa
from deepmlf.features.extract import ExtractionError, extract_features
from deepmlf.features.registry import FeatureSetMismatch

from .conftest import need_espeak, need_media, need_skimage

pytestmark = [pytest.mark.slow, pytest.mark.media, need_media, need_espeak, need_skimage]
runner = CliRunner()

SENTENCE = "The movie was wonderful and I really enjoyed the music."
ROWS = [  # video_id, clip_id, text in label.csv, spoken text, label, mode
    ("vidA", "1", "I love this film, it is great.", None, 2.0, "train"),
    ("vidA", "2", "This was boring and awful.", None, -2.0, "train"),
    ("vidB", "1", "The plot was fine.", None, 0.4, "valid"),
    ("vidB", "2", "", SENTENCE, 1.6, "test"),  # no transcript: speech recognition must recover it
]
TINY = [
    "model.backbone=tiny-gpt2", "model.mm_layers=[1,3]", "model.n_fusion=3", "model.n_heads=4", "model.head_hidden=8",
    "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2", "model.av_encoder.n_layers=1",
    "model.av_encoder.av_len=5", "data.max_text_len=16", "data.batch_size=2", "data.eval_batch_size=4",
    "train.grad_accum=1", "train.max_epochs=1", "train.max_steps=1", "train.mixed_precision=no", "train.seeds=[3]",
    "pretrain.max_epochs=1", "pretrain.grad_accum=1",
]


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def _wer(ref: str, hyp: str) -> float:
    import jiwer

    return jiwer.wer(" ".join(_words(ref)), " ".join(_words(hyp)))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from deepmlf.features.testing import make_clip

    root = tmp_path_factory.mktemp("raw")
    clips = {}
    for i, (vid, cid, text, spoken, label, mode) in enumerate(ROWS):
        clips[(vid, cid)] = make_clip(root / "Raw" / vid / f"{cid}.mp4", spoken or text, seed=i)
    with open(root / "label.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "text", "label", "mode"])
        for vid, cid, text, _, label, mode in ROWS:
            w.writerow([vid, cid, text, label, mode])
    vocab = root / "vocab.txt"  # a tiny WordPiece vocab: MMSA's BERT models read `text_bert` ids from it
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for r in ROWS for w in
                                                                                     _words(r[2] or r[3])})]) + "\n")
    out = root.parent / "extracted" / "unaligned.pkl"
    report = extract_features([root], out, workers=2, bert_vocab=vocab, progress=False)
    return root, clips, out, report


def test_frame_counts_and_lengths_follow_the_media_duration(media):
    root, clips, out, report = media
    data = load_mmsa(out)
    assert data.feature_set["id"] == "librosa-fer@1" and report.splits == {"train": 2, "valid": 1, "test": 1}
    for split in data.values():
        assert (split.audio_dim, split.vision_dim) == (26, 140)
        for i, sid in enumerate(split.ids):
            clip = clips[tuple(sid.split("$_$"))]
            n_samples = round(clip.duration_s * 16000)
            assert split.audio_lengths[i] == pytest.approx(1 + n_samples // 320, abs=1)  # 20 ms frames, centred
            assert split.vision_lengths[i] == pytest.approx(clip.duration_s * 10, abs=1)  # 10 fps
            assert np.all(split.audio[i, split.audio_lengths[i]:] == 0)  # zero padding past the true length
    raw = pickle.loads(out.read_bytes())
    assert isinstance(raw["train"]["audio_lengths"], list) and raw["train"]["audio"].dtype == np.float32
    assert list(raw["train"]["id"]) == ["vidA$_$1", "vidA$_$2"] and list(raw["valid"]["annotations"]) == ["Positive"]


def test_the_face_is_found_in_the_frames_that_hold_it_and_not_in_blank_ones(media):
    _, clips, out, _ = media
    data = load_mmsa(out)
    for split in data.values():
        for i, sid in enumerate(split.ids):
            start, end = clips[tuple(sid.split("$_$"))].face_times
            n = split.vision_lengths[i]
            t = np.arange(n) / 10.0
            present = split.vision[i, :n, 0]  # face_present
            inside = (t >= start + 0.15) & (t < end - 0.15)
            blank = (t < start - 0.15) | (t >= end + 0.15)
            assert inside.sum() >= 4 and blank.sum() >= 4
            assert np.all(present[inside] == 1), (sid, present)
            assert np.all(present[blank] == 0), (sid, present)
            # the face moves right and grows (box centre x and width, columns 1 and 3)
            cx, width = split.vision[i, :n, 1][inside], split.vision[i, :n, 3][inside]
            assert cx[-1] > cx[0] + 0.15 and width[-1] > width[0] * 1.15
            probs = split.vision[i, :n, 5:12][inside]
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)  # the 7 expression scores
            assert probs.argmax(1).tolist().count(3) > 0.8 * len(probs)  # mostly "happy": she smiles


def test_offline_speech_recognition_recovers_the_sentence(media):
    _, _, out, report = media
    test = load_mmsa(out)["test"]
    assert _wer(SENTENCE, test.raw_text[0]) <= 0.30, test.raw_text[0]
    assert load_mmsa(out)["train"].raw_text[0] == "I love this film, it is great."  # label.csv text kept as is
    assert [r.text_source for r in report.results] == ["label.csv", "label.csv", "label.csv", "asr"]


def test_mmsa_own_loader_reads_the_pickle_unchanged(media):
    _, _, out, _ = media
    spec = importlib.util.find_spec("MMSA")
    if spec is None:
        pytest.skip("mmsa is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data_loader.py"
    mod_spec = importlib.util.spec_from_file_location("mmsa_data_loader", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)  # only logging/pickle/numpy/torch: MMSA's other deps are not needed
    args = {"dataset_name": "mosi", "custom_feature": str(out), "use_bert": True, "feature_dims": [0, 0, 0],
            "feature_T": None, "feature_A": None, "feature_V": None, "need_data_aligned": False}
    ds = mod.MMDataset(args, mode="test")
    sample = ds[0]
    assert args["feature_dims"] == [768, 26, 140] and len(ds) == 1
    assert sample["audio"].shape[1] == 26 and sample["text"].shape == (3, 50)
    assert sample["text"][0, 0] == 2 and sample["text"][1].sum() > 3  # [CLS] id of the tiny vocab, real tokens


@pytest.fixture(scope="module")
def trained(media, tmp_path_factory):
    from deepmlf.config import load_config
    from deepmlf.train import train_run

    _, _, out, _ = media
    run = tmp_path_factory.mktemp("run") / "run"
    train_run(load_config(overrides=[*TINY, f"data.path={out}"]), run, progress=False)
    return run / "seed-3" / "best.pt"


def test_one_training_step_records_the_feature_set_and_predicts_on_the_clip(media, trained):
    import deepmlf

    root, clips, out, _ = media
    ckpt = torch.load(trained, weights_only=True)
    assert ckpt["feature_set"]["id"] == "librosa-fer@1" and ckpt["feature_set"]["audio_dim"] == 26
    model = deepmlf.load(trained)
    p = model.predict_video(clips[("vidB", "2")].path)
    assert np.isfinite(p.score) and set(p.heads) == {"y_o", "y_t", "y_av", "y_f"} and len(p.fusion_scores) == 3
    assert p.text_source == "asr" and _wer(SENTENCE, p.text) <= 0.30 and p.rationale is None
    assert p.face_frames[0] > 0.6 * p.face_frames[1]
    # The very features `features extract` wrote give the very same scores.
    frame = model.predict_split(out, "test")
    assert frame.loc[0, "y_o"] == pytest.approx(p.score, abs=1e-5)
    assert frame.loc[0, "y_av"] == pytest.approx(p.heads["y_av"], abs=1e-5)

    csv_out = trained.parent / "video_predictions.csv"
    res = runner.invoke(app, ["predict", "--checkpoint", str(trained), "--video", str(root / "Raw" / "vidB"),
                              "--out", str(csv_out)])
    assert res.exit_code == 0, res.output
    assert "score" in res.output and "y_av" in res.output and "2 predictions" in res.output
    import pandas as pd

    rows = pd.read_csv(csv_out)
    assert list(rows.id) == ["vidB$_$1", "vidB$_$2"] and list(rows.text_source) == ["asr", "asr"]
    assert rows.loc[1, "score"] == pytest.approx(p.score, abs=1e-5)


def test_features_from_another_extractor_are_refused_naming_both(media, trained, tmp_path):
    import deepmlf

    _, clips, out, _ = media
    raw = pickle.loads(out.read_bytes())
    raw["feature_set"] = {**raw["feature_set"], "id": "egemaps-fer@1", "fingerprint": "e" * 64}
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps(raw))
    res = runner.invoke(app, ["predict", "--checkpoint", str(trained), "--data", str(other), "--out",
                              str(tmp_path / "p.csv")])
    assert res.exit_code == 2
    assert "has features from egemaps-fer@1" in res.output and "was trained on librosa-fer@1" in res.output

    ckpt = torch.load(trained, weights_only=True)
    del ckpt["feature_set"]  # as if trained on MMSA's own processed features
    plain = tmp_path / "plain.pt"
    torch.save(ckpt, plain)
    with pytest.raises(FeatureSetMismatch, match="no feature set recorded .* cannot compute from a video"):
        deepmlf.load(plain).predict_video(clips[("vidA", "1")].path)


def test_malformed_clips_fail_clearly_and_lose_nothing(media, tmp_path):
    from deepmlf.features.testing import make_clip

    root, clips, _, _ = media
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(clips[("vidA", "1")].path, folder / "good.mp4")
    make_clip(folder / "silent.mp4", "no sound here", audio=False)
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    out = tmp_path / "out.pkl"
    out.write_bytes(b"earlier result")  # an earlier pickle survives a failed run

    with pytest.raises(ExtractionError) as e:
        extract_features([folder], out, progress=False)
    msg = str(e.value)
    assert "2 of 3 clip(s) failed; the 1 others are cached" in msg and "was not written" in msg
    assert "silent.mp4: no audio track" in msg and "broken.mp4: not a readable media file" in msg
    assert out.read_bytes() == b"earlier result"

    res = runner.invoke(app, ["features", "extract", str(folder), "--out", str(out), "--dry-run"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "no audio track" in res.output and "audio, vision" in res.output  # good one cached

    report = extract_features([folder], out, skip_errors=True, progress=False)  # resumes: the good clip is cached
    assert [r.clip.id for r in report.results] == ["clips$_$good"] and report.results[0].cached["audio"]
    assert report.results[0].cached["vision"] and report.results[0].cached["asr"]
    assert "skipped 2 clip(s)" in report.notes[0] and load_mmsa(out, require_labels=False)["test"].ids == ["clips$_$good"]


def test_cli_errors_for_an_empty_folder_and_a_label_csv_without_a_column(tmp_path, media):
    root, _, _, _ = media
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["features", "extract", str(tmp_path / "empty"), "--out", str(tmp_path / "o.pkl")])
    assert res.exit_code == 2 and "no media files found" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad"
    shutil.copytree(root / "Raw", bad / "Raw")
    (bad / "label.csv").write_text("video_id,clip_id,label,mode\nvidA,1,1.0,train\n")
    res = runner.invoke(app, ["features", "extract", str(bad), "--out", str(tmp_path / "o.pkl")])
    assert res.exit_code == 2 and "missing column 'text'" in res.output
    assert not (tmp_path / "o.pkl").exists()
