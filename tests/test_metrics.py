"""deepmlf.metrics.msa_metrics: exact values by hand, MMSA's tie rules, edge cases, and agreement
with the real `MMSA.utils.metricsTop` file from PyPI mmsa==2.2.1 (installed by the Makefile)."""

from __future__ import annotations

import importlib.util
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from deepmlf.errors import ConfigError
from deepmlf.metrics import (
    METRIC_DIRECTIONS,
    MOSI_KEYS,
    SIMS_KEYS,
    format_metrics,
    key_metric_names,
    msa_metrics,
)


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-12)


# --------------------------------------------------------------------------------------- MOSI / MOSEI by hand
def test_mosi_small_example_by_hand():
    preds = [-0.5, 0.0, 0.5, 2.6]
    labels = [-1.0, 0.0, 1.0, 3.0]
    m = msa_metrics(preds, labels, "mosi")
    assert list(m) == list(MOSI_KEYS)
    # Has0 (>= 0): labels F T T T, preds F T T T -> all right.
    assert m["Has0_acc_2"] == 1.0 and m["Has0_F1_score"] == 1.0
    # Non0 drops label 0: labels -1, 1, 3 (F T T) vs preds -0.5, 0.5, 2.6 (F T T).
    assert m["Non0_acc_2"] == 1.0 and m["Non0_F1_score"] == 1.0
    # Acc7: round(clip(p, ±3)) = -0, 0, 0, 3 (0.5 and -0.5 round to even 0); labels -1, 0, 1, 3 -> 2/4.
    assert m["Mult_acc_7"] == 0.5
    # Acc5: clip to ±2 first: preds -0, 0, 0, 2; labels -1, 0, 1, 2 -> 2/4.
    assert m["Mult_acc_5"] == 0.5
    # MAE = (0.5 + 0 + 0.5 + 0.4) / 4
    assert m["MAE"] == approx(0.35)
    # Pearson: centred p = (-1.15, -0.65, -0.15, 1.95), t = (-1.75, -0.75, 0.25, 2.25)
    # sum pt = 6.85, sum p^2 = 5.57, sum t^2 = 8.75
    assert m["Corr"] == approx(6.85 / math.sqrt(5.57 * 8.75))


def test_weighted_f1_by_hand():
    # Has0: labels T T F F; preds T T T F -> acc 3/4.
    # class T: precision 2/3, recall 1 -> F1 4/5; class F: precision 1, recall 1/2 -> F1 2/3.
    # weighted by support (2, 2): (4/5 + 2/3) / 2 = 11/15.
    m = msa_metrics([0.5, 0.5, 0.5, -0.5], [1.0, 2.0, -1.0, -2.0], "mosei")
    assert m["Has0_acc_2"] == 0.75
    assert m["Has0_F1_score"] == approx(11 / 15)


def test_zero_label_counts_positive_in_has0_and_is_dropped_in_non0():
    # Has0: labels 0, 0, 1, -1 -> T T T F; preds 0.5, -0.5, 0.3, 0.3 -> T F T T: 2/4.
    # Non0 keeps samples 2, 3: labels T F, preds T T -> 1/2; F1: class T 2/3 (P 1/2, R 1), class F 0 -> 1/3.
    m = msa_metrics([0.5, -0.5, 0.3, 0.3], [0.0, 0.0, 1.0, -1.0], "mosi")
    assert m["Has0_acc_2"] == 0.5
    assert m["Non0_acc_2"] == 0.5
    assert m["Non0_F1_score"] == approx(1 / 3)


def test_zero_prediction_is_positive_for_has0_and_negative_for_non0():
    # Has0 uses >= 0 (pred 0 is positive), Non0 uses > 0 (pred 0 is negative).
    m = msa_metrics([0.0, 0.0, 0.0], [1.0, 2.0, -1.0], "mosi")
    assert m["Has0_acc_2"] == approx(2 / 3)
    assert m["Non0_acc_2"] == approx(1 / 3)


def test_acc7_rounds_half_to_even_like_numpy():
    preds = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5]
    # np.round: 0, 2, 2, -0, -2, -2 and 3.5 clipped to 3 -> 3.
    m = msa_metrics(preds, [0.0, 2.0, 2.0, 0.0, -2.0, -2.0, 3.0], "mosi")
    assert m["Mult_acc_7"] == 1.0
    # Round-half-away-from-zero would give these classes: numpy's rule matches none of them.
    m = msa_metrics(preds, [1.0, 1.0, 3.0, -1.0, -1.0, -3.0, 2.0], "mosi")
    assert m["Mult_acc_7"] == 0.0
    # Acc5 clips to ±2 first: 2.5 -> 2, -2.5 -> -2, 3.5 -> 2.
    m = msa_metrics([2.5, -2.5, 3.5], [2.0, -2.0, 1.6], "mosi")
    assert m["Mult_acc_5"] == 1.0


# --------------------------------------------------------------------------------------- SIMS by hand
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bins_are_left_open_right_closed_at_every_edge(dtype):
    # Acc5 bins [-1,-0.7] (-0.7,-0.1] (-0.1,0.1] (0.1,0.7] (0.7,1]: an edge belongs to the bin it closes.
    preds = np.array([-0.7, -0.1, 0.0, 0.1, 0.7], dtype=dtype)
    # labels sit inside the bins the edges close: 0, 1, 2, 2, 3 (Acc5); 0, 0, 1, 1, 2 (Acc3); 0, 0, 0, 1, 1 (Acc2).
    labels = np.array([-0.75, -0.5, -0.05, 0.05, 0.5], dtype=dtype)
    m = msa_metrics(preds, labels, "sims")
    assert list(m) == list(SIMS_KEYS)
    assert m["Mult_acc_5"] == 1.0 and m["Mult_acc_3"] == 1.0 and m["Mult_acc_2"] == 1.0
    assert m["F1_score"] == 1.0
    # The four Acc5 edges against labels just above them: each lands one bin higher, all wrong.
    edges = np.array([-0.7, -0.1, 0.1, 0.7], dtype=dtype)
    m = msa_metrics(edges, np.array([-0.65, -0.05, 0.15, 0.75], dtype=dtype), "sims")
    assert m["Mult_acc_5"] == 0.0


def test_sims_float32_edges_compare_in_float32():
    # float32(0.1) = 0.10000000149 > 0.1 in float64, but MMSA compares float32 tensors with the
    # Python float 0.1 in float32, so it is on the edge and belongs to (-0.1, 0.1].
    preds = torch.tensor([0.1, 0.7], dtype=torch.float32)
    labels = torch.tensor([0.05, 0.5], dtype=torch.float32)
    m = msa_metrics(preds, labels, "sims")
    assert m["Mult_acc_3"] == 1.0 and m["Mult_acc_5"] == 1.0


def test_sims_clips_before_mae_and_corr():
    # MMSA clips preds and labels to [-1, 1] before everything, MAE and Corr included.
    m = msa_metrics([2.0, -3.0, 0.5], [1.0, -1.0, 0.5], "SIMS")
    assert m["MAE"] == 0.0
    assert m["Corr"] == approx(1.0)
    # Weighted F1 on the 2 bins: labels 1 1 0 0; preds 1 1 1 0 (0.5, 0.5, 0.5, -0.5): 11/15 as above.
    m = msa_metrics([0.5, 0.5, 0.5, -0.5], [0.2, 0.9, -0.3, -0.8], "sims")
    assert m["Mult_acc_2"] == 0.75
    assert m["F1_score"] == approx(11 / 15)


# --------------------------------------------------------------------------------------- edge cases
def test_constant_predictions_give_nan_corr_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = msa_metrics(np.zeros(10), np.linspace(-3, 3, 10), "mosi")
        s = msa_metrics(np.full(10, 0.3), np.linspace(-1, 1, 10), "sims")
    assert math.isnan(m["Corr"]) and math.isnan(s["Corr"])
    assert m["MAE"] == approx(float(np.mean(np.abs(np.linspace(-3, 3, 10)))))


def test_all_labels_zero_gives_nan_non0_and_finite_rest():
    m = msa_metrics([0.5, -0.5, 0.2], [0.0, 0.0, 0.0], "mosi")
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    assert m["Has0_acc_2"] == approx(2 / 3)  # label 0 is positive under Has0
    assert m["MAE"] == approx(0.4)


def test_nan_predictions_count_as_wrong():
    m = msa_metrics([np.nan, 1.0, -1.0, 2.0], [1.0, 1.0, -1.0, 2.0], "mosi")
    assert m["Mult_acc_7"] == 0.75 and m["Has0_acc_2"] == 0.75
    assert math.isnan(m["MAE"]) and math.isnan(m["Corr"])
    s = msa_metrics([np.nan, 0.5, -0.5, 0.9], [0.5, 0.5, -0.5, 0.9], "sims")
    assert s["Mult_acc_2"] == 0.75 and s["Mult_acc_5"] == 0.75


def test_shapes_and_input_kinds():
    labels = np.array([-1.0, 0.5, 2.0, -2.5])
    preds = np.array([-0.8, 0.4, 1.7, -2.2])
    ref = msa_metrics(preds, labels, "mosi")
    assert msa_metrics(preds.reshape(4, 1), labels, "mosi") == ref
    assert msa_metrics(list(preds), list(labels), "mosi") == ref
    assert msa_metrics(torch.tensor(preds).view(2, 2), torch.tensor(labels), "MOSI") == ref
    bf16 = msa_metrics(torch.tensor(preds, dtype=torch.bfloat16, requires_grad=True), labels, "mosi")
    assert bf16["Has0_acc_2"] == ref["Has0_acc_2"]
    assert all(isinstance(v, float) for v in ref.values())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="iemocap.*mosi, mosei, sims"):
        msa_metrics([0.0], [0.0], "iemocap")
    with pytest.raises(ValueError, match="preds has 3 values but labels has 2"):
        msa_metrics([0.0, 1.0, 2.0], [0.0, 1.0], "mosi")
    with pytest.raises(ValueError, match="no samples"):
        msa_metrics([], [], "sims")
    with pytest.raises(ValueError, match="labels hold 1 NaN"):
        msa_metrics([0.0, 1.0], [np.nan, 1.0], "mosi")
    with pytest.raises(ValueError, match="preds: expected numbers"):
        msa_metrics(["a", "b"], [0.0, 1.0], "mosi")


def test_directions_names_and_format():
    assert key_metric_names("mosei") == MOSI_KEYS and key_metric_names("Sims") == SIMS_KEYS
    for key in MOSI_KEYS + SIMS_KEYS:
        assert METRIC_DIRECTIONS[key] == ("min" if key == "MAE" else "max")
    assert METRIC_DIRECTIONS["Loss"] == "min"
    assert format_metrics({"MAE": 0.69212, "Corr": 0.8}) == "MAE: 0.6921  Corr: 0.8000"


# --------------------------------------------------------------------------------------- agreement with MMSA
def _load_mmsa_metrics_top():
    """Load MMSA/utils/metricsTop.py alone: importing the MMSA package pulls in heavy dependencies."""
    spec = importlib.util.find_spec("MMSA")
    if spec is None or spec.origin is None:
        pytest.fail(
            "PyPI package mmsa==2.2.1 is not installed, so the agreement test cannot run; "
            "install it with `make install` (or `.venv/bin/pip install --no-deps mmsa==2.2.1`)"
        )
    path = Path(spec.origin).parent / "utils" / "metricsTop.py"
    if not path.is_file():
        pytest.fail(f"{path} not found: expected the metricsTop.py file of mmsa==2.2.1")
    file_spec = importlib.util.spec_from_file_location("mmsa_metricsTop", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module.MetricsTop("regression")


def _random_case(rng: np.random.Generator, dataset: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels with many values on MMSA's tie points (x.5, ±0.1, ±0.7, 0) and out of range."""
    n = int(rng.integers(3, 120))
    lim = 1.4 if dataset == "SIMS" else 3.6
    preds, labels = rng.uniform(-lim, lim, n), rng.uniform(-lim, lim, n)
    grids = (0.1, 0.5, 1 / 3, 0.2) if dataset == "SIMS" else (0.5, 1 / 3, 0.2, 1.0)
    for x in (preds, labels):
        on_grid = rng.random(n) < 0.6
        step = grids[int(rng.integers(len(grids)))]
        x[on_grid] = np.round(x[on_grid] / step) * step
    labels[rng.random(n) < 0.1] = 0.0
    return preds.astype(dtype), labels.astype(dtype)


@pytest.mark.parametrize("dataset", ["MOSI", "MOSEI", "SIMS"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_mmsa_metricstop(dataset, dtype):
    mmsa = _load_mmsa_metrics_top().getMetics(dataset)
    rng = np.random.default_rng(zlib.crc32(f"{dataset}-{np.dtype(dtype).name}".encode()))  # stable across runs
    for _ in range(40):
        preds, labels = _random_case(rng, dataset, dtype)
        if not np.any(labels != 0):
            labels[0] = 1.0  # MMSA crashes on an empty Non0 set
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MMSA warns on a constant input; we compare values
            expected = mmsa(torch.from_numpy(preds), torch.from_numpy(labels))
        ours = msa_metrics(preds, labels, dataset.lower())
        assert list(ours) == list(expected)
        for key, value in expected.items():
            if math.isnan(value):
                assert math.isnan(ours[key]), (key, preds, labels)
            else:
                assert abs(ours[key] - value) <= 1e-4 + 1e-9, (key, ours[key], value, preds, labels)


def test_agrees_with_mmsa_on_exact_edges():
    """Every tie point MMSA's binning has, as float32 tensors (what a trainer hands it)."""
    mmsa = _load_mmsa_metrics_top()
    sims_points = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0, -1.2, 1.3], dtype=np.float32)
    mosi_points = np.array([-3.5, -2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 3.5], dtype=np.float32)
    for dataset, points in (("SIMS", sims_points), ("MOSI", mosi_points)):
        preds = np.repeat(points, len(points))
        labels = np.tile(points, len(points))  # every (pred, label) pair of tie points
        expected = mmsa.getMetics(dataset)(torch.from_numpy(preds), torch.from_numpy(labels))
        ours = msa_metrics(preds, labels, dataset)
        for key, value in expected.items():
            assert abs(ours[key] - value) <= 1e-4 + 1e-9, (dataset, key, ours[key], value)
