"""ERC runs on the one loop: stage 1 + stage 2 per seed, the run dir, evaluate, the probe and its oracle."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from deepmlf.config_erc import load_erc_config
from deepmlf.data.erc.probe import ProbeSpec, make_probe, oracle_posteriors
from deepmlf.train.erc_run import evaluate_erc, train_erc

SMALL = ["stage1.d_feature=8", "stage1.epochs=2", "model.d_model=8", "model.n_heads=2", "train.epochs=2",
         "data.batch_size=8", "train.seeds=[1,2]"]


def probe_data(n=24):
    spec = ProbeSpec(n_dialogues=n, seed=5)
    data, lik = make_probe(spec)
    rng = np.random.default_rng(0)
    for convs in data.splits.values():
        for c in convs:  # a stand-in text feature: the line's hash
            c.features["text"] = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=6) for t in c.texts]
                                          ).astype(np.float32) + 0 * rng.normal()
    return data, lik, spec


def test_probe_is_reproducible_and_oracle_beats_per_utterance():
    spec = ProbeSpec(n_dialogues=80, seed=3)
    (a, la), (b, lb) = make_probe(spec), make_probe(spec)
    assert [c.texts for c in a["train"]] == [c.texts for c in b["train"]]
    assert np.array_equal(a["test"][0].features["audio"], b["test"][0].features["audio"])
    full = oracle_posteriors(a, la, spec)
    text = oracle_posteriors(a, la, spec, modalities=("text",))
    keys = [f"test/{u}" for c in a["test"] for u in c.utterance_ids]
    y = np.array([v for c in a["test"] for v in c.labels])
    acc = lambda p: float(np.mean([p[k].argmax() for k in keys] == y))  # noqa: E731
    assert acc(full) >= acc(text) - 0.02 and acc(full) > 0.8
    for k in keys:
        assert abs(full[k].sum() - 1) < 1e-9


def test_oracle_single_utterance_is_bayes_rule():
    """A speaker with one utterance: the posterior is prior × likelihood, normalised."""
    from deepmlf.data.erc.probe import PRIOR, _gauss_loglik, _means

    spec = ProbeSpec(n_dialogues=40, seed=1)
    data, lik = make_probe(spec)
    post = oracle_posteriors(data, lik, spec, modalities=("text", "audio"))
    ma, _ = _means(spec)
    for split, convs in data.splits.items():
        for c in convs:
            for j, s in enumerate(c.speakers):
                if c.speakers.count(s) == 1:
                    ll = np.log(lik[f"{split}/{c.utterance_ids[j]}"] + 1e-300) + _gauss_loglik(c.features["audio"][j:j + 1].astype(float), ma)[0]
                    p = PRIOR * np.exp(ll - ll.max())
                    assert np.allclose(post[f"{split}/{c.utterance_ids[j]}"], p / p.sum(), atol=1e-9)
                    return
    pytest.skip("no single-utterance speaker in this probe")


def test_train_erc_run_dir_and_evaluate(tmp_path):
    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL)
    result = train_erc(cfg, tmp_path / "run", data=data, progress=False)
    run = tmp_path / "run"
    assert sorted(result.per_seed) == [1, 2]
    assert json.loads((run / "task.json").read_text())["name"] == "erc"
    s1 = run / "seed-1" / "stage1"
    assert sorted(p.name for p in (s1 / "features").glob("*.npz")) == [
        "audio.npz", "audio_kd.npz", "text.npz", "video.npz", "video_kd.npz"]
    assert set(json.loads((s1 / "metrics.json").read_text())) == {"text", "audio", "audio_kd", "video", "video_kd"}
    hist = [json.loads(line) for line in (run / "seed-1" / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 2 and "weighted_f1" in hist[0]["valid"] and "kd_a_logit" in hist[0]["train"]
    res = json.loads((run / "results.json").read_text())
    assert res["n_seeds"] == 2 and set(res["mean"]) >= {"acc", "weighted_f1", "macro_f1"}
    test = json.loads((run / "seed-1" / "test_metrics.json").read_text())
    metrics, preds, task = evaluate_erc(run, seed=1, data=data)  # rebuilt from the run dir: same numbers
    assert metrics["acc"] == pytest.approx(test["acc"]) and metrics["weighted_f1"] == pytest.approx(test["weighted_f1"])
    frame = task.predictions_frame(preds)
    assert {"p_joy", "label_name", "prediction_name"} <= set(frame.columns)


def test_train_erc_text_only_without_stage1(tmp_path):
    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL + ["stage1.enabled=false", "model.modalities=[text]",
                                                                "train.seeds=[3]"])
    result = train_erc(cfg, tmp_path / "r", data=data, progress=False)
    assert list(result.per_seed) == [3] and not (tmp_path / "r" / "seed-3" / "stage1").exists()


def test_stage1_disabled_needs_raw_inputs(tmp_path):
    from deepmlf.errors import ConfigError

    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL + ["stage1.enabled=false"])
    with pytest.raises(ConfigError, match=r"stage1.enabled=false, but stage 2 reads audio_kd, video_kd"):
        train_erc(cfg, tmp_path / "x", data=data, progress=False)


def test_run_dir_refuses_another_config(tmp_path):
    from deepmlf.errors import ConfigError

    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL + ["train.seeds=[1]", "model.modalities=[text]"])
    train_erc(cfg, tmp_path / "r", data=data, progress=False)
    more = load_erc_config(preset="erc-demo", overrides=SMALL + ["train.seeds=[1,2]", "model.modalities=[text]"])
    assert sorted(train_erc(more, tmp_path / "r", data=data, progress=False).per_seed) == [1, 2]
    other = load_erc_config(preset="erc-demo", overrides=SMALL + ["train.seeds=[1]", "model.modalities=[text]",
                                                                  "model.gate=none"])
    with pytest.raises(ConfigError, match=r"another configuration \(model.gate;"):
        train_erc(other, tmp_path / "r", data=data, progress=False)
    # --overwrite starts over with the new configuration; the old seeds are gone
    result = train_erc(other, tmp_path / "r", data=data, overwrite=True, progress=False)
    assert sorted(result.per_seed) == [1] and not (tmp_path / "r" / "seed-2").exists()


def test_unfinished_work_is_refused_without_resume(tmp_path):
    from deepmlf.errors import ConfigError, RunDirError

    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL + ["train.seeds=[1]", "model.modalities=[text]"])
    train_erc(cfg, tmp_path / "r", data=data, progress=False)
    (tmp_path / "r" / "seed-1" / "DONE").unlink()  # as if killed after its last epoch
    with pytest.raises(RunDirError, match=r"holds unfinished work \(seed 1: stage 2\): pass --resume"):
        train_erc(cfg, tmp_path / "r", data=data, progress=False)
    with pytest.raises(ConfigError, match="exclude each other"):
        train_erc(cfg, tmp_path / "r", data=data, resume=True, overwrite=True, progress=False)
    resumed = train_erc(cfg, tmp_path / "r", data=data, resume=True, progress=False)
    assert (tmp_path / "r" / "seed-1" / "DONE").exists() and sorted(resumed.per_seed) == [1]


def test_a_run_dir_held_by_another_writer_is_refused(tmp_path):
    from deepmlf.runlock import RunDirLocked, run_lock

    data, _, _ = probe_data()
    cfg = load_erc_config(preset="erc-demo", overrides=SMALL + ["train.seeds=[1]", "model.modalities=[text]"])
    with run_lock(tmp_path / "r"):  # another open file description: flock refuses it as it would another process
        with pytest.raises(RunDirLocked, match="is in use by pid"):
            train_erc(cfg, tmp_path / "r", data=data, progress=False)
    assert not any((tmp_path / "r").glob("seed-*"))
