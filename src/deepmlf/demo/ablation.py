"""Test-time ablation of the trained DeepMLF: switch off every MM block's cross-attention branch.

DeepMLF's task head also sees x_tK and z̄ directly, so beating both unimodal references could in
principle come from the head alone (late fusion). Scoring the same weights with the branch
g1·GCA(X_f, Z) of eq. 9 set to zero measures what the deep path through the fusion tokens adds.
Nothing is retrained; the hooks are removed on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..data.dataset import make_loader
from ..data.mmsa import Split
from ..metrics import msa_metrics
from ..train.evaluate import collect_predictions

ABLATION_NAME = "DeepMLF, cross-attention off at test"
FUSION_HEAD_NAME = "DeepMLF fusion head y_f alone"
FUSION_HEAD_NOTE = (
    "the trained DeepMLF's fusion head W_f (eq. 13) on the fusion tokens alone, averaged over tokens: "
    "no x_tK, no z̄, so whatever it knows of text and AV came through the deep path"
)
ABLATION_NOTE = (
    "the trained DeepMLF scored with every MM block's cross-attention branch g1·GCA (eq. 9) set to 0: "
    "no AV reaches the fusion tokens; the task head still reads x_tK and z̄ (not retrained)"
)


@contextmanager
def cross_attention_off(model: torch.nn.Module) -> Iterator[None]:
    """Zero the output of each MM block's cross-attention (any gate kind) while inside the block."""
    handles = [
        block.attn.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        for _, block in model.lm.mm_blocks()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def score_deep_path(best_pt: Path, test: Split, *, dataset: str) -> tuple[dict[str, float], dict[str, float]]:
    """(MMSA metrics of `best_pt`'s fusion head y_f alone, of its task head with the
    cross-attention branches off), both on `test`, from one load of the checkpoint."""
    from ..train.run import load_model_from_checkpoint

    loaded = load_model_from_checkpoint(best_pt)
    cfg = loaded.cfg
    loader = make_loader(test, loaded.tokenizer, max_text_len=cfg.data.max_text_len,
                         batch_size=cfg.data.eval_batch_size, shuffle=False)
    full = collect_predictions(loaded.model, loader)
    fusion_head = msa_metrics(full.heads["y_f"], full.labels, dataset)
    with cross_attention_off(loaded.model):
        preds = collect_predictions(loaded.model, loader)
    off = msa_metrics(preds.prediction, preds.labels, dataset)
    return ({k: float(v) for k, v in fusion_head.items()}, {k: float(v) for k, v in off.items()})


def score_without_cross_attention(best_pt: Path, test: Split, *, dataset: str) -> dict[str, float]:
    """MMSA metrics of `best_pt` on `test` with the cross-attention branches off."""
    return score_deep_path(best_pt, test, dataset=dataset)[1]
