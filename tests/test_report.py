"""The report from hand-made run dirs: files exist, plots are real images, the table holds the values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepmlf.report import RunDirError, write_report
from deepmlf.report.page import format_metric

METRICS_A = {
    "Has0_acc_2": 0.8125, "Has0_F1_score": 0.8101, "Non0_acc_2": 0.8333, "Non0_F1_score": 0.8321,
    "Mult_acc_5": 0.4375, "Mult_acc_7": 0.3958, "MAE": 0.7312, "Corr": 0.7764,
}
METRICS_B = {**METRICS_A, "Has0_acc_2": 0.6042, "MAE": 1.2049, "Corr": 0.3311}


def _history(n_epochs: int, lm: bool = True) -> list[dict]:
    out = []
    for e in range(1, n_epochs + 1):
        decay = 1.0 / e
        train = {"loss": 3.0 * decay, "task": 1.0 * decay, "f": 1.1 * decay, "av": 1.3 * decay, "t": 1.2 * decay}
        if lm:
            train["lm"] = 4.0 + 0.1 * decay
        out.append({
            "epoch": e, "step": 10 * e, "lr": 1e-4, "time_s": 3.0,
            "train": train,
            "valid": {"Loss": 2.5 * decay + 0.2 * (e == n_epochs), "MAE": 0.9 * decay + 0.3, "Has0_acc_2": 0.6},
        })
    return out


def _write_seed_dir(d: Path, metrics: dict, seed: int, heads: bool = True, gates: bool = True) -> None:
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = np.round(rng.uniform(-3, 3, 48) * 3) / 3
    with open(d / "history.jsonl", "w") as f:
        for rec in _history(4, lm=heads):
            f.write(json.dumps(rec) + "\n")
    (d / "test_metrics.json").write_text(json.dumps(metrics))
    cols = ["id", "label", "y_o"] + (["y_t", "y_av", "y_f"] if heads else [])
    with open(d / "predictions_test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i, y in enumerate(labels):
            row = [f"clip_{i}", y, y + rng.normal(0, 0.5)]
            if heads:
                row += [abs(y) + rng.normal(0, 0.5), rng.normal(0, 1), y + rng.normal(0, 0.7)]
            w.writerow(row)
    if gates:
        (d / "gates.json").write_text(json.dumps([
            {"layer": 2, "gate_attn": 0.61, "gate_ffw": 0.47},
            {"layer": 3, "gate_attn": 0.73, "gate_ffw": 0.42},
        ]))
    if heads:
        (d / "stage1").mkdir()
        with open(d / "stage1" / "history.jsonl", "w") as f:
            for e in range(1, 4):
                f.write(json.dumps({"epoch": e, "train": {"loss": 1.5 / e, "task": 1.5 / e},
                                    "valid": {"Loss": 1.4 / e, "MAE": 1.4 / e}}) + "\n")
    (d / "DONE").write_text("")


@pytest.fixture
def train_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _write_seed_dir(run / "seed-1111", METRICS_A, 1111)
    _write_seed_dir(run / "seed-2222", METRICS_B, 2222)
    (run / "config.yaml").write_text(
        "data: {dataset: mosi}\nmodel: {backbone: tiny-gpt2, mm_layers: [2, 3], gate: sigmoid}\n"
        "train: {key_metric: MAE}\n"
    )
    names = list(METRICS_A)
    mean = {k: (METRICS_A[k] + METRICS_B[k]) / 2 for k in names}
    std = {k: abs(METRICS_A[k] - METRICS_B[k]) / 2 for k in names}
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", *names])
        for label, m in (("1111", METRICS_A), ("2222", METRICS_B), ("mean", mean), ("std", std)):
            w.writerow([label, *(m[k] for k in names)])
    return run


@pytest.fixture
def comparison_dir(tmp_path: Path) -> Path:
    demo = tmp_path / "demo"
    _write_seed_dir(demo / "deepmlf" / "seed-1111", METRICS_A, 1)
    _write_seed_dir(demo / "text-only", METRICS_B, 2, heads=False, gates=False)
    _write_seed_dir(demo / "av-only", {**METRICS_B, "MAE": 1.5}, 3, heads=False, gates=False)
    (demo / "comparison.json").write_text(json.dumps({
        "title": "Demo", "dataset": "mosi",
        "models": [
            {"name": "DeepMLF", "dir": "deepmlf/seed-1111", "note": "fused"},
            {"name": "text-only", "dir": "text-only", "note": "frozen LM + text head"},
            {"name": "AV-only", "dir": "av-only", "note": "stage-1 model"},
        ],
        "references": [{"name": "oracle", "metrics": {**METRICS_A, "MAE": 0.2468}, "note": "noise floor"}],
        "timings": {"stage 1": 61.0, "stage 2": 200.4},
    }))
    return demo


def _pngs_in(md: str) -> list[str]:
    import re

    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)


def _assert_real_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path.name} is suspiciously small"
    with Image.open(path) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[0] > 200 and arr.shape[1] > 300
    # Not a blank canvas: many distinct colours and a good share of non-white pixels.
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 20
    assert (arr.sum(axis=2) < 3 * 250).mean() > 0.02


def test_train_run_report_has_every_plot_and_the_seed_table(train_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    md_path = write_report(train_run, out)
    assert md_path == out / "report.md"
    md = md_path.read_text()
    pngs = _pngs_in(md)
    # curves (stage 2 + stage 1), scatter, confusion, gates
    assert set(pngs) == {"curves-deepmlf.png", "curves-deepmlf-stage1.png", "scatter.png", "confusion.png", "gates-deepmlf.png"}
    for name in pngs:
        _assert_real_png(out / name)
    # Every seed row, the mean and std, in MMSA names, accuracies in percent.
    for col in METRICS_A:
        assert col in md.splitlines()[next(i for i, l in enumerate(md.splitlines()) if l.startswith("| model"))]
    row_1111 = next(l for l in md.splitlines() if l.startswith("| DeepMLF seed 1111 |"))
    assert "81.25" in row_1111 and "0.7312" in row_1111 and "39.58" in row_1111
    row_2222 = next(l for l in md.splitlines() if l.startswith("| DeepMLF seed 2222 |"))
    assert "60.42" in row_2222 and "1.2049" in row_2222
    assert any(l.startswith("| DeepMLF mean |") and "0.9681" in l for l in md.splitlines())
    # Gate values as given, per layer.
    assert "| 2 | 0.6100 | 0.4700 |" in md and "| 3 | 0.7300 | 0.4200 |" in md
    # The resolved config is embedded.
    assert "tiny-gpt2" in md


def test_report_defaults_to_the_run_dir_and_can_pick_a_seed(train_run: Path) -> None:
    md_path = write_report(train_run, seed=2222)
    assert md_path == train_run / "report.md"
    assert "plots show **seed-2222**" in md_path.read_text()
    with pytest.raises(RunDirError, match="seed-7"):
        write_report(train_run, seed=7)


def test_comparison_report_table_bolds_the_best_model_and_lists_references(comparison_dir: Path) -> None:
    md = write_report(comparison_dir).read_text()
    lines = md.splitlines()
    deep = next(l for l in lines if l.startswith("| DeepMLF |"))
    text = next(l for l in lines if l.startswith("| text-only |"))
    oracle = next(l for l in lines if l.startswith("| *oracle* |"))
    assert "**81.25**" in deep and "**0.7312**" in deep  # best Has0_acc_2 and MAE
    assert "60.42" in text and "1.2049" in text and "**" not in text.split("|")[2]
    assert "0.2468" in oracle and "**" not in oracle  # references are never bolded
    assert "| stage 2 | 3 min 20 s |" in md
    pngs = _pngs_in(md)
    assert {"curves-deepmlf.png", "curves-text-only.png", "curves-av-only.png", "scatter.png",
            "confusion.png", "gates-deepmlf.png"} <= set(pngs)
    for name in pngs:
        _assert_real_png(comparison_dir / name)


def test_missing_and_malformed_run_dirs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="seed-<S>/test_metrics.json"):
        write_report(tmp_path / "empty")
    bad = tmp_path / "bad" / "seed-1"
    bad.mkdir(parents=True)
    (bad / "test_metrics.json").write_text("{not json")
    with pytest.raises(RunDirError, match=r"test_metrics\.json: not valid JSON"):
        write_report(tmp_path / "bad")
    (bad / "test_metrics.json").write_text(json.dumps(METRICS_A))
    (bad / "predictions_test.csv").write_text("id,label\nx,1.0\n")
    with pytest.raises(RunDirError, match="predictions_test.csv: missing column.*y_o"):
        write_report(tmp_path / "bad")


def test_format_metric_uses_percent_for_accuracies_only() -> None:
    assert format_metric("Has0_acc_2", 0.8125) == "81.25"
    assert format_metric("Non0_F1_score", 0.5) == "50.00"
    assert format_metric("MAE", 0.73119) == "0.7312"
    assert format_metric("Corr", float("nan")) == "–"


def test_single_seed_run_shows_no_mean_and_std_rows(train_run: Path) -> None:
    import shutil

    shutil.rmtree(train_run / "seed-2222")
    lines = (train_run / "results.csv").read_text().splitlines()
    (train_run / "results.csv").write_text("\n".join([lines[0], lines[1], "mean," + lines[1].split(",", 1)[1],
                                                      "std," + ",".join("0" for _ in METRICS_A)]) + "\n")
    md = write_report(train_run).read_text()
    assert any(l.startswith("| DeepMLF seed 1111 | 81.25") for l in md.splitlines())
    assert "| DeepMLF mean |" not in md and "| DeepMLF std |" not in md
