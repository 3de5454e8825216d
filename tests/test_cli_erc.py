"""`deepmlf erc extract | pretrain | train | evaluate | predict` and `deepmlf report` on an ERC run, end to end
on a tiny MELD-layout file and the tiny random Llama (no weights, no network)."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data.erc import testing as T

RUN = CliRunner()
SMALL = ["--set", "stage1.epochs=1", "--set", "train.epochs=1", "--set", "model.d_model=8", "--set", "model.n_heads=2",
         "--set", "stage1.d_feature=8", "--set", "train.seeds=[7]", "--set", "model.modalities=[text]"]


def ok(args):
    res = RUN.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_erc_cli_end_to_end(tmp_path):
    meld = T.write_meld_csvs(tmp_path / "meld")
    feats = tmp_path / "text.npz"
    out = ok(["erc", "extract", "--data", str(meld), "--encoder", "tiny-llama", "--out", str(feats), "--zero-shot",
              "--cache", str(tmp_path / "cache"), "--no-progress"])
    out = " ".join(out.split())
    assert "9 utterances × 32" in out and "zero-shot" in out
    run = tmp_path / "run"
    ok(["erc", "pretrain", "--preset", "erc-meld", "--data", str(meld), "--features", f"text={feats}", "--out", str(run),
        "--no-progress", *SMALL])
    assert (run / "seed-7" / "stage1" / "DONE").exists()
    ok(["erc", "train", "--preset", "erc-meld", "--data", str(meld), "--features", f"text={feats}", "--out", str(run),
        "--no-progress", *SMALL])
    res = json.loads((run / "results.json").read_text())
    assert res["n_seeds"] == 1 and "weighted_f1" in res["mean"]
    out = ok(["erc", "evaluate", str(run), "--split", "valid"])
    assert "per-class F1" in out and "weighted F1" in out
    csv = tmp_path / "p.csv"
    ok(["erc", "predict", str(run), "--out", str(csv)])
    frame = pd.read_csv(csv)
    assert len(frame) == 2 and {"label_name", "prediction_name", "p_neutral"} <= set(frame.columns)
    ok(["report", str(run)])
    page = (run / "report.md").read_text()
    assert "confusion" in page.lower() and "## Per-class F1" in page and "| neutral |" in page


def test_erc_cli_errors(tmp_path):
    res = RUN.invoke(app, ["erc", "train", "--preset", "erc-meld", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "data.path is not set" in res.output
    res = RUN.invoke(app, ["erc", "train", "--preset", "erc-nope", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown ERC preset 'erc-nope'" in res.output
    meld = T.write_meld_csvs(tmp_path / "meld")
    res = RUN.invoke(app, ["erc", "train", "--data", str(meld), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 2 and "has no text features" in res.output


def test_erc_sweep_specs_validate_and_dry_run():
    from pathlib import Path

    from deepmlf.experiments.erc_sweep import plan

    root = Path(__file__).resolve().parents[1] / "experiments"
    spec, cells = plan(root / "erc-table3-fusion-meld.yaml")
    assert len(cells) == 8 and {c.name for c, _ in cells} >= {"model.arch=magt,model.audio_input=kd,model.video_input=raw"}
    for name in ("erc-table3-fusion-iemocap", "erc-fig5-alpha-beta-meld", "erc-switches-meld"):
        _, cells = plan(root / f"{name}.yaml")
        assert cells and all(cfg.train.seeds == [1111, 2222, 3333] for _, cfg in cells)
    out = ok(["erc", "sweep", str(root / "erc-switches-meld.yaml"), "--dry-run"])
    assert "no-speaker-emb" in out and "gate-sigmoid-relu" in out


def test_erc_sweep_runs_cells(tmp_path):
    meld = T.write_meld_csvs(tmp_path / "meld")
    feats = tmp_path / "text.npz"
    ok(["erc", "extract", "--data", str(meld), "--encoder", "tiny-llama", "--out", str(feats), "--no-progress"])
    spec = tmp_path / "s.yaml"
    spec.write_text("name: tiny\nbase: {preset: erc-meld}\ngrid:\n  model.arch: [concat, magt]\nseeds: [1]\n")
    sets = SMALL[: SMALL.index("train.seeds=[7]") - 1] + SMALL[SMALL.index("train.seeds=[7]") + 1:]
    out = ok(["erc", "sweep", str(spec), "--data", str(meld), "--features", f"text={feats}", "--out", str(tmp_path / "o"),
              "--no-progress", *sets])
    assert "model.arch=concat" in out and (tmp_path / "o" / "model.arch=magt" / "results.json").exists()
