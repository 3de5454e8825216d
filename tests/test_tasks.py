"""The task layer: MSA scoring identical to msa_metrics; ERC metrics exact on hand-built inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from deepmlf.errors import ConfigError
from deepmlf.metrics import METRIC_SET, MOSI_KEYS, SIMS_KEYS, msa_metrics
from deepmlf.tasks import TASKS, ClassificationTask, MSATask, from_spec
from deepmlf.train.evaluate import Predictions

CLASSES = ["neutral", "joy", "anger"]
# 8 utterances. Per class (TP, FP, FN): neutral (2, 1, 1), joy (1, 1, 1), anger (2, 1, 1).
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 2, 2, 2, 0]


def _preds(labels, preds, probs=None) -> Predictions:
    return Predictions(ids=[f"u{i}" for i in range(len(labels))], prediction=np.asarray(preds),
                       labels=np.asarray(labels), probs=probs)


@dataclass
class Out:
    prediction: torch.Tensor


# ----------------------------------------------------------------------------- erc


def test_erc_metrics_exact_values():
    m = ClassificationTask(CLASSES).metrics(_preds(LABELS, PREDS))
    assert list(m) == ["acc", "weighted_f1", "macro_f1", "f1_neutral", "f1_joy", "f1_anger"]
    assert m["acc"] == 5 / 8
    # F1 per class = 2TP / (2TP + FP + FN): 4/6, 2/4, 4/6; supports 3, 2, 3.
    assert m["f1_neutral"] == pytest.approx(2 / 3, abs=1e-15) and m["f1_anger"] == pytest.approx(2 / 3, abs=1e-15)
    assert m["f1_joy"] == pytest.approx(1 / 2, abs=1e-15)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 3 * 2 / 3) / 8, abs=1e-15)  # 5/8
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3, abs=1e-15)  # 11/18


def test_erc_confusion_matrix_rows_are_true_classes():
    cm = ClassificationTask(CLASSES).confusion(_preds(LABELS, PREDS))
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]


def test_erc_class_absent_everywhere_has_undefined_f1_and_leaves_the_averages_alone():
    four = ClassificationTask([*CLASSES, "fear"]).metrics(_preds(LABELS, PREDS))
    three = ClassificationTask(CLASSES).metrics(_preds(LABELS, PREDS))
    assert math.isnan(four["f1_fear"])
    assert (four["weighted_f1"], four["macro_f1"], four["acc"]) == (three["weighted_f1"], three["macro_f1"], three["acc"])
    # A class that is predicted but never true counts in the macro average with F1 = 0.
    m = ClassificationTask([*CLASSES, "fear"]).metrics(_preds(LABELS, [0, 0, 1, 1, 2, 2, 2, 3]))
    assert m["f1_fear"] == 0.0 and m["f1_neutral"] == pytest.approx(4 / 5, abs=1e-15)
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3 + 0) / 4, abs=1e-15)  # anger: TP 2, FP 1, FN 1


def test_erc_flatten_gives_probabilities_and_argmax_and_nonfinite_rows_are_wrong():
    task = ClassificationTask(CLASSES)
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    logits = torch.tensor(np.log(p) + 3.0)  # any shift: softmax is shift-invariant
    logits = torch.cat([logits, torch.tensor([[float("nan"), 0.0, 1.0]], dtype=logits.dtype)])
    pred, probs = task.flatten(Out(logits))
    assert pred.tolist() == [0, 2, -1]
    assert probs[:2] == pytest.approx(p, abs=1e-12) and np.isnan(probs[2]).all()
    m = task.metrics(_preds([0, 2, 2], pred))
    assert m["acc"] == 2 / 3  # the non-finite row counts as wrong
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, 3\).*got \(3,\)"):
        task.flatten(Out(torch.zeros(3)))


def test_erc_valid_loss_is_the_mean_cross_entropy():
    task = ClassificationTask(CLASSES)
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    loss = task.valid_loss(_preds([0, 1], [0, 2], probs))
    assert loss == pytest.approx((math.log(2) + math.log(5)) / 2, abs=1e-15)
    logits = torch.log(torch.tensor(probs))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))), abs=1e-12)
    scored = task.score(_preds([0, 1], [0, 2], probs))
    assert list(scored)[-1] == "Loss" and scored["acc"] == 0.5


def test_erc_bad_labels_and_class_lists_are_clear_errors():
    task = ClassificationTask(CLASSES)
    with pytest.raises(ValueError, match=r"label 3 is not a class index of \['neutral', 'joy', 'anger'\]"):
        task.metrics(_preds([0, 3], [0, 0]))
    with pytest.raises(ValueError, match="class indices"):
        task.metrics(_preds([0.5, 1.0], [0, 0]))
    with pytest.raises(ConfigError, match="distinct"):
        ClassificationTask(["a", "a"])
    with pytest.raises(ConfigError, match="at least 2"):
        ClassificationTask(["a"])


def test_erc_predictions_frame_names_the_classes():
    task = ClassificationTask(CLASSES)
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    frame = task.predictions_frame(_preds([0, 1], [0, 2], probs))
    assert list(frame.columns) == ["id", "label", "prediction", "label_name", "prediction_name",
                                   "p_neutral", "p_joy", "p_anger"]
    assert frame.label_name.tolist() == ["neutral", "joy"] and frame.prediction_name.tolist() == ["neutral", "anger"]


def test_erc_units_directions_and_key_metrics():
    task = ClassificationTask(CLASSES, dataset="meld")
    assert task.table_metrics == ("acc", "weighted_f1", "macro_f1") and task.default_key_metric == "weighted_f1"
    assert all(task.is_percentage(m) for m in task.metric_names) and task.format_value("macro_f1", 0.61111) == "61.11"
    assert task.direction("weighted_f1") == "max" and task.direction("Loss") == "min"
    assert task.check_key_metric("Loss") == "min" and task.title == "meld (3 classes)"
    with pytest.raises(ConfigError, match=r"train.key_metric='f1_joy' is not reported for task 'erc'"):
        task.check_key_metric("f1_joy")


# ----------------------------------------------------------------------------- msa


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_msa_task_scores_exactly_as_msa_metrics(dataset):
    rng = np.random.default_rng(3)
    r = 1.0 if dataset == "sims" else 3.0
    labels = np.round(rng.uniform(-r, r, 64) * 5).astype(np.float32) / 5
    preds = (labels + rng.normal(0, 0.4 * r, 64)).astype(np.float32)
    task = MSATask(dataset)
    got = task.score(_preds(labels, preds), with_loss_terms=False)
    want = {k: float(v) for k, v in msa_metrics(preds, labels, dataset).items()}
    want["Loss"] = float(np.mean(np.abs(preds - labels)))
    assert got == want and list(got) == list(want)  # bit for bit, same order
    assert task.metric_names == (SIMS_KEYS if dataset == "sims" else MOSI_KEYS)


def test_msa_task_units_and_directions():
    task = MSATask("mosi")
    assert [task.is_percentage(k) for k in MOSI_KEYS] == [True] * 6 + [False, False]
    assert task.format_value("Has0_acc_2", 0.8125) == "81.25" and task.format_value("MAE", 0.73119) == "0.7312"
    assert task.direction("MAE") == "min" and task.direction("Corr") == "max" and task.direction("Loss") == "min"
    assert task.table_note() == "Accuracies and F1 in %, MAE and Corr raw (MMSA `metricsTop` names)."
    with pytest.raises(ConfigError, match=r"train.key_metric='Mult_acc_3' is not reported for dataset 'mosi'"):
        task.check_key_metric("Mult_acc_3")
    with pytest.raises(ConfigError, match="dataset='iemocap': expected one of mosi, mosei, sims"):
        MSATask("iemocap")


def test_msa_classes_match_mmsa_binning():
    idx, names = MSATask("mosi").classes_of(np.array([-3.4, -2.5, -0.5, 0.5, 1.5, 2.6, 9.0]))
    # numpy rounds half to even, as MMSA's Mult_acc_7 does.
    assert [names[i] for i in idx] == ["-3", "-2", "0", "0", "2", "3", "3"]
    idx, _ = MSATask("sims").classes_of(np.array([-1.0, -0.7, -0.69, -0.1, 0.0, 0.1, 0.11, 0.7, 0.71, 1.0]))
    assert idx.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert MSATask("mosei").label_range == 3.0 and MSATask("sims").label_range == 1.0


def test_every_msa_dataset_has_a_metric_set_and_a_task():
    for dataset, family in METRIC_SET.items():
        assert MSATask(dataset).family == family in ("mosi", "sims")


# ----------------------------------------------------------------------------- specs


def test_specs_round_trip_and_unknown_tasks_are_named():
    for task in (MSATask("sims"), ClassificationTask(CLASSES), ClassificationTask(CLASSES, dataset="meld", key_metric="acc")):
        assert from_spec(task.spec()) == task and from_spec(task.spec()).spec() == task.spec()
    assert MSATask("mosi").spec() == {"name": "msa", "dataset": "mosi"}
    assert set(TASKS) >= {"msa", "erc"}
    with pytest.raises(ConfigError, match=r"run/task.json: unknown task 'asr'; known tasks: msa, erc"):
        from_spec({"name": "asr"}, "run/task.json")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        from_spec({"name": "msa", "classes": ["a"]})
