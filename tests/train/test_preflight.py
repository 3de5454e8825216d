"""Checks that need the backbone or the file run before stage 1: a bad value is refused before
anything is written (issue 9 item 9), and the dataset comes from the file (issue 9 item 1)."""

from __future__ import annotations

import json
import re

import pytest

from deepmlf.backbones.tiny import bert_char_tokenizer
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.errors import BackboneError, ConfigError, DataError
from deepmlf.metrics import SIMS_KEYS
from deepmlf.train import train_run
from deepmlf.train.preflight import resolve_dataset
from deepmlf.train.run import load_data

from .conftest import tiny_config


def _refused(cfg, run_dir, error, match):
    with pytest.raises(error, match=match):
        train_run(cfg, run_dir, progress=False)
    assert not run_dir.exists()  # nothing ran, nothing was written (no stage1/, no config.yaml)


@pytest.mark.parametrize("override, error, match", [
    ("model.mm_layers=[1,9]", ConfigError, re.escape("model.mm_layers=[1, 9]: index 9 is out of range; backbone "
                                                     "'tiny-gpt2' has 4 decoder layers (valid 0..3)")),
    ("model.n_heads=5", ConfigError, re.escape("model.n_heads=5 must divide the backbone width 32 ('tiny-gpt2')")),
    ("data.max_text_len=254", ConfigError, re.escape("data.max_text_len=254 + model.n_fusion=3 tokens exceed the 256 "
                                                     "positions of backbone 'tiny-gpt2'")),
    ("model.backbone=/no/such/gpt2", BackboneError, re.escape("cannot resolve backbone '/no/such/gpt2' offline")),
    ("train.key_metric=Mult_acc_3", ConfigError, re.escape("train.key_metric='Mult_acc_3' is not reported for "
                                                           "dataset 'mosi'")),
])
def test_bad_values_are_refused_before_stage_1(tmp_path, toy_pickle, override, error, match):
    cfg = tiny_config(toy_pickle, override)
    assert cfg.model.av_encoder.init == "pretrain_tune"  # stage 1 would run first
    _refused(cfg, tmp_path / "run", error, match)


def test_a_tokenizer_without_eos_or_pad_is_refused_before_stage_1(tmp_path, toy_pickle):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bert_char_tokenizer()
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=4, n_head=4))
    directory = tmp_path / "gpt2-no-pad"
    model.save_pretrained(directory)
    tok.pad_token = None
    tok.save_pretrained(directory)
    _refused(tiny_config(toy_pickle, f"model.backbone={directory}"), tmp_path / "run", BackboneError,
             "has neither an eos nor a pad token")


def test_a_dataset_the_file_contradicts_is_refused_before_stage_1(tmp_path):
    sims = write_mmsa_pickle(tmp_path / "sims.pkl", dataset="sims", audio_dim=33, vision_dim=709,
                             n_per_split=(8, 4, 4), lv=6)
    _refused(tiny_config(sims, "data.dataset=mosei"), tmp_path / "run", DataError,
             r"the dataset is set to mosei \(CMU-MOSEI\), but the file looks like sims")


def test_a_sims_file_without_a_preset_is_trained_as_sims(tmp_path, capsys):
    """The issue-9 case: no preset, default data.dataset -> the file's dataset, said, and SIMS metrics
    (it used to be scored with the MOSI metrics while `data inspect` said sims)."""
    sims = write_mmsa_pickle(tmp_path / "sims.pkl", dataset="sims", audio_dim=33, vision_dim=709,
                             n_per_split=(8, 4, 4), lv=6)
    cfg = tiny_config(sims, "train.max_epochs=1", "pretrain.max_epochs=1", "train.limit_batches=1")
    assert cfg.data.dataset == "infer"
    assert resolve_dataset(cfg, load_data(cfg)).data.dataset == "sims"
    result = train_run(cfg, tmp_path / "run", progress=False)
    assert result.task.dataset == "sims" and result.metric_names == list(SIMS_KEYS)
    assert list(json.loads((tmp_path / "run" / "seed-1" / "test_metrics.json").read_text())) == list(SIMS_KEYS)
    said = capsys.readouterr()
    assert "data: dataset sims (inferred from the file; set data.dataset to be explicit)" in said.out + said.err


def test_a_file_that_does_not_show_its_dataset_is_refused(tmp_path):
    import numpy as np

    from deepmlf.data.testing import make_mmsa_dict

    quiet = {f"{s}__regression_labels": np.clip(make_mmsa_dict(dataset="sims", n_per_split=(8, 4, 4))[s]["regression_labels"], -1, 1)
             for s in ("train", "valid", "test")}
    path = write_mmsa_pickle(tmp_path / "q.pkl", audio_dim=7, vision_dim=9, n_per_split=(8, 4, 4), **quiet)
    _refused(tiny_config(path), tmp_path / "run", ConfigError,
             r"data.dataset=infer: .* does not show which dataset it is .* set data.dataset")
    assert load_data(tiny_config(path, "data.dataset=sims")).dataset == "sims"  # naming it is enough
