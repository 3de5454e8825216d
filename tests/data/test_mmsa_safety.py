"""Issue 9 items 4, 6, 8, 10: scalar strings refused, no code from pickles (restricted unpickler,
`data convert` to a pickle-free file), lone surrogates repaired, absurd magnitudes and dead
modalities reported."""

from __future__ import annotations

import collections
import json
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data import load_mmsa
from deepmlf.data.mmsa import UnsafePickleError
from deepmlf.data.testing import make_mmsa_dict, write_mmsa_pickle
from deepmlf.errors import DataError

runner = CliRunner()


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted(tmp_path):
    data = make_mmsa_dict(n_per_split=(4, 2, 2))
    marker = tmp_path / "PWNED"
    data["train"]["annotations"] = _CreatesFile(marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path, marker


def test_a_crafted_pickle_is_refused_before_it_runs_code_by_every_reader(tmp_path, mmsa_pickle):
    path, marker = _crafted(tmp_path)
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refused to load: the pickle asks for io.open, .*could run "
                                                r"code; nothing from it was run.*deepmlf data convert"):
        load_mmsa(path)
    for args in (["data", "inspect", str(path)], ["data", "convert", str(path), str(tmp_path / "out.safetensors")],
                 ["train", "--data", str(path), "--set", "model.backbone=tiny-gpt2", "--set", "model.mm_layers=[1,3]",
                  "--out", str(tmp_path / "r")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "refused to load" in res.output and "Traceback" not in res.output, args
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
    # The loader's other errors say the risk too, and so does `data inspect --help`.
    bad = tmp_path / "torn.pkl"
    bad.write_bytes(mmsa_pickle.read_bytes()[:200])
    with pytest.raises(DataError, match="a pickle can run code when it is loaded"):
        load_mmsa(bad)
    help_text = runner.invoke(app, ["data", "inspect", "--help"], env={"COLUMNS": "200"}).output
    assert "pickle can run code" in help_text and "deepmlf data convert" in help_text


def test_convert_writes_a_pickle_free_file_that_loads_identically(tmp_path):
    src = write_mmsa_pickle(tmp_path / "a.pkl", n_per_split=(6, 3, 3))
    out = tmp_path / "a.safetensors"
    res = runner.invoke(app, ["data", "convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[8:9] == b"{" and b"\x80\x04" not in out.read_bytes()[:2]  # safetensors, no pickle
    a, b = load_mmsa(src), load_mmsa(out)
    assert a.notes == b.notes and a.dataset == b.dataset
    for split in ("train", "valid", "test"):
        for key in ("audio", "vision", "labels", "audio_lengths", "vision_lengths"):
            np.testing.assert_array_equal(getattr(a[split], key), getattr(b[split], key))
        assert a[split].raw_text == b[split].raw_text and a[split].ids == b[split].ids
    inspect = runner.invoke(app, ["data", "inspect", str(out), "--json"])
    assert inspect.exit_code == 0 and json.loads(inspect.output)["splits"]["train"]["n"] == 6
    # --trust-pickle: the user vouches for a file holding other objects; the output is still code-free.
    data = make_mmsa_dict(n_per_split=(4, 2, 2))
    data["train"]["annotations"] = collections.Counter(a=1)  # refused by the restricted unpickler
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        load_mmsa(tmp_path / "b.pkl")
    res = runner.invoke(app, ["data", "convert", str(tmp_path / "b.pkl"), str(tmp_path / "b.safetensors"), "--trust-pickle"])
    assert res.exit_code == 0, res.output
    assert res.output.count("b.safetensors") >= 1 and load_mmsa(tmp_path / "b.safetensors")["train"].raw_text


@pytest.mark.parametrize("key", ["raw_text", "id"])
def test_a_scalar_string_for_raw_text_or_id_is_refused(tmp_path, key):
    data = make_mmsa_dict(n_per_split=(4, 2, 2))
    data["train"][key] = "abcd"  # 4 characters = 4 samples: read as 4 one-character strings before
    (tmp_path / "s.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(DataError, match=rf"split 'train': key '{key}': expected one entry per sample \(a list or "
                                        r"array\); found a single str 'abcd'"):
        load_mmsa(tmp_path / "s.pkl")


def test_lone_surrogates_are_replaced_and_counted(tmp_path, byte_tok):
    from deepmlf.data import make_loader

    data = make_mmsa_dict(n_per_split=(4, 2, 2))
    texts = list(data["train"]["raw_text"])
    texts[1] = "bad \ud800 text"
    data["train"]["raw_text"] = np.array(texts, dtype=object)
    (tmp_path / "u.pkl").write_bytes(pickle.dumps(data))
    d = load_mmsa(tmp_path / "u.pkl")
    assert d["train"].raw_text[1] == "bad \ufffd text"
    assert "train: 1 raw_text value(s) held characters not encodable as UTF-8 (lone surrogates), replaced with U+FFFD" in d.notes
    batch = next(iter(make_loader(d["train"], byte_tok, max_text_len=12, batch_size=4, shuffle=False)))
    assert len(batch) == 4  # the collate tokenizes it (it crashed before)


def test_huge_features_and_an_all_nonfinite_modality_are_reported(tmp_path):
    data = make_mmsa_dict(n_per_split=(4, 2, 2))
    data["train"]["audio"][0, 0, 0] = 1e30
    data["valid"]["vision"][:] = np.nan
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(data))
    notes = load_mmsa(tmp_path / "m.pkl").notes
    assert any(n.startswith("warning: train: 1 audio value(s) exceed 1e+06 in magnitude (largest 1e+30)") for n in notes)
    assert any(n.startswith("warning: valid: every vision value was non-finite") for n in notes)
    clean = load_mmsa(write_mmsa_pickle(tmp_path / "c.pkl", n_per_split=(4, 2, 2))).notes
    assert not any(n.startswith("warning:") for n in clean)
