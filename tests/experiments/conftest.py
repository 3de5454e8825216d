"""Fixtures for the experiments tests (helpers live in exp_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepmlf.data.testing import write_mmsa_pickle


@pytest.fixture(scope="module")
def tiny_pickle(tmp_path_factory) -> Path:
    """A small MOSI-layout pickle (24/16/16 samples) for tiny end-to-end runs."""
    return write_mmsa_pickle(tmp_path_factory.mktemp("exp-data") / "unaligned_50.pkl", n_per_split=(24, 16, 16))
