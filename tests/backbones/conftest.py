"""Fixtures for the backbone tests: no network, an empty HF cache and a private deepmlf cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test loudly (loading must be offline)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network) -> dict[str, Path]:
    """HF_HOME -> an empty tmp dir, HF_HUB_OFFLINE=1, DEEPMLF_CACHE -> tmp; returns the paths."""
    hf_home = tmp_path / "hf-home"
    deepmlf_cache = tmp_path / "deepmlf-cache"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEEPMLF_CACHE", str(deepmlf_cache))
    return {"hf_home": hf_home, "hf_cache": hf_home / "hub", "deepmlf_cache": deepmlf_cache}
