"""Shared fixtures. Each area may add its own here; keep them small and fast (2 shared CPU cores)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from deepmlf.backbones.tiny import byte_tokenizer
from deepmlf.data.testing import write_mmsa_pickle


@pytest.fixture(scope="session")
def mmsa_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MOSI-layout pickle (24/8/8 samples, audio 30x5, vision 40x20), written once per session.

    Read-only by convention: tests that need a variant write their own with `write_mmsa_pickle`.
    """
    return write_mmsa_pickle(tmp_path_factory.mktemp("mmsa") / "unaligned_50.pkl")


@pytest.fixture(scope="session")
def byte_tok():
    """The tiny backbones' byte tokenizer: one token per byte, eos = pad = 256, right padding."""
    return byte_tokenizer()


@contextmanager
def one_thread():
    """One torch thread inside the block (the thread count also changes float sums: golden values)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tiny tensors gain nothing from threads, and OpenMP spin-waits make them ~20x slower when the
    2 cores are shared. Slow tests on the real backbone keep torch's thread count. (Session and
    module fixtures run before this one: they use `one_thread()` themselves.)"""
    if request.node.get_closest_marker("slow"):
        yield
        return
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-seed DeepMLF run (tiny-gpt2, one optimiser step per stage) on a toy MOSI-layout pickle."""
    from deepmlf.config import load_config
    from deepmlf.train import train_run

    root = tmp_path_factory.mktemp("tiny_run")
    data = write_mmsa_pickle(root / "toy.pkl", n_per_split=(16, 8, 8), la=12, lv=10)
    overrides = [
        "model.backbone=tiny-gpt2", "model.mm_layers=[1,3]", "model.n_fusion=3", "model.n_heads=4",
        "model.head_hidden=8", "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2",
        "model.av_encoder.n_layers=1", "model.av_encoder.av_len=5", "data.max_text_len=12", "data.batch_size=8",
        "train.grad_accum=1", "train.max_epochs=1", "train.max_steps=1", "train.mixed_precision=no",
        "train.seeds=[1,2]", "pretrain.max_epochs=1", "pretrain.grad_accum=1", f"data.path={data}",
    ]
    with one_thread():
        train_run(load_config(overrides=overrides), root / "run", progress=False)
    return root / "run"
