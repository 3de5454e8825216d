"""Run a model over a loader and score it: predictions of every head, MMSA metrics, mean loss terms.

Works for both stages through the shared output protocol (`.prediction`, `.loss_terms`); the
DeepMLF heads `y_o`, `y_t`, `y_av`, `y_f` are collected when the output has them (y_f is averaged
over the fusion tokens, as the prediction table stores it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.batch import Batch
from ..metrics import msa_metrics

HEADS = ("y_o", "y_t", "y_av", "y_f")


@dataclass
class Predictions:
    """Per-sample outputs over one split, in loader order. N samples."""

    ids: list[str]
    prediction: np.ndarray  # (N,) the model's prediction (y_o in stage 2, y_av in stage 1)
    labels: np.ndarray | None  # (N,) or None for unlabelled data
    heads: dict[str, np.ndarray] = field(default_factory=dict)  # head name -> (N,); y_f = mean over fusion tokens
    loss_terms: dict[str, float] = field(default_factory=dict)  # sample-weighted means ("task", "f", "av", "t", "lm")

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self) -> pd.DataFrame:
        """id, label, then the heads (y_o, y_t, y_av, y_f) — the predictions CSV of docs/contracts.md."""
        cols: dict[str, Any] = {"id": self.ids}
        cols["label"] = self.labels if self.labels is not None else np.full(len(self.ids), np.nan)
        heads = self.heads or {"y_o": self.prediction}
        for name in HEADS:
            if name in heads:
                cols[name] = heads[name]
        return pd.DataFrame(cols)


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@torch.no_grad()
def collect_predictions(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    limit_batches: int | None = None,
) -> Predictions:
    """Evaluate `model` (in eval mode; its mode is restored afterwards) over `batches`.

    `autocast`: a factory of the mixed-precision context (e.g. `accelerator.autocast`), entered per batch.
    """
    was_training = model.training
    model.eval()
    ids: list[str] = []
    preds, labels = [], []
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
            preds.append(_as_numpy(out.prediction).reshape(-1))
            for name in HEADS:
                value = getattr(out, name, None)
                if isinstance(value, torch.Tensor):
                    value = value.mean(dim=1) if value.ndim == 2 else value  # y_f: (B, n_f) -> (B,)
                    heads.setdefault(name, []).append(_as_numpy(value).reshape(-1))
            if batch.labels is None:
                has_labels = False
                continue
            labels.append(_as_numpy(batch.labels).reshape(-1))
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
    )


def score(preds: Predictions, dataset: str, *, with_loss_terms: bool = True) -> dict[str, float]:
    """MMSA metrics of the prediction, plus "Loss" (mean L1 of the prediction: the authors' KeyEval
    "Loss") and, optionally, the mean unweighted loss terms."""
    if preds.labels is None:
        raise ValueError("cannot score predictions without labels")
    metrics = {k: float(v) for k, v in msa_metrics(preds.prediction, preds.labels, dataset).items()}
    metrics["Loss"] = float(np.mean(np.abs(preds.prediction - preds.labels)))
    if with_loss_terms:
        metrics.update(preds.loss_terms)
    return metrics
