"""Typed configuration: presets, YAML files, --set overrides, and the errors a user sees."""

from __future__ import annotations

import pytest

from deepmlf.config import PRESETS, check_against_backbone, load_config, load_yaml
from deepmlf.errors import ConfigError


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name):
    cfg = load_config(preset=name)
    assert cfg.model.mm_layers == sorted(cfg.model.mm_layers)


def test_presets_hold_the_paper_settings():
    # DESIGN.md §2: fusion layers, n_f and label spaces per dataset.
    mosei = load_config(preset="mosei-base")
    assert mosei.model.mm_layers == [3, 5, 7, 8, 9, 10, 11] and mosei.model.n_fusion == 12
    assert mosei.data.dataset == "mosei" and mosei.loss.lambda_lm == pytest.approx(1.1)
    sims = load_config(preset="sims")
    assert sims.data.dataset == "sims" and sims.model.n_fusion == 20 and sims.model.av_encoder.batchnorm
    mosi = load_config(preset="mosi")
    assert mosi.model.ffw == "lora" and mosi.loss.lambda_lm == 0.0
    assert load_config(preset="mosei-large").model.mm_layers == [7, 14, 21, 28, 35]


def test_authors_switches_are_off_by_default_and_on_in_the_paper_presets():
    """docs/authors-regularisers.md: our defaults; each paper preset takes its best config's values."""
    default = load_config()
    assert default.data.dataset == "infer"  # the file decides unless a preset or the user names it
    assert default.model.av_encoder.softperm.p_perm == 0.0 and default.model.augment.permutation == "per_sample"
    assert not default.model.backbone_dropout
    assert (default.train.lr_schedule, default.train.stop_at_max_epochs) == ("cosine", True)
    assert (default.pretrain.readout, default.pretrain.shared) == ("mean", False)
    softperm = {"mosi": 0.3, "mosei-base": 0.2, "mosei-large": 0.2, "sims": 0.2, "simsv2": 0.2}
    for name, p in softperm.items():
        cfg = load_config(preset=name)
        assert cfg.model.av_encoder.softperm.p_perm == p and cfg.model.backbone_dropout
        assert (cfg.train.lr_schedule, cfg.train.stop_at_max_epochs) == ("cosine_restarts", False)
        assert (cfg.pretrain.readout, cfg.pretrain.shared) == ("last", True)
        seqaug = cfg.model.augment.kind == "seqaug"
        assert seqaug is (name != "mosi") and (not seqaug or cfg.model.augment.permutation == "per_batch")


def test_simsv2_preset_is_the_sims_preset_on_simsv2():
    sims, v2 = load_config(preset="sims").to_dict(), load_config(preset="simsv2").to_dict()
    assert v2["data"].pop("dataset") == "simsv2" and sims["data"].pop("dataset") == "sims"
    assert v2 == sims


def test_overrides_beat_file_beat_preset(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: mosei-base\nmodel: {n_fusion: 16}\ntrain: {lr: 3.0e-4}\n")
    cfg = load_config(f, overrides=["model.n_fusion=20", "model.backbone=/models/gpt2"])
    assert cfg.model.n_fusion == 20  # --set wins over the file
    assert cfg.train.lr == pytest.approx(3e-4)  # the file wins over the preset
    assert cfg.model.mm_layers == [3, 5, 7, 8, 9, 10, 11]  # the preset fills the rest
    assert cfg.model.backbone == "/models/gpt2"


def test_yaml_words_off_and_no_stay_words(tmp_path):
    # YAML 1.1 would read `off`/`no` as False; the options named so must keep their meaning.
    assert load_config(overrides=["model.ffw=off", "train.mixed_precision=no"]).model.ffw == "off"
    f = tmp_path / "c.yaml"
    f.write_text("model: {ffw: off}\ntrain: {mixed_precision: no}\nmodel_flag_check: true\n")
    assert load_yaml(f.read_text()) == {"model": {"ffw": "off"}, "train": {"mixed_precision": "no"},
                                        "model_flag_check": True}
    f.write_text("model: {ffw: off, av_encoder: {batchnorm: true}}\n")
    cfg = load_config(f)
    assert cfg.model.ffw == "off" and cfg.model.av_encoder.batchnorm is True


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.lambda_f=-0.5", r"loss\.lambda_f: Input should be greater than or equal to 0.*got -0\.5"),
        ("model.gate=relu", r"model\.gate: Input should be 'sigmoid', 'tanh' or 'none'.*got 'relu'"),
        ("model.ffw=half", r"model\.ffw: Input should be 'full', 'lora', 'random' or 'off'"),
        ("model.mm_layers=[3,3]", r"model\.mm_layers.*an index appears twice"),
        ("model.mm_layers=[-1]", r"model\.mm_layers.*0-based"),
        ("model.n_fusoin=8", r"model\.n_fusoin: Extra inputs are not permitted"),
        ("model.av_encoder.d_av=32", r"d_av=32 must be divisible by av_encoder\.n_heads=6"),
        ("train.seeds=[]", r"train\.seeds: List should have at least 1 item"),
        ("model.augment.kind=mixup", r"model\.augment\.kind: Input should be 'seqaug', 'dropout', 'noise' or 'none'"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(preset="mosei-base", overrides=[override])


def test_malformed_set_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--set 'model\.n_fusion': expected KEY=VALUE"):
        load_config(overrides=["model.n_fusion"])
    with pytest.raises(ConfigError, match=r"'n_fusion' is a value, not a section"):
        load_config(preset="mosi", overrides=["model.n_fusion.x=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'mosii'"):
        load_config(preset="mosii")


def test_mm_layer_beyond_the_backbone_is_named():
    cfg = load_config(preset="mosei-base")
    with pytest.raises(ConfigError, match=r"index 7 is out of range.*has 6 decoder layers \(valid 0\.\.5\)"):
        check_against_backbone(cfg.model, n_layers=6, hidden_size=768)
    with pytest.raises(ConfigError, match="n_heads=16 must divide the backbone width 100"):
        check_against_backbone(cfg.model, n_layers=12, hidden_size=100)
