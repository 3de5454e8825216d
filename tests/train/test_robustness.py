"""deepmlf robustness: metrics against the missing rate, per modality, over seeds; shown by report."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data.missing import MissingSpec
from deepmlf.train import evaluate_checkpoint

runner = CliRunner()


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy: robustness writes into the run dir, and tiny_run is shared read-only."""
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def test_robustness_table_plot_and_report(tiny_run, run_copy, tmp_path):
    data = tiny_run.parent / "toy.pkl"
    tiny_run = run_copy
    res = runner.invoke(app, ["robustness", str(tiny_run), "--data", str(data), "--modalities", "text,audio+vision",
                              "--rates", "0,0.5,1"])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(tiny_run / "robustness.csv", dtype={"seed": str})
    assert len(frame) == 2 * 2 * 3 + 2 * 3  # seeds x modalities x rates, then the seed means
    assert set(frame.seed) == {"1", "2", "mean"}
    assert (tiny_run / "robustness.png").stat().st_size > 0
    info = json.loads((tiny_run / "robustness.json").read_text())
    assert info["rates"] == [0.0, 0.5, 1.0] and info["modalities"] == ["text", "audio+vision"]
    seed1 = frame[frame.seed == "1"].set_index(["modality", "rate"])
    stored = json.loads((tiny_run / "seed-1" / "test_metrics.json").read_text())
    for m in ("text", "audio+vision"):  # rate 0 is the complete data
        assert seed1.loc[(m, 0.0), "MAE"] == pytest.approx(stored["MAE"], abs=1e-6)
    direct = evaluate_checkpoint(tiny_run / "seed-1" / "best.pt", data, missing=MissingSpec.parse("text"))
    assert seed1.loc[("text", 1.0), "MAE"] == pytest.approx(direct["MAE"], abs=1e-9)
    mean = frame[frame.seed == "mean"].set_index(["modality", "rate"])
    assert mean.loc[("text", 0.5), "MAE"] == pytest.approx(
        frame[(frame.modality == "text") & (frame.rate == 0.5) & (frame.seed != "mean")].MAE.mean())

    rep = runner.invoke(app, ["report", str(tiny_run), "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "## Robustness to missing modalities" in page and "| text missing |" in page
    assert (tmp_path / "rep" / "robustness.png").is_file()


def test_robustness_errors_name_the_option(tiny_run, run_copy):
    data = tiny_run.parent / "toy.pkl"
    tiny_run = run_copy
    bad = runner.invoke(app, ["robustness", str(tiny_run), "--data", str(data), "--rates", "0,2"])
    assert bad.exit_code == 2 and "--rates=2" in bad.output
    bad = runner.invoke(app, ["robustness", str(tiny_run), "--data", str(data), "--modalities", "smell"])
    assert bad.exit_code == 2 and "--modalities='smell'" in bad.output
