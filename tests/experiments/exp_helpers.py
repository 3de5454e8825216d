"""Tiny end-to-end settings for the experiments tests: tiny-gpt2 (4 layers, D=32), 1-3 short epochs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Every override a tiny run needs; tests add max_epochs / seeds on top.
TINY_SET = [
    "model.backbone=tiny-gpt2",
    "model.mm_layers=[2, 3]",
    "model.n_heads=4",
    "model.av_encoder.n_layers=1",
    "model.av_encoder.av_len=8",
    "model.av_encoder.init=random_tune",
    "model.augment.kind=none",
    "data.dataset=mosi",
    "data.max_text_len=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "train.grad_accum=1",
    "train.warmup_epochs=0",
    "train.limit_batches=2",
    "train.mixed_precision='no'",  # quoted: bare no is YAML 1.1 false
]


def cli_env() -> dict[str, str]:
    # One thread per process: the two-worker tests share 2 cores with other test runs.
    return {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def deepmlf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepmlf.cli", *args]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(deepmlf_cmd(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout, cwd=REPO)
