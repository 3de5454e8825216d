"""MSA regression metrics, exactly as MMSA's `metricsTop` computes them (DESIGN.md §4).

Every MSA paper reports the numbers of `MMSA.utils.metricsTop.MetricsTop("regression")`
(PyPI `mmsa==2.2.1`), so we reproduce its semantics rather than "fixing" them, and keep its key
names. A randomized agreement test (tests/test_metrics.py) checks us against that file.

MOSI / MOSEI (labels in [-3, 3]):
  Has0_acc_2, Has0_F1_score  positive = (x >= 0) vs negative (x < 0), on every sample;
                             F1 is sklearn's support-weighted F1 over the two classes.
  Non0_acc_2, Non0_F1_score  positive = (x > 0), only on samples whose *label* is not 0.
  Mult_acc_5, Mult_acc_7     clip preds and labels to [-2, 2] / [-3, 3], then `np.round`
                             (round half to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2), then equality.
  MAE                        mean |pred - label| (unclipped).
  Corr                       Pearson correlation (`np.corrcoef`) of the unclipped values.
SIMS and SIMSv2 (labels in [-1, 1]; mmsa 2.2.1's metricsTop has no SIMSV2 entry, and the SIMS
function is the one that fits CH-SIMS v2's labels): preds and labels are first clipped to [-1, 1] (MAE and Corr too); bins
are left-open, right-closed: Mult_acc_2 {[-1, 0], (0, 1]}, Mult_acc_3 {[-1, -0.1], (-0.1, 0.1],
(0.1, 1]}, Mult_acc_5 {[-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]};
F1_score is the weighted F1 on the two Mult_acc_2 bins.

Where we differ from MMSA, on purpose:
  * MMSA rounds every value to 4 decimals; we return unrounded floats (within 1e-4 of MMSA's).
  * Corr is undefined for constant predictions or labels: MMSA gives nan (with a warning);
    so do we, silently.
  * When every label is exactly 0 the Non0 subset is empty and MMSA crashes; we return nan for
    Non0_acc_2 and Non0_F1_score.
  * NaN predictions (a diverged model) count as wrong in every accuracy and F1 and make MAE/Corr
    nan; MMSA agrees for MOSI/MOSEI and crashes for SIMS. NaN labels are an error.
  * Comparisons and rounding run in the inputs' own float dtype, as MMSA's do on the tensors it is
    given (float32 predictions tie at float32(0.1), not at the float64 0.1); float16/bfloat16 are
    widened to float32, integers to float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from .errors import ConfigError

# Which of MMSA's two metric sets scores each dataset: the one place a new MSA corpus is added
# (its label range, report bins and table columns all follow from this entry).
METRIC_SET: dict[str, str] = {"mosi": "mosi", "mosei": "mosi", "sims": "sims", "simsv2": "sims"}
DATASETS = tuple(METRIC_SET)

MOSI_KEYS = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")
SIMS_KEYS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")

# Which way is better, for model selection (early stopping, sweeps, Optuna). "Loss" is the
# validation loss that the trainer reports next to the metrics.
METRIC_DIRECTIONS: dict[str, str] = {
    **{k: "max" for k in MOSI_KEYS + SIMS_KEYS},
    "MAE": "min",
    "Loss": "min",
}

# SIMS bin edges (MMSA's `ms_2`, `ms_3`, `ms_5` without the outer ±1.01, which clipping makes unreachable).
_SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}
_NAN_CLASS = -1  # class given to a NaN prediction: equal to no label class


def key_metric_names(dataset: str) -> tuple[str, ...]:
    """The metric keys `msa_metrics` returns for `dataset`, in MMSA's order."""
    return SIMS_KEYS if metric_set(dataset) == "sims" else MOSI_KEYS


def metric_set(dataset: str) -> str:
    """"mosi" (MOSI/MOSEI metrics, labels in [-3, 3]) or "sims" (labels in [-1, 1]) for `dataset`."""
    return METRIC_SET[_dataset(dataset)]


def msa_metrics(preds: Any, labels: Any, dataset: str) -> dict[str, float]:
    """MMSA's regression metrics of `preds` against `labels` (see the module docstring).

    preds, labels: numpy arrays, lists or torch tensors of any shape holding N values.
    dataset: "mosi", "mosei", "sims" or "simsv2" (any case); decides the metric set.
    Accuracies and F1 are fractions in [0, 1], as in MMSA. Raises ValueError (ConfigError for an
    unknown dataset) when the sizes differ, there are no samples, or a label is NaN.
    """
    family = metric_set(dataset)
    y_pred = _as_flat_float(preds, "preds")
    y_true = _as_flat_float(labels, "labels")
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"preds has {y_pred.size} values but labels has {y_true.size}; expected one prediction per label"
        )
    if y_true.size == 0:
        raise ValueError("no samples: preds and labels are empty")
    if np.isnan(y_true).any():
        raise ValueError(f"labels hold {int(np.isnan(y_true).sum())} NaN values; expected finite sentiment scores")
    if family == "sims":
        return _sims(y_pred, y_true)
    return _mosi(y_pred, y_true)


def format_metrics(metrics: dict[str, float], *, digits: int = 4) -> str:
    """One line, MMSA style: `Has0_acc_2: 0.8560  ...  MAE: 0.6920`."""
    return "  ".join(f"{k}: {v:.{digits}f}" for k, v in metrics.items())


# --------------------------------------------------------------------------------------- MOSI / MOSEI
def _mosi(y_pred: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    pred_nan = np.isnan(y_pred)

    # Has0: >= 0 is "positive" (a label of 0 counts as positive). NaN >= 0 is False, as in MMSA.
    has0_true, has0_pred = y_true >= 0, y_pred >= 0
    out: dict[str, float] = {
        "Has0_acc_2": _accuracy(has0_pred, has0_true),
        "Has0_F1_score": _weighted_f1(has0_true, has0_pred),
    }

    # Non0: drop samples whose label is exactly 0; > 0 is positive.
    non0 = y_true != 0
    if non0.any():
        non0_true, non0_pred = y_true[non0] > 0, y_pred[non0] > 0
        out["Non0_acc_2"] = _accuracy(non0_pred, non0_true)
        out["Non0_F1_score"] = _weighted_f1(non0_true, non0_pred)
    else:  # every label is 0: MMSA crashes here
        out["Non0_acc_2"] = math.nan
        out["Non0_F1_score"] = math.nan

    for classes, bound in (("Mult_acc_5", 2.0), ("Mult_acc_7", 3.0)):
        # np.round is round-half-to-even, in the array's own dtype, exactly as MMSA's __multiclass_acc.
        p = np.round(np.clip(y_pred, -bound, bound))
        t = np.round(np.clip(y_true, -bound, bound))
        out[classes] = float(np.mean(p == t))  # NaN == anything is False

    out["MAE"], out["Corr"] = _mae_corr(y_pred, y_true, pred_nan)
    return {k: out[k] for k in MOSI_KEYS}


# --------------------------------------------------------------------------------------- SIMS
def _sims(y_pred: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    pred_nan = np.isnan(y_pred)
    y_pred = np.clip(y_pred, -1.0, 1.0)
    y_true = np.clip(y_true, -1.0, 1.0)

    out: dict[str, float] = {}
    bins: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k, edges in _SIMS_EDGES.items():
        p, t = _sims_bins(y_pred, edges), _sims_bins(y_true, edges)
        bins[k] = (p, t)
        out[f"Mult_acc_{k}"] = float(np.mean(p == t))
    p2, t2 = bins[2]
    out["F1_score"] = _weighted_f1(t2, p2)
    out["MAE"], out["Corr"] = _mae_corr(y_pred, y_true, pred_nan)
    return {k: out[k] for k in SIMS_KEYS}


def _sims_bins(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bin index of each value for left-open, right-closed bins (lo, hi], as MMSA's loops do.

    searchsorted(side="left") counts the edges strictly below x, so a value equal to an edge falls
    in the bin that edge closes. Edges take x's dtype: MMSA compares float32 tensors with Python
    floats, which numpy evaluates in float32.
    """
    idx = np.searchsorted(np.asarray(edges, dtype=x.dtype), x, side="left")
    return np.where(np.isnan(x), _NAN_CLASS, idx)


# --------------------------------------------------------------------------------------- shared
def _accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(pred == true))


def _weighted_f1(true: np.ndarray, pred: np.ndarray) -> float:
    # zero_division=0 is sklearn's value under its default "warn", without the warning.
    return float(f1_score(true, pred, average="weighted", zero_division=0))


def _mae_corr(y_pred: np.ndarray, y_true: np.ndarray, pred_nan: np.ndarray) -> tuple[float, float]:
    p, t = y_pred.astype(np.float64), y_true.astype(np.float64)
    mae = float(np.mean(np.abs(p - t)))
    if pred_nan.any() or not np.all(np.isfinite(p)) or p.size < 2:
        return mae, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.ptp(p) == 0 or np.ptp(t) == 0:  # constant: Pearson is undefined (MMSA: nan + warning)
            return mae, math.nan
        corr = float(np.corrcoef(p, t)[0, 1])
    return mae, corr


def _dataset(dataset: str) -> str:
    name = str(dataset).lower() if isinstance(dataset, str) else None
    if name not in DATASETS:
        raise ConfigError(f"dataset={dataset!r}: expected one of {', '.join(DATASETS)} (any case)")
    return name


def _as_flat_float(x: Any, what: str) -> np.ndarray:
    """Flatten to (N,) keeping a float dtype (see the module docstring on dtypes)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected numbers (array, list or tensor); {e}") from None
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind in "biu":
        a = a.astype(np.float64)
    elif a.dtype.kind != "f":
        raise ValueError(f"{what}: expected numbers (array, list or tensor); found dtype {a.dtype}")
    return a.reshape(-1)
