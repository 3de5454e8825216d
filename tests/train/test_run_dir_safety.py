"""Issue 9 items 2, 3, 5: one writer per run dir (two real processes), unfinished work is never
discarded silently, and no checkpoint load can run code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.errors import CheckpointError, RunDirError
from deepmlf.io import read_jsonl
from deepmlf.runlock import LOCK_FILE, RunDirLocked, run_lock
from deepmlf.train import train_run
from deepmlf.train.checkpoint import load_best, load_last

from .conftest import TINY_OVERRIDES, tiny_config

runner = CliRunner()
FAST = ("model.av_encoder.init=random_tune", "train.max_epochs=2", "train.limit_batches=1", "train.grad_accum=1")


def _env() -> dict[str, str]:
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    return {**os.environ, "PYTHONPATH": os.path.abspath(src), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def holder(tmp_path):
    """A second real process holding RUN's lock until killed."""
    run_dir = tmp_path / "run"
    code = textwrap.dedent("""
        import sys, time
        from deepmlf.runlock import run_lock
        with run_lock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "locked"
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(holder, toy_pickle, capsys):
    run_dir, proc = holder
    cfg = tiny_config(toy_pickle, *FAST)
    with pytest.raises(RunDirLocked, match=rf"is in use by pid {proc.pid} on host .*wait for it to finish, or choose another --out"):
        train_run(cfg, run_dir, progress=False)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing written by the refused run

    proc.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the flock, the file stays behind
    proc.wait()
    assert (run_dir / LOCK_FILE).exists()
    train_run(cfg, run_dir, progress=False)
    out = capsys.readouterr()
    assert f"took over the lock left by pid {proc.pid}" in out.out + out.err
    assert [h["epoch"] for h in read_jsonl(run_dir / "seed-1" / "history.jsonl")] == [1, 2]  # once, not twice
    assert (run_dir / "seed-1" / "DONE").exists()


def test_a_sweep_cell_locked_by_another_process_is_refused(holder, toy_pickle):
    from deepmlf.experiments.sweep import PlannedCell, SweepPlan, run_sweep
    from deepmlf.experiments.spec import Cell, SweepSpec

    run_dir, proc = holder
    cfg = tiny_config(toy_pickle, *FAST)
    cell = PlannedCell(0, Cell(name="run", overrides={}), cfg, run_dir, "todo", 0)
    plan = SweepPlan(spec=SweepSpec.model_construct(name="s", paper=None), spec_path=run_dir, out=run_dir.parent,
                     cells=[cell])
    outcome = run_sweep(plan, [cell], progress=False, keep_going=True, announce=lambda _: None)
    assert f"pid {proc.pid}" in outcome.failed["run"]
    assert not (run_dir / "seed-1").exists()


def test_lock_is_released_and_an_untouched_new_dir_removed(tmp_path):
    with pytest.raises(RunDirError):
        with run_lock(tmp_path / "new"):
            raise RunDirError("refused by a later check")
    assert not (tmp_path / "new").exists()
    with run_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.yaml").write_text("x")
    with run_lock(tmp_path / "kept"):  # re-acquirable once released
        pass


class Interrupt(Exception):
    pass


def _interrupted(cfg, run_dir):
    def stop(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_run(cfg, run_dir, progress=False, callbacks=[stop])


def test_unfinished_work_is_refused_without_resume_and_started_over_with_overwrite(tmp_path, toy_pickle):
    cfg = tiny_config(toy_pickle, *FAST)
    run_dir = tmp_path / "run"
    _interrupted(cfg, run_dir)
    hist = run_dir / "seed-1" / "history.jsonl"
    before = hist.read_bytes()
    with pytest.raises(RunDirError, match=r"holds unfinished work \(seed 1: stage 2, 1 epoch\(s\) logged\): "
                                          r"pass --resume to continue or --overwrite to start over"):
        train_run(cfg, run_dir, progress=False)
    assert hist.read_bytes() == before and (run_dir / "seed-1" / "last.pt").exists()  # nothing lost

    (run_dir / "seed-1" / ".best.pt.abcd1234.tmp").write_bytes(b"torn")  # a write a kill interrupted
    train_run(cfg, run_dir, resume=True, progress=False)
    assert [h["epoch"] for h in read_jsonl(hist)] == [1, 2]
    assert not (run_dir / "seed-1" / ".best.pt.abcd1234.tmp").exists()

    (run_dir / "seed-1" / "DONE").unlink()
    train_run(cfg, run_dir, overwrite=True, progress=False)
    assert [h["epoch"] for h in read_jsonl(hist)] == [1, 2] and (run_dir / "seed-1" / "DONE").exists()


def test_cli_resume_with_nothing_to_resume_and_refusal_message(tmp_path, toy_pickle):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["train", "--resume", "--out", str(empty)])
    assert res.exit_code == 2 and "holds no run (no config.yaml, no seed-* folders), so there is nothing to resume" in res.output
    res = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "typo")])
    assert res.exit_code == 2 and "does not exist, so there is nothing to resume" in res.output
    res = runner.invoke(app, ["train", "--resume", "--overwrite", "--out", str(empty)])
    assert res.exit_code == 2 and "exclude each other" in res.output

    run_dir = tmp_path / "run"
    _interrupted(tiny_config(toy_pickle, *FAST), run_dir)
    sets = [a for s in (*TINY_OVERRIDES, *FAST) for a in ("--set", s)]
    res = runner.invoke(app, ["train", *sets, "--data", str(toy_pickle), "--out", str(run_dir), "--quiet"])
    assert res.exit_code == 2 and "pass --resume to continue or --overwrite to start over" in res.output
    assert "Traceback" not in res.output


# ----------------------------------------------------------------------------- item 5: weights_only everywhere


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))  # what a crafted pickle would do: run a callable on load


def test_crafted_checkpoints_never_run_code(tmp_path, toy_pickle):
    cfg = tiny_config(toy_pickle, "pretrain.max_epochs=1", "train.max_epochs=1", "train.limit_batches=1")
    run_dir = tmp_path / "run"
    marker = tmp_path / "PWNED"
    evil = {"format": 2, "stage": "stage1", "stop_reason": "max_epochs", "x": _CreatesFile(marker)}
    (run_dir / "seed-1" / "stage1").mkdir(parents=True)
    torch.save(evil, run_dir / "seed-1" / "stage1" / "last.pt")
    torch.save({"model": {}, "config": {}, "x": _CreatesFile(marker)}, run_dir / "seed-1" / "stage1" / "best.pt")
    for resume in (False, True):  # a plain train read stage1/last.pt with weights_only=False before
        with pytest.raises(CheckpointError, match=r"refusing to load resume point .*stage1/last.pt: it holds a Python "
                                                  r"object \(io.open\)"):
            train_run(cfg, run_dir, resume=resume, progress=False)
    with pytest.raises(CheckpointError, match="refusing to load checkpoint"):
        load_best(run_dir / "seed-1" / "stage1" / "best.pt")
    assert not marker.exists()


def test_a_format_1_last_pt_still_resumes_exactly(tmp_path, toy_pickle):
    """last.pt files written before format 2 (numpy RNG state as an array) resume, with weights_only=True."""
    cfg = tiny_config(toy_pickle, *FAST)
    train_run(cfg, tmp_path / "ref", progress=False)
    _interrupted(cfg, tmp_path / "cut")
    path = tmp_path / "cut" / "seed-1" / "last.pt"
    state = load_last(path, stage="stage2")
    npy, rnd = state["rng"]["numpy"], state["rng"]["random"]
    state["rng"]["numpy"] = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached_gaussian"])
    state["rng"]["random"] = (rnd["version"], tuple(rnd["internal"]), rnd["gauss_next"])
    state["format"] = 1
    torch.save(state, path)
    train_run(cfg, tmp_path / "cut", resume=True, progress=False)
    got = read_jsonl(tmp_path / "cut" / "seed-1" / "history.jsonl")
    ref = read_jsonl(tmp_path / "ref" / "seed-1" / "history.jsonl")
    assert got[1]["valid"] == ref[1]["valid"] and got[1]["train"] == ref[1]["train"]
