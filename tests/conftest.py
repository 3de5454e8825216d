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
