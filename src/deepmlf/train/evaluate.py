"""Run a model over a loader and score it: its predictions, per-head outputs, the task's metrics,
mean loss terms.

Works for every model through the shared output protocol (`.prediction`, `.loss_terms`) and for
every task through `deepmlf.tasks.Task`: the task turns each batch's output into a flat
prediction (and class probabilities for classification) and picks the extra head outputs
(DeepMLF's `y_o`, `y_t`, `y_av`, `y_f`; a model's `heads` mapping otherwise).

A batch is anything with `.to(device)`, `.ids` (one per scored item), `.labels` (None when
unlabelled) and `len()` = the number of scored items (docs/contracts.md, "Batches").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..tasks import MSATask, Task


@dataclass
class Predictions:
    """Per-sample outputs over one split, in loader order. N samples, C classes."""

    ids: list[str]
    prediction: np.ndarray  # (N,) the model's prediction: a score (regression) or a class index
    labels: np.ndarray | None  # (N,) or None for unlabelled data
    heads: dict[str, np.ndarray] = field(default_factory=dict)  # extra outputs per head, (N,) or (N, C)
    loss_terms: dict[str, float] = field(default_factory=dict)  # sample-weighted means ("task", "f", "av", "t", "lm")
    probs: np.ndarray | None = None  # (N, C) class probabilities (classification tasks), else None

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self, task: Task | None = None) -> pd.DataFrame:
        """The predictions CSV of docs/contracts.md (MSA: id, label, y_o, y_t, y_av, y_f)."""
        return (task or MSATask()).predictions_frame(self)


def no_grad_context(model: nn.Module, inference_mode: bool | None = None) -> contextlib.AbstractContextManager:
    """torch.inference_mode when asked (or, with None, when the model says so: perf.inference_mode
    sets `model.eval_inference_mode`), else torch.no_grad. The same numbers; inference mode also
    skips autograd's version counters and views bookkeeping."""
    on = getattr(model, "eval_inference_mode", False) if inference_mode is None else inference_mode
    return torch.inference_mode() if on else torch.no_grad()


def collect_predictions(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    task: Task | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    limit_batches: int | None = None,
    inference_mode: bool | None = None,
) -> Predictions:
    """Evaluate `model` (in eval mode; its mode is restored afterwards) over `batches`.

    `task` flattens the outputs (default: MSA regression). `autocast`: a factory of the
    mixed-precision context (e.g. `accelerator.autocast`), entered per batch. `inference_mode`:
    see `no_grad_context` (None: the model's `eval_inference_mode`, default off).
    """
    with no_grad_context(model, inference_mode):
        return _collect(model, batches, task=task, device=device, autocast=autocast, limit_batches=limit_batches)


def _collect(model: nn.Module, batches: Iterable[Any], *, task: Task | None, device: torch.device | str,
             autocast: Callable[[], contextlib.AbstractContextManager] | None,
             limit_batches: int | None) -> Predictions:
    task = task or MSATask()
    was_training = model.training
    model.eval()
    ids: list[str] = []
    preds, labels, probs = [], [], []
    heads: dict[str, list[np.ndarray]] = {}
    term_sums: dict[str, float] = {}
    n_labelled = 0
    has_labels = True
    try:
        for i, batch in enumerate(batches):
            if limit_batches is not None and i >= limit_batches:
                break
            batch = batch.to(device)
            with autocast() if autocast is not None else contextlib.nullcontext():
                out = model(batch)
            ids.extend(batch.ids)
            pred, prob = task.flatten(out)
            preds.append(pred)
            if prob is not None:
                probs.append(prob)
            for name, value in task.head_outputs(out).items():
                heads.setdefault(name, []).append(value)
            if batch.labels is None:
                has_labels = False
                continue
            labels.append(task.flatten_labels(batch.labels))
            b = len(batch)
            n_labelled += b
            for name, value in (getattr(out, "loss_terms", None) or {}).items():
                term_sums[name] = term_sums.get(name, 0.0) + float(value.detach().float()) * b
    finally:
        model.train(was_training)
    return Predictions(
        ids=ids,
        prediction=np.concatenate(preds) if preds else np.zeros(0, dtype=np.float32),
        labels=np.concatenate(labels) if has_labels and labels else None,
        heads={k: np.concatenate(v) for k, v in heads.items()},
        loss_terms={k: v / n_labelled for k, v in term_sums.items()} if n_labelled else {},
        probs=np.concatenate(probs) if probs else None,
    )


def score(preds: Predictions, task: Task, *, with_loss_terms: bool = True) -> dict[str, float]:
    """The task's metrics, plus "Loss" (MSA: mean L1 of the prediction, the authors' KeyEval
    "Loss") and, optionally, the mean unweighted loss terms."""
    return task.score(preds, with_loss_terms=with_loss_terms)
