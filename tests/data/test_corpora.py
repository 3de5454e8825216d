"""Which corpus a file is: `infer_dataset`, the contradiction error, and that `data inspect` and
training read the file the same way."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data import load_mmsa
from deepmlf.data.corpora import infer_dataset
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.errors import DataError

SIMSV2 = {"dataset": "sims", "audio_dim": 25, "vision_dim": 177}  # v2 labels and T/A/V keys are like v1's


def _infer(audio_dim, vision_dim, lo=-1.0, hi=1.0, tav=False):
    return infer_dataset(audio_dim=audio_dim, vision_dim=vision_dim, label_min=lo, label_max=hi, has_unimodal_labels=tav)


@pytest.mark.parametrize("dims, lo, hi, tav, expected", [
    ((5, 20), -3.0, 2.6, False, "mosi"),
    ((74, 35), -2.0, 3.0, False, "mosei"),
    ((33, 709), -1.0, 1.0, True, "sims"),
    ((33, 709), -1.0, 1.0, False, "sims"),  # the dims alone name it
    ((25, 177), -0.8, 1.0, True, "simsv2"),
    ((5, 20), -0.4, 0.6, False, "mosi"),  # a MOSI subset whose labels happen to lie in [-1, 1]
])
def test_the_file_names_its_corpus(dims, lo, hi, tav, expected):
    assert _infer(*dims, lo, hi, tav).dataset == expected


def test_stronger_evidence_wins_and_the_rest_is_set_aside():
    odd = _infer(33, 709, -3.0, 3.0)  # SIMS dims but MOSI labels: the label range outranks the dims
    assert odd.dataset is None and odd.family == "mosi" and odd.candidates == ("mosi", "mosei")
    assert odd.set_aside == ("feature dims (audio 33, vision 709) are the standard CH-SIMS features",)
    custom_sims = _infer(7, 9, tav=True)  # custom features, CH-SIMS annotations: v1 or v2
    assert custom_sims.candidates == ("sims", "simsv2") and custom_sims.family == "sims"
    unknown = _infer(7, 9)  # nothing tells: no family
    assert unknown.family is None and unknown.evidence == ()


def test_a_named_dataset_the_file_contradicts_is_an_error_naming_both(tmp_path):
    sims = write_mmsa_pickle(tmp_path / "sims.pkl", dataset="sims", audio_dim=33, vision_dim=709, n_per_split=(4, 2, 2))
    with pytest.raises(DataError, match=re.escape(
        f"{sims}: the dataset is set to mosi (CMU-MOSI), but the file looks like sims: it holds "
        "regression_labels_T/A/V (CH-SIMS's unimodal labels); feature dims (audio 33, vision 709) are the "
        "standard CH-SIMS features. Name sims instead (data.dataset / --dataset)"
    )):
        load_mmsa(sims, dataset="mosi")
    v2 = write_mmsa_pickle(tmp_path / "v2.pkl", n_per_split=(4, 2, 2), **SIMSV2)
    with pytest.raises(DataError, match=r"set to sims \(CH-SIMS\), but the file looks like simsv2: .*standard CH-SIMS v2"):
        load_mmsa(v2, dataset="sims")
    assert load_mmsa(v2, dataset="simsv2").dataset == "simsv2"
    mosei = write_mmsa_pickle(tmp_path / "mosei.pkl", audio_dim=74, vision_dim=35, n_per_split=(4, 2, 2))
    with pytest.raises(DataError, match=r"set to mosi \(CMU-MOSI\), but the file looks like mosei"):
        load_mmsa(mosei, dataset="mosi")
    # Custom features contradict nothing: the named dataset is used, with a note.
    custom = load_mmsa(write_mmsa_pickle(tmp_path / "c.pkl", audio_dim=7, vision_dim=9), dataset="mosei")
    assert custom.dataset == "mosei"


def test_inspect_and_the_trainer_share_the_inference(tmp_path):
    from deepmlf.config import load_config
    from deepmlf.train.preflight import resolve_dataset
    from deepmlf.train.run import load_data

    path = write_mmsa_pickle(tmp_path / "v2.pkl", n_per_split=(4, 2, 2), **SIMSV2)
    result = CliRunner().invoke(app, ["data", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    cfg = load_config(overrides=[f"data.path={path}"])
    assert cfg.data.dataset == "infer"  # the default: the file decides
    resolved = resolve_dataset(cfg, load_data(cfg))
    assert shown["dataset"] == resolved.data.dataset == "simsv2" and shown["family"] == "sims"
    assert "label classes (SIMS Acc5 bins)" in CliRunner().invoke(app, ["data", "inspect", str(path)]).stdout
