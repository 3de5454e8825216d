"""Tasks: what a label means, how predictions are scored and shown (DESIGN.md §6).

A `Task` is everything the training loop, early stopping, checkpoints, run dir, results tables,
sweeps and the report need to know about a problem, so none of them names a dataset:
  * `metric_names`        what `metrics()` returns, in order (written to test_metrics.json);
  * `key_metric_names`    which of them may select a model (plus "Loss"), `default_key_metric`;
  * `direction(name)`     "max" or "min" (early stopping, bold-best, Optuna);
  * `table_metrics`       the columns of results/report tables; `is_percentage(name)` says which
                          are shown ×100 (MMSA style: accuracies and F1 as fractions on disk);
  * `flatten(output)`     a model output -> (prediction (N,), probs (N, C) or None), and
                          `head_outputs(output)` the extra per-head columns of the predictions CSV;
  * `valid_loss(preds)`   the validation "Loss" logged next to the metrics;
  * `spec()`              a JSON object (`task.json` in a run dir) that `from_spec` turns back
                          into the task, so readers of a run dir need no config tree.

Built-ins: `MSATask` ("msa": regression, MMSA's metricsTop per dataset, byte-identical to
`deepmlf.metrics.msa_metrics`) and `ClassificationTask` ("erc": accuracy, weighted and macro F1,
per-class F1 and the confusion matrix over an ordered list of class names, via scikit-learn).
A new task subclasses `Task` and adds its factory to `TASKS` (docs/contracts.md, "Tasks").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError
from .metrics import METRIC_DIRECTIONS, key_metric_names, metric_set, msa_metrics

if TYPE_CHECKING:  # runtime imports would be circular (train.evaluate reads tasks)
    from .train.evaluate import Predictions

Direction = Literal["max", "min"]
LOSS = "Loss"  # the validation loss every task reports next to its metrics; lower is better


def guess_direction(metric: str) -> Direction:
    """For names no task defines: "min" for losses, errors and MAE, else "max"."""
    low = metric.lower()
    return "min" if low == "mae" or "loss" in low or "error" in low else "max"


def _numpy(t: Any) -> np.ndarray:
    """A tensor's values as float32 numpy (how predictions have always been collected)."""
    return t.detach().float().cpu().numpy()


class Task(ABC):
    """What a label means and how predictions are scored. Subclasses set the class attributes."""

    name: ClassVar[str]  # registry name, the "name" of spec()
    kind: ClassVar[Literal["regression", "classification"]]
    prediction_column: ClassVar[str] = "prediction"  # predictions CSV column holding `Predictions.prediction`
    label_key: ClassVar[str] = "labels"  # what the data calls the labels (named when they are missing)

    # ------------------------------------------------------------------ what is reported
    @property
    @abstractmethod
    def metric_names(self) -> tuple[str, ...]:
        """Keys of `metrics()`, in order."""

    @property
    def key_metric_names(self) -> tuple[str, ...]:
        """Metrics a model may be selected on (besides "Loss")."""
        return self.metric_names

    @property
    @abstractmethod
    def default_key_metric(self) -> str: ...

    @property
    def table_metrics(self) -> tuple[str, ...]:
        """Columns of results and report tables, in order."""
        return self.metric_names

    @property
    @abstractmethod
    def title(self) -> str:
        """Short label for headings and errors, e.g. "mosi" or "erc (7 classes)"."""

    units_note: ClassVar[str] = "accuracies and F1 in %"  # how tables print the values
    names_note: ClassVar[str] = ""  # where the metric names come from, when they follow a reference

    def direction(self, metric: str) -> Direction:
        """"max" or "min" for model selection and best-in-bold; `guess_direction` for unknown names."""
        return guess_direction(metric)

    def table_note(self) -> str:
        """One sentence under report tables, e.g. "Accuracies and F1 in %, MAE and Corr raw (MMSA `metricsTop` names)."."""
        units = self.units_note[:1].upper() + self.units_note[1:]
        return units + (f" ({self.names_note})" if self.names_note else "") + "."

    def is_percentage(self, metric: str) -> bool:
        """Accuracies and F1 scores are fractions on disk and percentages in tables (×100)."""
        low = metric.lower()
        return "acc" in low or "f1" in low

    def format_value(self, metric: str, value: float, *, digits: int = 4) -> str:
        """How tables print a value: `100·v` with 2 decimals for percentages, else `digits` decimals.
        (Callers decide how a missing value reads.)"""
        return f"{100 * value:.2f}" if self.is_percentage(metric) else f"{value:.{digits}f}"

    def check_key_metric(self, key: str, option: str = "train.key_metric") -> Direction:
        """The direction of `key`; ConfigError naming `option` when the task does not report it."""
        allowed = (*self.key_metric_names, LOSS)
        if key not in allowed:
            raise ConfigError(f"{option}={key!r} is not reported for {self.describe()}; choose one of {', '.join(allowed)}")
        return self.direction(key)

    def describe(self) -> str:
        """How errors name the task ("dataset 'mosi'", "task 'erc'")."""
        return f"task {self.name!r}"

    # ------------------------------------------------------------------ predictions
    @abstractmethod
    def flatten(self, output: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(prediction (N,), class probabilities (N, C) or None) of one batch's model output."""

    def flatten_labels(self, labels: Any) -> np.ndarray:
        """One batch's labels as (N,) numpy."""
        return _numpy(labels).reshape(-1)

    def head_outputs(self, output: Any) -> dict[str, np.ndarray]:
        """Extra per-head outputs of one batch, each (N,) or (N, C): the output's `heads` mapping, if any."""
        heads = getattr(output, "heads", None) or {}
        return {str(k): _numpy(v) for k, v in heads.items() if v is not None}

    @abstractmethod
    def metrics(self, preds: "Predictions") -> dict[str, float]:
        """The task's metrics of labelled predictions, keys = `metric_names`."""

    @abstractmethod
    def valid_loss(self, preds: "Predictions") -> float:
        """The validation "Loss" (lower is better; selectable as a key metric)."""

    def score(self, preds: "Predictions", *, with_loss_terms: bool = True) -> dict[str, float]:
        """metrics + "Loss" (+ the mean loss terms of the model): one validation record."""
        if preds.labels is None:
            raise ValueError("cannot score predictions without labels")
        out = {k: float(v) for k, v in self.metrics(preds).items()}
        out[LOSS] = float(self.valid_loss(preds))
        if with_loss_terms:
            out.update(preds.loss_terms)
        return out

    def predictions_frame(self, preds: "Predictions") -> pd.DataFrame:
        """The predictions CSV: id, label, the prediction, then the extra head columns."""
        cols: dict[str, Any] = {"id": preds.ids}
        cols["label"] = preds.labels if preds.labels is not None else np.full(len(preds.ids), np.nan)
        cols[self.prediction_column] = preds.prediction
        for name, values in preds.heads.items():
            if name != self.prediction_column and values.ndim == 1:
                cols[name] = values
        return pd.DataFrame(cols)

    # ------------------------------------------------------------------ run dirs
    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description; `from_spec(task.spec())` rebuilds an equal task."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self.spec()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()})"


# ============================================================================ msa


class MSATask(Task):
    """Sentiment regression scored with MMSA's metricsTop for one dataset (deepmlf.metrics)."""

    name = "msa"
    kind = "regression"
    prediction_column = "y_o"
    label_key = "regression_labels"
    units_note = "accuracies and F1 in %, MAE and Corr raw"
    names_note = "MMSA `metricsTop` names"
    # DeepMLF's heads, as attributes of its output (docs/contracts.md): columns of the predictions CSV.
    HEADS: ClassVar[tuple[str, ...]] = ("y_o", "y_t", "y_av", "y_f")

    def __init__(self, dataset: str = "mosi") -> None:
        self.family = metric_set(dataset)  # validates the name (ConfigError listing the datasets)
        self.dataset = str(dataset).lower()

    @classmethod
    def of_config(cls, cfg: Any) -> "MSATask":
        """The task an MSA `Config` is scored by: MMSA's metrics for its `data.dataset`."""
        return cls(cfg.data.dataset)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return key_metric_names(self.dataset)

    @property
    def default_key_metric(self) -> str:
        return "MAE"

    @property
    def title(self) -> str:
        return self.dataset

    def describe(self) -> str:
        return f"dataset {self.dataset!r}"

    def direction(self, metric: str) -> Direction:
        return METRIC_DIRECTIONS.get(metric) or guess_direction(metric)  # type: ignore[return-value]

    @property
    def label_range(self) -> float:
        """Labels lie in [-r, r]."""
        return 1.0 if self.family == "sims" else 3.0

    def flatten(self, output: Any) -> tuple[np.ndarray, None]:
        return _numpy(output.prediction).reshape(-1), None

    def head_outputs(self, output: Any) -> dict[str, np.ndarray]:
        heads = {}
        for name in self.HEADS:
            value = getattr(output, name, None)
            if hasattr(value, "detach"):
                value = value.mean(dim=1) if value.ndim == 2 else value  # y_f: (B, n_f) -> (B,)
                heads[name] = _numpy(value).reshape(-1)
        return heads

    def metrics(self, preds: "Predictions") -> dict[str, float]:
        return {k: float(v) for k, v in msa_metrics(preds.prediction, preds.labels, self.dataset).items()}

    def valid_loss(self, preds: "Predictions") -> float:
        """Mean L1 of the prediction: the authors' KeyEval "Loss"."""
        return float(np.mean(np.abs(preds.prediction - preds.labels)))

    def predictions_frame(self, preds: "Predictions") -> pd.DataFrame:
        """id, label, y_o, y_t, y_av, y_f (those the model has; y_o = the prediction if it has no heads)."""
        cols: dict[str, Any] = {"id": preds.ids}
        cols["label"] = preds.labels if preds.labels is not None else np.full(len(preds.ids), np.nan)
        heads = preds.heads or {"y_o": preds.prediction}
        for name in self.HEADS:
            if name in heads:
                cols[name] = heads[name]
        return pd.DataFrame(cols)

    def classes_of(self, values: Any) -> tuple[np.ndarray, list[str]]:
        """Class index per value and the class names, as MMSA's Mult_acc_7 (MOSI/MOSEI) or Mult_acc_5 (SIMS)."""
        values = np.asarray(values, dtype=float)
        if self.family == "sims":
            edges = [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]  # MMSA's SIMS 5-class bins (left-open)
            clipped = np.clip(values, -1.0, 1.0)
            idx = np.clip(np.searchsorted(edges, clipped, side="left") - 1, 0, 4)
            return idx, ["[-1,-0.7]", "(-0.7,-0.1]", "(-0.1,0.1]", "(0.1,0.7]", "(0.7,1]"]
        idx = (np.round(np.clip(values, -3.0, 3.0)) + 3).astype(int)  # numpy round, as MMSA
        return idx, [str(c) for c in range(-3, 4)]

    @property
    def class_accuracy_name(self) -> str:
        """The metric that is the trace of `classes_of`'s confusion matrix."""
        return "Mult_acc_5" if self.family == "sims" else "Mult_acc_7"

    @property
    def classes_title(self) -> str:
        return "SIMS 5-class bins" if self.family == "sims" else "7 classes: round(clip(x, -3, 3))"

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset}


# ============================================================================ erc


class ClassificationTask(Task):
    """Single-label classification over `classes` (their order defines the label indices).

    Metrics (fractions, shown ×100): `acc`, `weighted_f1` (support-weighted, what ERC papers call
    w-F1), `macro_f1`, and `f1_<class>` per class. Weighted and macro F1 average over the classes
    that occur in the labels or the predictions (scikit-learn's default); a class that occurs in
    neither has an undefined F1 (NaN). A prediction whose logits are not all finite is class -1,
    wrong for every label. The validation "Loss" is the mean cross-entropy −log p(label).
    """

    name = "erc"
    kind = "classification"
    KEY_METRICS: ClassVar[tuple[str, ...]] = ("acc", "weighted_f1", "macro_f1")

    def __init__(self, classes: Sequence[str], *, dataset: str | None = None, key_metric: str = "weighted_f1") -> None:
        classes = tuple(str(c) for c in classes)
        if len(classes) < 2:
            raise ConfigError(f"a classification task needs at least 2 class names, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"class names must be distinct, got {list(classes)}")
        self.classes = classes
        self.dataset = dataset  # shown in titles only ("meld")
        if key_metric not in (*self.KEY_METRICS, LOSS):
            raise ConfigError(f"key_metric={key_metric!r}: choose one of {', '.join((*self.KEY_METRICS, LOSS))}")
        self._default_key = key_metric

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (*self.KEY_METRICS, *(f"f1_{c}" for c in self.classes))

    @property
    def key_metric_names(self) -> tuple[str, ...]:
        return self.KEY_METRICS

    @property
    def default_key_metric(self) -> str:
        return self._default_key

    @property
    def table_metrics(self) -> tuple[str, ...]:
        return self.KEY_METRICS

    @property
    def title(self) -> str:
        return f"{self.dataset or self.name} ({self.n_classes} classes)"

    def flatten(self, output: Any) -> tuple[np.ndarray, np.ndarray]:
        """`output.prediction` holds logits (N, C): probabilities by softmax (float64), class = argmax."""
        from scipy.special import softmax

        logits = output.prediction.detach().double().cpu().numpy()
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise ValueError(
                f"task {self.name!r}: expected logits of shape (N, {self.n_classes}) as the model's "
                f".prediction, got {tuple(logits.shape)}"
            )
        finite = np.isfinite(logits).all(axis=1)
        probs = softmax(np.where(finite[:, None], logits, 0.0), axis=1)
        probs[~finite] = np.nan
        pred = np.where(finite, probs.argmax(axis=1), -1).astype(np.int64)
        return pred, probs

    def flatten_labels(self, labels: Any) -> np.ndarray:
        return labels.detach().cpu().numpy().astype(np.int64).reshape(-1)

    def classes_of(self, values: Any) -> tuple[np.ndarray, list[str]]:
        """Class indices as given (−1 = no valid prediction) and the class names (report confusion plots)."""
        return np.asarray(values, dtype=float).astype(np.int64), list(self.classes)

    class_accuracy_name = "acc"

    @property
    def classes_title(self) -> str:
        return f"{self.n_classes} classes"

    def _checked(self, preds: "Predictions") -> tuple[np.ndarray, np.ndarray]:
        y_true = np.asarray(preds.labels).reshape(-1)
        y_pred = np.asarray(preds.prediction).reshape(-1)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{y_pred.size} predictions for {y_true.size} labels; expected one per label")
        if y_true.size == 0:
            raise ValueError("no samples: predictions and labels are empty")
        if y_true.dtype.kind == "f" and not np.all(np.isfinite(y_true) & (y_true == np.round(y_true))):
            raise ValueError("labels must be class indices (integers)")
        y_true = y_true.astype(np.int64)
        bad = (y_true < 0) | (y_true >= self.n_classes)
        if bad.any():
            raise ValueError(
                f"label {int(y_true[bad][0])} is not a class index of {list(self.classes)} (expected 0..{self.n_classes - 1})"
            )
        return y_true, y_pred.astype(np.int64)

    def metrics(self, preds: "Predictions") -> dict[str, float]:
        from sklearn.metrics import f1_score

        y_true, y_pred = self._checked(preds)
        present = sorted(set(y_true.tolist()) | (set(y_pred.tolist()) - {-1}))
        out = {
            "acc": float(np.mean(y_true == y_pred)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        }
        per_class = f1_score(y_true, y_pred, labels=list(range(self.n_classes)), average=None, zero_division=0)
        for i, c in enumerate(self.classes):
            out[f"f1_{c}"] = float(per_class[i]) if i in present else math.nan
        return out

    def confusion(self, preds: "Predictions") -> np.ndarray:
        """(C, C) counts, rows = true class, columns = predicted class (class -1 predictions are left out)."""
        from sklearn.metrics import confusion_matrix

        y_true, y_pred = self._checked(preds)
        return confusion_matrix(y_true, y_pred, labels=list(range(self.n_classes)))

    def valid_loss(self, preds: "Predictions") -> float:
        y_true, _ = self._checked(preds)
        if preds.probs is None:
            raise ValueError(f"task {self.name!r}: the validation loss needs class probabilities (Predictions.probs)")
        p = preds.probs[np.arange(len(y_true)), y_true]
        return float(np.mean(-np.log(np.clip(p, np.finfo(np.float64).tiny, 1.0))))

    def predictions_frame(self, preds: "Predictions") -> pd.DataFrame:
        """id, label, prediction (indices), label_name, prediction_name, p_<class>..., extra heads."""
        frame = super().predictions_frame(preds)
        names = np.array([*self.classes, ""], dtype=object)  # index -1 -> ""
        if preds.labels is not None:
            frame.insert(3, "label_name", names[np.asarray(preds.labels, dtype=np.int64)])
        frame.insert(len(frame.columns), "prediction_name", names[np.asarray(preds.prediction, dtype=np.int64)])
        if preds.probs is not None:
            for i, c in enumerate(self.classes):
                frame[f"p_{c}"] = preds.probs[:, i]
        return frame

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "classes": list(self.classes)}
        if self.dataset is not None:
            spec["dataset"] = self.dataset
        if self._default_key != "weighted_f1":
            spec["key_metric"] = self._default_key
        return spec


# ============================================================================ registry

# name -> factory taking the other keys of spec() (a new task adds one line here).
TASKS: dict[str, Callable[..., Task]] = {
    "msa": MSATask,
    "erc": ClassificationTask,
}


def from_spec(spec: Mapping[str, Any], source: str = "task spec") -> Task:
    """The task a `spec()` (e.g. a run dir's task.json) describes; ConfigError naming `source` otherwise."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{source}: expected an object with a 'name' (one of {', '.join(TASKS)}), got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    factory = TASKS.get(str(spec["name"]))
    if factory is None:
        raise ConfigError(f"{source}: unknown task {spec['name']!r}; known tasks: {', '.join(TASKS)}")
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from None
