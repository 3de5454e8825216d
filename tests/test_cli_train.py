"""`deepmlf pretrain-av | train | evaluate | predict` end to end on tiny-gpt2 and a small pickle."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.metrics import key_metric_names

TINY = [
    "model.backbone=tiny-gpt2", "model.mm_layers=[1,3]", "model.n_fusion=3", "model.n_heads=4", "model.head_hidden=8",
    "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2", "model.av_encoder.n_layers=1", "model.av_encoder.av_len=5",
    "data.max_text_len=12", "data.batch_size=8", "train.grad_accum=2", "train.max_epochs=2", "train.limit_batches=2",
    "train.mixed_precision=no", "pretrain.max_epochs=2", "pretrain.grad_accum=1",
]
runner = CliRunner()


def _sets(*extra: str) -> list[str]:
    out = []
    for s in (*TINY, *extra):
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_mmsa_pickle(tmp_path_factory.mktemp("cli") / "toy.pkl", n_per_split=(24, 8, 8), la=20, lv=20)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, toy):
    """pretrain-av then train on the same run dir, two seeds."""
    run_dir = tmp_path_factory.mktemp("cli_run") / "run"
    pre = runner.invoke(app, ["pretrain-av", *_sets(), "--data", str(toy), "--out", str(run_dir), "--seeds", "1,2",
                              "--quiet"])
    assert pre.exit_code == 0, pre.output
    stage1 = {s: (run_dir / f"seed-{s}" / "stage1" / "best.pt").stat().st_mtime_ns for s in (1, 2)}
    res = runner.invoke(app, ["train", *_sets(), "--data", str(toy), "--out", str(run_dir), "--seeds", "1,2", "--quiet"])
    assert res.exit_code == 0, res.output
    return run_dir, stage1, pre.output + res.output


@pytest.mark.slow
def test_pretrain_then_train_writes_results_per_seed_and_mean_std(cli_run):
    run_dir, stage1_mtimes, output = cli_run
    # Stage 2 reused the encoders pre-trained by `pretrain-av` instead of training them again.
    for s, mtime in stage1_mtimes.items():
        assert (run_dir / f"seed-{s}" / "stage1" / "best.pt").stat().st_mtime_ns == mtime
        assert (run_dir / f"seed-{s}" / "DONE").exists()
    assert "reusing the pre-trained AV encoder" in output
    assert "trainable" in output and "total parameters" in output

    names = list(key_metric_names("mosi"))
    df = pd.read_csv(run_dir / "results.csv", dtype={"seed": str})
    assert list(df.columns) == ["seed", *names]
    assert list(df.seed) == ["1", "2", "mean", "std"]
    per_seed = df.set_index("seed").loc[["1", "2"], names]
    assert df.set_index("seed").loc["mean", names].to_numpy() == pytest.approx(per_seed.mean().to_numpy())
    assert df.set_index("seed").loc["std", names].to_numpy() == pytest.approx(per_seed.std(ddof=0).to_numpy())
    res = json.loads((run_dir / "results.json").read_text())
    assert res["metrics"] == names and set(res["per_seed"]) == {"1", "2"} and res["n_seeds"] == 2
    seed1 = json.loads((run_dir / "seed-1" / "test_metrics.json").read_text())
    assert res["per_seed"]["1"] == pytest.approx(seed1)


@pytest.mark.slow
def test_evaluate_and_predict_commands(cli_run, toy, tmp_path):
    run_dir, _, _ = cli_run
    ckpt = run_dir / "seed-1" / "best.pt"
    ev = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(toy), "--split", "test"])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads((run_dir / "seed-1" / "eval_test.json").read_text())
    stored = json.loads((run_dir / "seed-1" / "test_metrics.json").read_text())
    assert metrics["MAE"] == pytest.approx(stored["MAE"], abs=1e-6) and "Has0_acc_2" in ev.output

    out = tmp_path / "preds.csv"
    pr = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--data", str(toy), "--split", "valid",
                             "--out", str(out)])
    assert pr.exit_code == 0, pr.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", "label", "y_o", "y_t", "y_av", "y_f"]
    assert len(df) == 8 and df.id.is_unique and df[["y_o", "y_t", "y_av", "y_f"]].notna().all().all()


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing(cli_run):
    run_dir, _, _ = cli_run
    before = (run_dir / "results.csv").read_text()
    res = runner.invoke(app, ["train", "--out", str(run_dir), "--resume", "--quiet"])  # config from config.yaml
    assert res.exit_code == 0, res.output
    assert "already done" in res.output
    assert (run_dir / "results.csv").read_text() == before


def test_missing_data_path_is_one_clear_line(tmp_path):
    res = runner.invoke(app, ["train", *_sets(), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "data.path is not set: pass --data PATH or --set data.path=..." in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("model.n_fusion=many", "model.n_fusion"),
        ("n_fusion", "expected KEY=VALUE"),
        ("model.no_such_key=1", "model.no_such_key"),
    ],
)
def test_bad_set_is_a_config_error(tmp_path, toy, bad, message):
    res = runner.invoke(app, ["train", "--set", bad, "--data", str(toy), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_bad_seeds_and_resume_without_out(toy):
    res = runner.invoke(app, ["train", "--data", str(toy), "--seeds", "1,x"])
    assert res.exit_code == 2 and "--seeds '1,x'" in res.output
    res = runner.invoke(app, ["train", "--data", str(toy), "--resume"])
    assert res.exit_code == 2 and "--resume needs --out RUN_DIR" in res.output


def test_evaluate_missing_checkpoint(tmp_path, toy):
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(toy)])
    assert res.exit_code == 2 and "none.pt does not exist" in res.output


def test_evaluate_and_predict_with_a_missing_modality(cli_run, toy, tmp_path):
    run_dir, _, _ = cli_run
    ckpt = run_dir / "seed-1" / "best.pt"
    ev = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(toy), "--missing", "audio+vision"])
    assert ev.exit_code == 0, ev.output
    assert "MAE" in json.loads((run_dir / "seed-1" / "eval_test_missing-audio+vision.json").read_text())
    full, gone = tmp_path / "full.csv", tmp_path / "gone.csv"
    for path, extra in ((full, []), (gone, ["--missing", "audio", "--missing-rate", "0.5", "--missing-seed", "3"])):
        pr = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--data", str(toy), "--out", str(path), *extra])
        assert pr.exit_code == 0, pr.output
    a, b = pd.read_csv(full), pd.read_csv(gone)
    assert (a.y_t == b.y_t).all()  # audio missing never reaches the text head
    bad = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(toy), "--missing", "smell"])
    assert bad.exit_code == 2 and "--missing='smell'" in bad.output
    bad = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(toy), "--missing-rate", "0.5"])
    assert bad.exit_code == 2 and "--missing-rate needs --missing" in bad.output
