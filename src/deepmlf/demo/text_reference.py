"""The text-only reference: the frozen LM's last-real-token state x_tK and a linear head W_t.

An honest speed-up, not an approximation: the LM is frozen and the reference uses no embedding
augmentation, so x_tK of a sample never changes during training. We compute it once per split
(one no-grad pass of the LM) and fit W_t on the cached features; `TextRegressor.forward` on a batch
gives exactly `head(x_tK)`, which tests/test_demo.py checks.

W_t is fitted on standardised features (a better-conditioned problem for AdamW on L1) and the
standardisation is folded back into the Linear, so the saved head is the TextRegressor's own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import Config
from ..data.dataset import make_loader
from ..data.mmsa import Split
from ..io import append_jsonl, torch_save, write_json, write_text
from ..metrics import METRIC_DIRECTIONS, msa_metrics
from ..model.text_regressor import TextRegressor
from ..train.early_stopping import EarlyStopping

# Fitting W_t on cached features costs milliseconds per epoch, so it is trained to convergence:
# a reference that stopped early would flatter DeepMLF.
HEAD_LR = 3e-3
HEAD_MAX_EPOCHS = 300
HEAD_PATIENCE = 30


@dataclass
class TextFeatures:
    """x_tK of every sample of one split, in split order."""

    ids: list[str]
    x: torch.Tensor  # (N, D) float32
    labels: torch.Tensor  # (N,) float32


@torch.no_grad()
def extract_features(
    model: TextRegressor, split: Split, cfg: Config, *, name: str, progress: bool = True
) -> TextFeatures:
    """One no-grad pass of the frozen LM over `split`: x_tK per sample (TextRegressor.features)."""
    loader = make_loader(
        split, model.backbone.tokenizer, max_text_len=cfg.data.max_text_len,
        batch_size=cfg.data.eval_batch_size, shuffle=False,
    )
    ids, xs, ys = [], [], []
    for batch in tqdm(loader, desc=f"x_tK features ({name})", unit="batch", disable=not progress, leave=False):
        xs.append(model.features(batch.input_ids, batch.attention_mask))
        ys.append(batch.labels.float())
        ids.extend(batch.ids)
    return TextFeatures(ids=ids, x=torch.cat(xs), labels=torch.cat(ys))


def fit_text_head(
    model: TextRegressor,
    features: dict[str, TextFeatures],
    cfg: Config,
    out_dir: Path,
    *,
    seed: int,
    progress: bool = True,
) -> dict[str, float]:
    """Fit `model.head` on cached train features, select on valid `cfg.train.key_metric`, score test.

    Writes into `out_dir` the seed-dir files the report reads: history.jsonl, best.pt (the head),
    test_metrics.json, predictions_test.csv, DONE. Returns the test metrics.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "history.jsonl").unlink(missing_ok=True)
    dataset = cfg.data.dataset
    key = cfg.train.key_metric
    stopper = EarlyStopping(mode=METRIC_DIRECTIONS.get(key, "min"), patience=HEAD_PATIENCE)

    train = features["train"]
    mu = train.x.mean(0)
    sd = train.x.std(0).clamp(min=1e-6)
    standardise = lambda x: (x - mu) / sd  # noqa: E731

    head = torch.nn.Linear(train.x.shape[1], 1)  # on standardised x_tK; folded into model.head below
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head.reset_parameters()
    opt = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=cfg.train.weight_decay)
    bs = cfg.data.batch_size
    xs_train, y_train = standardise(train.x), train.labels
    xs_valid, y_valid = standardise(features["valid"].x), features["valid"].labels
    best_state = None
    bar = tqdm(range(1, HEAD_MAX_EPOCHS + 1), desc="text-only head", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        order = torch.randperm(len(y_train), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            loss = F.l1_loss(head(xs_train[idx]).squeeze(-1), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        with torch.no_grad():
            pred = head(xs_valid).squeeze(-1)
        valid = {"Loss": float(F.l1_loss(pred, y_valid)), **msa_metrics(pred.numpy(), y_valid.numpy(), dataset)}
        append_jsonl(out_dir / "history.jsonl", {
            "epoch": epoch, "step": epoch * math.ceil(len(order) / bs), "lr": HEAD_LR,
            "time_s": round(time.perf_counter() - t0, 4),
            "train": {"loss": total / count, "task": total / count}, "valid": valid,
        })
        if stopper.step(valid[key], epoch):
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        bar.set_postfix({f"valid {key}": f"{valid[key]:.3f}", "best": f"{stopper.best:.3f}"})
        if stopper.should_stop:
            break
    bar.close()
    if best_state is not None:  # None only if every validation value was NaN
        head.load_state_dict(best_state)

    # Fold the standardisation into W_t: w·(x-mu)/sd + b = (w/sd)·x + (b - w·mu/sd).
    with torch.no_grad():
        w, b = head.weight[0], head.bias[0]
        model.head.proj.weight.copy_((w / sd)[None, :])
        model.head.proj.bias.fill_(float(b - (w * mu / sd).sum()))
    torch_save({"model": model.trainable_state_dict(), "best_epoch": stopper.best_epoch,
                "config": cfg.to_dict()}, out_dir / "best.pt")

    test = features["test"]
    with torch.no_grad():
        y_pred = model.head(test.x)  # (N,) exactly what TextRegressor.forward gives on these samples
    metrics = msa_metrics(y_pred.numpy(), test.labels.numpy(), dataset)
    write_json(out_dir / "test_metrics.json", metrics)
    frame = pd.DataFrame({"id": test.ids, "label": test.labels.numpy(), "y_o": y_pred.numpy(), "y_t": y_pred.numpy()})
    write_text(out_dir / "predictions_test.csv", frame.to_csv(index=False))
    write_text(out_dir / "DONE", "")
    return {k: float(v) for k, v in metrics.items()}
