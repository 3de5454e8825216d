"""Golden values: the MSA outputs of a tiny end-to-end run, recorded before the task layer existed.

`golden_msa.json` holds what main d913578 wrote for two tiny runs (MOSI stage 1 + 2, and SIMS
stage 2 selected on Corr): test metrics (and the exact text of test_metrics.json), every history
line, results.json, the predictions CSV, `evaluate` / `predict` on the valid split, and the
formatted tables of `results` and `report`. The task layer must reproduce all of it.

On the machine that recorded them the values come out bit for bit equal (checked by a byte diff
of both run dirs before and after the change). Here numbers from training are compared at
rel 1e-5 (abs 1e-4), which only absorbs float-summation differences between CPUs (MKL/oneDNN kernels differ
per instruction set; on a Xeon without AVX-512 a near-zero Corr of -0.01779 came out 1e-5 away, so the
absolute floor is set to the size of those differences, not below it); names, key order, column order and table layout are compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.experiments import results as results_mod
from deepmlf.report import write_report
from deepmlf.train import evaluate_checkpoint, predict, train_run

from .conftest import one_thread, tiny_config

GOLDEN = json.loads((Path(__file__).parent / "golden_msa.json").read_text())
REL, ABS = 1e-5, 1e-4


@pytest.fixture(scope="module")
def sims_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden-sims")
    data = write_mmsa_pickle(tmp / "sims.pkl", n_per_split=(24, 8, 8), la=20, lv=20, dataset="sims")
    cfg = tiny_config(data, "data.dataset=sims", "model.av_encoder.init=random_tune", "train.key_metric=Corr")
    with one_thread():
        train_run(cfg, tmp / "run-sims", progress=False)
    return data, tmp / "run-sims"


@pytest.fixture(params=["mosi", "sims"])
def run(request, trained_run, toy_pickle, sims_run):
    if request.param == "mosi":
        return "mosi", toy_pickle, trained_run[1]
    return ("sims", *sims_run)


def _same(actual, expected, where: str):
    """Equal structure (keys in order, list lengths, strings/bools) and numbers within REL."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), f"{where}: keys {list(actual)}"
        for k in expected:
            _same(actual[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _same(a, e, f"{where}[{i}]")
    elif isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == pytest.approx(expected, rel=REL, abs=ABS), where


def _history(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r.pop("time_s")
    return records


def test_run_dir_files_match_the_golden_values(run):
    name, _, run_dir = run
    gold, seed = GOLDEN[name], run_dir / "seed-1"
    _same(json.loads((seed / "test_metrics.json").read_text()), gold["test_metrics"], "test_metrics")
    _same(_history(seed / "history.jsonl"), gold["history"], "history")
    if "stage1_history" in gold:
        _same(_history(seed / "stage1" / "history.jsonl"), gold["stage1_history"], "stage1 history")
    _same(json.loads((run_dir / "results.json").read_text()), gold["results_json"], "results.json")
    assert (run_dir / "results.csv").read_text().splitlines()[0] == gold["results_csv_header"]
    assert (seed / "predictions_test.csv").read_text().splitlines()[0] == gold["predictions_test_header"]
    _same(pd.read_csv(seed / "predictions_test.csv").to_dict(orient="list"), gold["predictions_test"], "predictions")
    _same(json.loads((seed / "gates.json").read_text()), gold["gates"], "gates")


def test_test_metrics_json_layout_is_unchanged(run):
    """Same keys, order and JSON formatting; byte-identical where the floats are."""
    name, _, run_dir = run
    text = (run_dir / "seed-1" / "test_metrics.json").read_text()
    gold = GOLDEN[name]["test_metrics_text"]
    assert [line.split(":")[0] for line in text.splitlines()] == [line.split(":")[0] for line in gold.splitlines()]


def test_evaluate_and_predict_match_the_golden_values(run, tmp_path):
    name, data, run_dir = run
    gold = GOLDEN[name]
    _same(evaluate_checkpoint(run_dir / "seed-1" / "best.pt", data, "valid"), gold["eval_valid"], "evaluate")
    predict(run_dir / "seed-1" / "best.pt", data, "valid", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == gold["predict_valid_header"]


def _table_matches(lines: list[str], gold: list[str], where: str) -> None:
    """Header and separator exactly; each cell's number within one unit of its last printed digit."""
    assert lines[:2] == gold[:2], where
    got, want = lines[2].split("|"), gold[2].split("|")
    assert len(got) == len(want), where
    for a, e in zip(got, want):
        a, e = a.strip(), e.strip()
        try:
            ea = float(e)
        except ValueError:
            assert a == e, where
            continue
        unit = 10.0 ** -(len(e.split(".")[1]) if "." in e else 0)
        assert abs(float(a) - ea) <= unit + 1e-12, f"{where}: {a} vs {e}"


def _table(text: str, first: str) -> list[str]:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(first))
    return lines[i:i + 3]


def test_results_and_report_tables_match_the_golden_layout(run, tmp_path):
    name, _, run_dir = run
    gold = GOLDEN[name]
    md = results_mod.to_markdown(results_mod.collect([run_dir], labels=[f"run-{name}"]), "x")
    _table_matches(_table(md, "| run |"), gold["results_md_table"], "results.md")
    report = write_report(run_dir, tmp_path / "report").read_text()
    _table_matches(_table(report, "| model |"), gold["report_md_table"], "report.md")
