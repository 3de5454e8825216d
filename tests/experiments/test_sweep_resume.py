"""A 2x2 sweep with 2 seeds, killed (SIGKILL) mid-run and re-run: the table ends with every cell, 2 seeds each."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from deepmlf.experiments import plan_sweep
from deepmlf.io import read_jsonl

from .exp_helpers import TINY_SET, cli_env, deepmlf_cmd, run_cli

pytestmark = pytest.mark.slow

CELLS = ["model.n_fusion=2,loss.lambda_lm=0.0", "model.n_fusion=2,loss.lambda_lm=1.0",
         "model.n_fusion=4,loss.lambda_lm=0.0", "model.n_fusion=4,loss.lambda_lm=1.0"]


def _spec(tmp_path: Path, data: Path) -> Path:
    spec = {
        "name": "tiny-2x2",
        "paper": "tiny 2x2 sweep",
        "base": {"set": [*TINY_SET, f"data.path={data}", "train.max_epochs=3", "train.early_stop=3"]},
        "grid": {"model.n_fusion": [2, 4], "loss.lambda_lm": [0.0, 1.0]},
        "seeds": [1, 2],
        "out": str(tmp_path / "sweep"),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _wait_for(pred, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"sweep ended (rc {proc.returncode}) before the kill point:\n{out}\n{err}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("sweep did not start training in time")


def test_killed_sweep_resumes_to_full_table(tmp_path, tiny_pickle):
    spec = _spec(tmp_path, tiny_pickle)
    out = tmp_path / "sweep"
    first_seed = out / CELLS[0] / "seed-1"

    # 1. Start the sweep and SIGKILL it as soon as the first cell's first seed has finished an epoch.
    proc = subprocess.Popen(deepmlf_cmd("sweep", str(spec), "--quiet"), env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (first_seed / "history.jsonl").exists() and (first_seed / "history.jsonl").stat().st_size > 0,
              proc, timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not (first_seed / "DONE").exists()  # killed mid-seed: epochs 2-3 and the test pass had not run

    plan = plan_sweep(spec)
    states = {c.name: c.state for c in plan.cells}
    assert states[CELLS[0]] == "partial" and states[CELLS[-1]] == "todo"
    assert not (out / "results.md").exists()

    # 2. Re-run the same spec: the interrupted seed resumes, the rest trains, the table is complete.
    res = run_cli("sweep", str(spec), "--quiet", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "cell 1/4" in res.stdout and "cell 4/4" in res.stdout

    plan = plan_sweep(spec)
    assert [c.state for c in plan.cells] == ["done"] * 4
    epochs = [rec["epoch"] for rec in read_jsonl(first_seed / "history.jsonl")]
    assert len(epochs) == len(set(epochs)) == 3  # resumed, not restarted on top of the old lines

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["run"] for r in rows] == CELLS
    assert all(r["n_seeds"] == "2" and r["seeds"] == "1 2" for r in rows)
    assert {r["model.n_fusion"] for r in rows} == {"2", "4"} and {r["loss.lambda_lm"] for r in rows} == {"0.0", "1.0"}
    md = (out / "results.md").read_text()
    for name in CELLS:
        line = next(l for l in md.splitlines() if l.startswith(f"| {name} "))
        assert " | 2 | " in line and "±" in line
    assert (out / "metrics_vs_n_fusion.png").stat().st_size > 10_000
    assert (out / "gates.png").stat().st_size > 10_000

    # 3. A third run trains nothing: every cell is skipped.
    res = run_cli("sweep", str(spec), "--quiet", "--cell", CELLS[1])
    assert res.returncode == 0 and "all 2 seeds done, skipped" in res.stdout


def test_changed_spec_refuses_to_resume_a_cell(tmp_path, tiny_pickle):
    spec = _spec(tmp_path, tiny_pickle)
    cell = tmp_path / "sweep" / CELLS[0]
    (cell / "seed-1").mkdir(parents=True)
    (cell / "seed-1" / "last.pt").write_bytes(b"")  # a started seed, trained with another lr
    tree = plan_sweep(spec).cells[0].config.to_dict()
    tree["train"]["lr"] = 0.5
    (cell / "config.yaml").write_text(yaml.safe_dump(tree))
    res = run_cli("sweep", str(spec), "--quiet", "--cell", CELLS[0])
    assert res.returncode == 2
    assert "train.lr: 0.5 on disk, 0.0001 now" in res.stderr and str(cell) in res.stderr
    assert not (cell / "seed-1" / "history.jsonl").exists()  # refused before anything trained
