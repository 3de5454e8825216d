"""The AV-only reference: DeepMLF's own stage-1 model (AV encoder + scalar head), scored on test.

Stage 1 already trains exactly the model an AV-only baseline needs (DESIGN.md §1), on the same
data and with early stopping on validation, so the reference costs one test pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..data.dataset import make_loader
from ..data.mmsa import MMSAData
from ..io import write_json, write_text
from ..model import build_av_regressor
from ..train.checkpoint import load_best
from ..tasks import MSATask
from ..train.evaluate import collect_predictions


def load_stage1(model: torch.nn.Module, path: Path) -> None:
    """Load a stage-1 best.pt (the trainer's layout: trainable weights under "model") into an AVRegressor."""
    model.load_trainable_state_dict(load_best(path)["model"])


def score_av_reference(cfg: Config, data: MMSAData, stage1_dir: Path, out_dir: Path, *, tokenizer: Any) -> dict[str, float]:
    """Rebuild the stage-1 model from `stage1_dir/best.pt`, score it on test, write a seed-like dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = data.splits["test"]
    model = build_av_regressor(cfg, test.audio_dim, test.vision_dim)
    load_stage1(model, Path(stage1_dir) / "best.pt")
    loader = make_loader(test, tokenizer, max_text_len=cfg.data.max_text_len,
                         batch_size=cfg.data.eval_batch_size, shuffle=False)
    preds = collect_predictions(model, loader)
    metrics = MSATask.of_config(cfg).metrics(preds)
    write_json(out_dir / "test_metrics.json", metrics)
    frame = preds.to_frame()
    frame["y_o"] = preds.prediction  # the model's prediction is its AV head
    write_text(out_dir / "predictions_test.csv", frame[["id", "label", "y_o"]].to_csv(index=False))
    history = Path(stage1_dir) / "history.jsonl"
    if history.is_file():
        shutil.copyfile(history, out_dir / "history.jsonl")
    write_text(out_dir / "DONE", "")
    return metrics
