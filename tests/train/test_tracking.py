"""train.log_with: accelerate trackers, off by default (nothing written), tensorboard event files when on."""

from __future__ import annotations

import importlib.util

import pytest

from deepmlf.config import load_config

from .conftest import tiny_config


def test_off_by_default_and_accepts_one_name():
    assert load_config().train.log_with == []
    assert load_config(overrides=["train.log_with=tensorboard"]).train.log_with == ["tensorboard"]
    with pytest.raises(Exception, match="log_with"):
        load_config(overrides=["train.log_with=nosuchtracker"])


def test_default_run_writes_no_tracking(tiny_run):
    assert not (tiny_run / "tracking").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_writes_event_files_per_seed(toy_pickle, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deepmlf.train import train_run

    cfg = tiny_config(toy_pickle, "train.log_with=tensorboard", "train.max_epochs=1", "train.max_steps=1",
                      "pretrain.max_epochs=1")
    train_run(cfg, tmp_path / "run", progress=False)
    events = sorted((tmp_path / "run" / "tracking" / "seed-1").rglob("events.out.tfevents.*"))
    assert events
    tags = set()
    for e in events:
        acc = EventAccumulator(str(e))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"stage2/valid/MAE", "stage2/train/loss", "stage1/valid/Loss"} <= tags
