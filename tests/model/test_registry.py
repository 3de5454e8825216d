"""model.arch: one registry, one place that builds; clear errors for unknown or mismatched arches."""

from __future__ import annotations

import pytest
from torch import nn

from deepmlf.config import load_config
from deepmlf.errors import ConfigError
from deepmlf.model import DeepMLF
from deepmlf.model.registry import Arch, build_arch, get_arch, known_arches, register_arch, unregister_arch


def test_deepmlf_is_the_default_arch_and_builds_from_the_msa_config():
    cfg = load_config(overrides=["model.backbone=tiny-gpt2", "model.mm_layers=[1]", "model.n_heads=4",
                                 "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2", "model.av_encoder.n_layers=1"])
    assert cfg.model.arch == "deepmlf" and "deepmlf" in known_arches()
    arch = get_arch(cfg.model.arch, task="msa")
    assert (arch.task, arch.needs_backbone, arch.av_pretraining, arch.label) == ("msa", True, True, "DeepMLF")
    from deepmlf.backbones import load_backbone

    model = build_arch("deepmlf", cfg, dims={"audio": 5, "vision": 7}, backbone=load_backbone("tiny-gpt2"))
    assert isinstance(model, DeepMLF)
    with pytest.raises(ConfigError, match="needs a language-model backbone"):
        build_arch("deepmlf", cfg, dims={"audio": 5, "vision": 7})


def test_a_new_arch_registers_with_its_task_and_is_found_by_name():
    built = []

    def build(cfg, *, dims, backbone):
        built.append((cfg, dict(dims), backbone))
        return nn.Linear(dims["text"], 7)

    register_arch(Arch(name="magt-test", task="erc", build=build, inputs=("text", "audio", "video")))
    try:
        model = build_arch("magt-test", {"any": "config tree"}, dims={"text": 4}, task="erc")
        assert isinstance(model, nn.Linear) and built == [({"any": "config tree"}, {"text": 4}, None)]
        with pytest.raises(ConfigError, match=r"model.arch='magt-test' is a model for the 'erc' task, not 'msa'; "
                                              r"choose one of deepmlf"):
            get_arch("magt-test", task="msa")
        with pytest.raises(ValueError, match="already registered"):
            register_arch(Arch(name="magt-test", task="erc", build=lambda *a, **k: None))
    finally:
        unregister_arch("magt-test")
    with pytest.raises(ConfigError, match=r"erc.model='magt-test': unknown model architecture; known: [a-z, -]*deepmlf"):
        get_arch("magt-test", option="erc.model")
