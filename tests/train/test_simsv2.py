"""CH-SIMS v2 end to end: a SIMSv2-shaped pickle (unaligned audio 925 x 25, vision 232 x 177,
labels in [-1, 1], regression_labels_T/A/V) is recognised, trained, evaluated and scored with
MMSA's SIMS metrics."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.metrics import SIMS_KEYS, msa_metrics
from deepmlf.train import evaluate_checkpoint, train_run

from .conftest import tiny_config


@pytest.fixture(scope="module")
def simsv2_pickle(tmp_path_factory):
    return write_mmsa_pickle(tmp_path_factory.mktemp("simsv2") / "unaligned.pkl", dataset="sims",
                             n_per_split=(16, 8, 8), audio_dim=25, vision_dim=177, la=925, lv=232)


def test_simsv2_trains_and_evaluates_with_the_sims_metrics(tmp_path, simsv2_pickle):
    cfg = tiny_config(simsv2_pickle, "train.max_epochs=1", "pretrain.max_epochs=1", "train.limit_batches=1")
    assert cfg.data.dataset == "infer"  # nothing says SIMSv2 but the file
    result = train_run(cfg, tmp_path / "run", progress=False)
    assert result.task.dataset == "simsv2" and result.task.family == "sims" and result.metric_names == list(SIMS_KEYS)
    assert json.loads((tmp_path / "run" / "task.json").read_text()) == {"name": "msa", "dataset": "simsv2"}
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored["metrics"] == list(SIMS_KEYS)
    assert "dataset: simsv2" in (tmp_path / "run" / "config.yaml").read_text()

    seed = tmp_path / "run" / "seed-1"
    preds = pd.read_csv(seed / "predictions_test.csv")
    test = json.loads((seed / "test_metrics.json").read_text())
    expected = msa_metrics(preds.y_o.to_numpy(), preds.label.to_numpy(), "sims")
    assert list(test) == list(SIMS_KEYS)
    assert test == pytest.approx(expected, abs=1e-6, nan_ok=True)

    metrics = evaluate_checkpoint(seed / "best.pt", simsv2_pickle, "test")
    assert list(metrics) == [*SIMS_KEYS, "Loss"]
    for key in SIMS_KEYS:
        assert metrics[key] == pytest.approx(test[key], abs=1e-6, nan_ok=True)
