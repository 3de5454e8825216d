"""train_run on tiny-gpt2: the run directory, checkpoint round-trip, resume, DONE skipping."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from deepmlf.errors import CheckpointError, ConfigError
from deepmlf.io import read_jsonl
from deepmlf.metrics import key_metric_names
from deepmlf.model import build_av_encoder, load_av_encoder_checkpoint
from deepmlf.train import evaluate_checkpoint, load_model_from_checkpoint, predict, train_run
from deepmlf.train.checkpoint import load_best, load_last
from deepmlf.train.run import _eval_loader, load_data
from deepmlf.train.evaluate import collect_predictions
from deepmlf.report.rundir import read_model_dir

from .conftest import tiny_config

FAST = ["train.max_epochs=1", "train.limit_batches=2", "model.av_encoder.init=random_tune"]


def test_run_directory_layout(trained_run):
    cfg, run_dir, result = trained_run
    seed = run_dir / "seed-1"
    for name in ("config.yaml", "results.csv", "results.json"):
        assert (run_dir / name).is_file(), name
    for name in ("stage1/best.pt", "stage1/history.jsonl", "last.pt", "best.pt", "history.jsonl",
                 "test_metrics.json", "predictions_test.csv", "gates.json", "DONE"):
        assert (seed / name).is_file(), name
    hist = read_jsonl(seed / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2]
    assert set(hist[0]["train"]) == {"loss", "task", "f", "av", "t", "lm"}
    assert {"Loss", "MAE", "task", "f", "av", "t", "lm"} <= set(hist[0]["valid"])
    metrics = json.loads((seed / "test_metrics.json").read_text())
    assert list(metrics) == list(key_metric_names("mosi"))
    gates = json.loads((seed / "gates.json").read_text())
    assert [g["layer"] for g in gates] == [1, 3] and all(0 < g["gate_attn"] < 1 for g in gates)
    preds = pd.read_csv(seed / "predictions_test.csv")
    assert list(preds.columns) == ["id", "label", "y_o", "y_t", "y_av", "y_f"] and len(preds) == 8
    # The task-head column is what the test metrics were computed from.
    assert metrics["MAE"] == pytest.approx((preds.y_o - preds.label).abs().mean(), abs=1e-6)
    assert result.per_seed[1] == metrics


def test_stage1_checkpoint_initialises_the_av_encoder(trained_run):
    cfg, run_dir, _ = trained_run
    path = run_dir / "seed-1" / "stage1" / "best.pt"
    ckpt = load_best(path)
    enc = build_av_encoder(cfg.model.av_encoder, audio_dim=ckpt["audio_dim"], vision_dim=ckpt["vision_dim"])
    load_av_encoder_checkpoint(enc, path)
    for k, v in ckpt["av_encoder"].items():
        assert torch.equal(enc.state_dict()[k], v)


def test_best_checkpoint_round_trip_gives_identical_predictions(trained_run, toy_pickle):
    cfg, run_dir, _ = trained_run
    loaded = load_model_from_checkpoint(run_dir / "seed-1" / "best.pt")
    data = load_data(cfg)
    preds = collect_predictions(loaded.model, _eval_loader(cfg, data["test"], loaded.tokenizer))
    saved = pd.read_csv(run_dir / "seed-1" / "predictions_test.csv")
    assert list(saved.id) == preds.ids
    # CSV floats are printed to float32 precision: compare to that; and two rebuilds agree exactly.
    assert saved.y_o.to_numpy() == pytest.approx(preds.prediction, abs=1e-6)
    again = load_model_from_checkpoint(run_dir / "seed-1" / "best.pt")
    preds2 = collect_predictions(again.model, _eval_loader(cfg, data["test"], again.tokenizer))
    assert (preds2.prediction == preds.prediction).all()


def test_evaluate_and_predict_from_checkpoint(trained_run, toy_pickle, tmp_path):
    _, run_dir, _ = trained_run
    ckpt = run_dir / "seed-1" / "best.pt"
    metrics = evaluate_checkpoint(ckpt, toy_pickle, "test")
    stored = json.loads((run_dir / "seed-1" / "test_metrics.json").read_text())
    for k, v in stored.items():
        assert metrics[k] == pytest.approx(v, abs=1e-6)
    assert metrics["Loss"] == pytest.approx(stored["MAE"], abs=1e-6)  # MOSI MAE is unclipped L1
    frame = predict(ckpt, toy_pickle, "valid", tmp_path / "p.csv")
    assert len(frame) == 8 and frame.id.is_unique
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["id", "label", "y_o", "y_t", "y_av", "y_f"]


def test_predict_without_labels(trained_run, tmp_path):
    from deepmlf.data.testing import write_mmsa_pickle

    _, run_dir, _ = trained_run
    unlabelled = write_mmsa_pickle(tmp_path / "u.pkl", n_per_split=(4, 4, 5), la=20, lv=20,
                                   train__regression_labels=None, valid__regression_labels=None,
                                   test__regression_labels=None)
    frame = predict(run_dir / "seed-1" / "best.pt", unlabelled, "test")
    assert len(frame) == 5 and frame.label.isna().all() and frame.y_o.notna().all()


def test_checkpoint_errors_name_the_file(tmp_path, trained_run, toy_pickle):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_from_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_model_from_checkpoint(bad)


def test_done_seed_is_skipped_and_other_config_is_refused(trained_run):
    cfg, run_dir, _ = trained_run
    done = (run_dir / "seed-1" / "DONE").read_text()
    mtime = (run_dir / "seed-1" / "best.pt").stat().st_mtime_ns
    train_run(cfg, run_dir, progress=False)
    assert (run_dir / "seed-1" / "DONE").read_text() == done
    assert (run_dir / "seed-1" / "best.pt").stat().st_mtime_ns == mtime
    other = tiny_config(cfg.data.path, "pretrain.max_epochs=1", "model.n_fusion=4")
    with pytest.raises(ConfigError, match="model.n_fusion"):
        train_run(other, run_dir, progress=False)


def test_missing_data_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.path is not set: pass --data PATH"):
        train_run(tiny_config(None), tmp_path / "r", progress=False)


class Interrupt(Exception):
    pass


def test_train_run_resume_matches_an_uninterrupted_run(tmp_path, toy_pickle):
    cfg = tiny_config(toy_pickle, "model.av_encoder.init=random_tune", "train.max_epochs=2", "train.limit_batches=2")
    train_run(cfg, tmp_path / "ref", progress=False)

    def interrupt(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_run(cfg, tmp_path / "cut", progress=False, callbacks=[interrupt])
    seed = tmp_path / "cut" / "seed-1"
    assert not (seed / "DONE").exists()
    state = load_last(seed / "last.pt", stage="stage2")
    assert (state["epoch"], state["global_step"]) == (1, 1)  # 2 batches, accumulation 2

    train_run(cfg, tmp_path / "cut", resume=True, progress=False)
    hist = read_jsonl(seed / "history.jsonl")
    ref = read_jsonl(tmp_path / "ref" / "seed-1" / "history.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2] and [h["step"] for h in hist] == [1, 2]
    assert [h["lr"] for h in hist] == [h["lr"] for h in ref]
    assert hist[1]["valid"] == pytest.approx(ref[1]["valid"])
    assert json.loads((seed / "test_metrics.json").read_text()) == pytest.approx(
        json.loads((tmp_path / "ref" / "seed-1" / "test_metrics.json").read_text()))


# ----------------------------------------------------------------------------- another arch, same runner


@pytest.fixture
def fake_arch():
    """A model.arch without backbone, gates or stage 1, registered for one test."""
    from deepmlf.model.registry import Arch, register_arch, unregister_arch

    from .conftest import FakeRegressor

    register_arch(Arch(name="fake-av", task="msa", inputs=("audio",), display_name="FakeAV",
                       build=lambda cfg, *, dims, backbone: FakeRegressor(dims["audio"])))
    yield "fake-av"
    unregister_arch("fake-av")


def test_a_registered_arch_trains_through_the_same_runner(fake_arch, tmp_path, toy_pickle):
    from deepmlf.report import write_report

    cfg = tiny_config(toy_pickle, f"model.arch={fake_arch}", "train.max_epochs=2")
    result = train_run(cfg, tmp_path / "r", progress=False)
    seed = tmp_path / "r" / "seed-1"
    assert not (seed / "stage1").exists() and not (seed / "gates.json").exists()  # no stage 1, no gates
    assert json.loads((tmp_path / "r" / "task.json").read_text()) == {"name": "msa", "dataset": "mosi"}
    assert list(pd.read_csv(seed / "predictions_test.csv").columns) == ["id", "label", "y_o"]
    assert list(result.per_seed[1]) == list(key_metric_names("mosi"))
    metrics = evaluate_checkpoint(seed / "best.pt", toy_pickle, "test")  # rebuilt from the stored model.arch
    assert metrics["MAE"] == pytest.approx(result.per_seed[1]["MAE"], abs=1e-6)
    report = write_report(tmp_path / "r").read_text()
    assert report.startswith("# FakeAV run report: r") and "FakeAV on **mosi**" in report


def test_unknown_arch_is_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"model.arch='no-such-model': unknown model architecture; known: .*deepmlf"):
        train_run(tiny_config(tmp_path / "absent.pkl", "model.arch=no-such-model"), tmp_path / "r", progress=False)


def test_authors_stage1_once_for_all_seeds_and_stopping_by_early_stopping_only(tmp_path, toy_pickle):
    """pretrain.shared: one stage 1 (first seed) in RUN_DIR/stage1 initialises every seed's stage 2;
    train.stop_at_max_epochs=false: stage 2 runs past max_epochs until early stopping."""
    cfg = tiny_config(toy_pickle, "pretrain.shared=true", "train.seeds=[1,2]", "pretrain.max_epochs=1",
                      "train.stop_at_max_epochs=false", "train.max_epochs=1", "train.early_stop=1",
                      "train.limit_batches=1")
    train_run(cfg, tmp_path / "run", progress=False)
    run_dir = tmp_path / "run"
    assert (run_dir / "stage1" / "best.pt").is_file()
    assert not any((run_dir / f"seed-{s}" / "stage1").exists() for s in (1, 2))
    assert len(read_jsonl(run_dir / "stage1" / "history.jsonl")) == 1  # trained once
    for s in (1, 2):
        stage2_cfg = load_best(run_dir / f"seed-{s}" / "best.pt")["config"]
        assert stage2_cfg["model"]["av_encoder"]["checkpoint"] == str(run_dir / "stage1" / "best.pt")
        done = json.loads((run_dir / f"seed-{s}" / "DONE").read_text())
        assert done["stop_reason"] == "early_stop" and done["epochs"] >= 2  # past max_epochs=1
        assert len(read_model_dir(run_dir / f"seed-{s}", "x").stage1_history) == 1  # the report finds it
