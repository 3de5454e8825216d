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


def score_without_cross_attention(best_pt: Path, test: Split, *, dataset: str) -> dict[str, float]:
    """MMSA metrics of `best_pt` on `test` with the cross-attention branches off."""
    from ..train.run import load_model_from_checkpoint

    loaded = load_model_from_checkpoint(best_pt)
    cfg = loaded.cfg
    loader = make_loader(test, loaded.tokenizer, max_text_len=cfg.data.max_text_len,
                         batch_size=cfg.data.eval_batch_size, shuffle=False)
    with cross_attention_off(loaded.model):
        preds = collect_predictions(loaded.model, loader)
    return {k: float(v) for k, v in msa_metrics(preds.prediction, preds.labels, dataset).items()}
