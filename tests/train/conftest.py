"""Helpers for the training tests: a tiny DeepMLF config on tiny-gpt2, a fake model for the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepmlf.config import Config, load_config
from deepmlf.data.batch import Batch
from deepmlf.data.testing import write_mmsa_pickle

from ..conftest import one_thread

# Small everything: 2 MM blocks on the 4-layer tiny GPT-2 (D=32), a 1-layer AV encoder of width 6.
TINY_OVERRIDES = [
    "model.backbone=tiny-gpt2",
    "model.mm_layers=[1,3]",
    "model.n_fusion=3",
    "model.n_heads=4",
    "model.head_hidden=8",
    "model.augment.kind=seqaug",
    "model.av_encoder.d_av=6",
    "model.av_encoder.n_heads=2",
    "model.av_encoder.n_layers=1",
    "model.av_encoder.av_len=5",
    "data.max_text_len=12",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "train.grad_accum=2",
    "train.max_epochs=2",
    "train.early_stop=5",
    "train.seeds=[1]",
    "train.mixed_precision=no",
    "pretrain.max_epochs=2",
    "pretrain.grad_accum=1",
]


@pytest.fixture(scope="session")
def toy_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24/8/8 samples, audio 20x5, vision 20x20 (MOSI layout)."""
    return write_mmsa_pickle(tmp_path_factory.mktemp("toy") / "toy.pkl", n_per_split=(24, 8, 8), la=20, lv=20)


def tiny_config(data_path: Path | None, *extra: str) -> Config:
    overrides = list(TINY_OVERRIDES) + ([f"data.path={data_path}"] if data_path else []) + list(extra)
    return load_config(overrides=overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, toy_pickle):
    """One seed, stage 1 (1 epoch) + stage 2 (2 epochs) on the toy pickle. Read-only for its users
    (test_run.py, test_golden_msa.py)."""
    from deepmlf.train import train_run

    run_dir = tmp_path_factory.mktemp("run")
    cfg = tiny_config(toy_pickle, "pretrain.max_epochs=1")
    with one_thread():  # session fixtures run before the autouse one-thread fixture
        result = train_run(cfg, run_dir, progress=False)
    return cfg, run_dir, result


# ----------------------------------------------------------------------------- a fake model for the loop


@dataclass
class FakeOutput:
    prediction: torch.Tensor
    loss: torch.Tensor | None
    loss_terms: dict[str, torch.Tensor]


class FakeRegressor(nn.Module):
    """y = w · mean(audio) + b, L1 loss: enough to exercise the loop without a language model."""

    def __init__(self, audio_dim: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(audio_dim, 1)
        self.norm = nn.LayerNorm(audio_dim)

    def forward(self, batch: Batch) -> FakeOutput:
        y = self.linear(self.norm(batch.audio.mean(1))).squeeze(-1)  # (B,)
        if batch.labels is None:
            return FakeOutput(y, None, {})
        loss = (y - batch.labels).abs().mean()
        return FakeOutput(y, loss, {"task": loss})

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)

    def parameter_counts(self) -> dict[str, int]:
        n = sum(p.numel() for p in self.parameters())
        return {"trainable": n, "total": n}


class FakeClassifier(FakeRegressor):
    """logits = W · mean(audio) + b, cross-entropy: a classification model for the same loop."""

    def __init__(self, n_classes: int, audio_dim: int = 3) -> None:
        super().__init__(audio_dim)
        self.linear = nn.Linear(audio_dim, n_classes)

    def forward(self, batch: Batch) -> FakeOutput:
        logits = self.linear(self.norm(batch.audio.mean(1)))  # (B, C)
        if batch.labels is None:
            return FakeOutput(logits, None, {})
        loss = nn.functional.cross_entropy(logits, batch.labels)
        return FakeOutput(logits, loss, {"task": loss})


def fake_batches(n_batches: int, batch_size: int = 4, *, seed: int = 0, audio_dim: int = 3,
                 classes: int | None = None) -> list[Batch]:
    """Regression labels in [-3, 3] from the audio; `classes`: class indices (tertiles of the same score)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        audio = torch.randn(batch_size, 6, audio_dim, generator=g)
        labels = (audio[:, :, 0].mean(1) * 3).clamp(-3, 3)
        if classes is not None:
            labels = torch.bucketize(labels, torch.linspace(-1, 1, classes - 1))
        out.append(Batch(
            input_ids=torch.zeros(batch_size, 4, dtype=torch.long),
            attention_mask=torch.ones(batch_size, 4, dtype=torch.long),
            audio=audio, audio_lengths=torch.full((batch_size,), 6),
            vision=torch.zeros(batch_size, 6, 2), vision_lengths=torch.full((batch_size,), 6),
            labels=labels, ids=[f"b{i}s{j}" for j in range(batch_size)],
        ))
    return out
