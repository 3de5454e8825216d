"""`deepmlf explain`: the rationale and the score of every sample of a split, from a trained model
with a rationale head (`model.rationale`), by batched greedy decoding with a KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .format import parse_prediction


def has_rationale_head(model: Any) -> bool:
    return callable(getattr(model, "explain", None))


def explain_batches(model: Any, loader: Any, *, device: torch.device | str = "cpu", max_len: int | None = None,
                    progress: Any = None) -> list[dict[str, Any]]:
    """One record per sample: {"id", "rationale", "parsed" (MulCoT-RD's rule; None when absent),
    "y_o", "label" (None when unlabelled)}, in loader order."""
    rows: list[dict[str, Any]] = []
    for batch in loader:
        batch = batch.to(device)
        out, _ = model.explain(batch, max_len=max_len)
        labels = batch.labels.tolist() if batch.labels is not None else [None] * len(batch)
        for sid, text, y_o, y in zip(batch.ids, out.rationale, out.y_o.tolist(), labels):
            parsed = parse_prediction(text)
            rows.append({"id": str(sid), "rationale": text, "parsed": parsed, "y_o": float(y_o),
                         "label": None if y is None or y != y else float(y)})
        if progress is not None:
            progress(len(rows))
    return rows


def explain_checkpoint(ckpt_path: str | Path, data_path: str | Path, split: str = "test", *,
                       max_len: int | None = None, batch_size: int | None = None) -> list[dict[str, Any]]:
    """`explain_batches` for a best.pt (or run dir / export folder) on one split of an MMSA pickle."""
    from ..data import make_loader
    from ..predictor import load
    from ..train.run import _checkpoint_split

    predictor = load(ckpt_path)
    if not has_rationale_head(predictor.model):
        raise CheckpointError(f"{ckpt_path}: this model has no rationale head (train it with "
                              "model.rationale.enabled=true and model.rationale.path=TEACHER.jsonl)")
    s = _checkpoint_split(predictor._loaded, data_path, split, require_labels=False)
    cfg = predictor.config
    loader = make_loader(s, predictor.tokenizer, max_text_len=cfg.data.max_text_len,
                         batch_size=batch_size or cfg.data.eval_batch_size, shuffle=False)
    return explain_batches(predictor.model, loader, max_len=max_len)
