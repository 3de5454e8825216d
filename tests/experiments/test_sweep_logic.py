"""Sweep and tune bookkeeping with a recording stand-in for `train_run` (fast; the real trainer runs
in test_sweep_resume.py and test_tune_workers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from deepmlf.errors import ConfigError
from deepmlf.experiments import plan_sweep, run_sweep, select_cells
from deepmlf.experiments.tune import open_storage, prepare, run_worker, summary_markdown
from deepmlf.metrics import MOSI_KEYS


class RecordingTrainer:
    """Writes the contract's run-dir layout; valid MAE of epochs 1-3 = (0.5, 0.3, 0.4) + lr: epoch 2 is best."""

    def __init__(self, fail_on: set[str] = frozenset()):
        self.calls: list[tuple[Path, bool]] = []
        self.fail_on = fail_on

    def __call__(self, cfg, run_dir, *, resume=False, progress=True, callbacks=()):
        run_dir = Path(run_dir)
        self.calls.append((run_dir, resume))
        if run_dir.name in self.fail_on:
            raise RuntimeError("CUDA out of memory (simulated)")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        for seed in cfg.train.seeds:
            d = run_dir / f"seed-{seed}"
            if (d / "DONE").exists():
                continue
            d.mkdir(exist_ok=True)
            for epoch in (1, 2, 3):
                record = {"epoch": epoch, "valid": {"MAE": (0.5, 0.3, 0.4)[epoch - 1] + cfg.train.lr}}
                with open(d / "history.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                for cb in callbacks:
                    cb(record)
            m = {k: 0.8 for k in MOSI_KEYS} | {"MAE": 0.5 + cfg.model.n_fusion / 100 + seed / 1e4}
            (d / "test_metrics.json").write_text(json.dumps(m))
            (d / "DONE").write_text("")


@pytest.fixture()
def trainer(monkeypatch):
    rec = RecordingTrainer()
    monkeypatch.setattr("deepmlf.train.run.train_run", rec)
    return rec


def _spec(tmp_path: Path) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({
        "name": "s", "base": {"preset": "mosi"}, "grid": {"model.n_fusion": [8, 12, 16]},
        "seeds": [1, 2], "out": str(tmp_path / "out"),
    }))
    return p


def test_sweep_runs_pending_cells_with_resume_and_aggregates(tmp_path, trainer):
    spec = _spec(tmp_path)
    plan = plan_sweep(spec)
    out = run_sweep(plan, select_cells(plan, shard=(1, 2)), announce=lambda s: None)
    assert trainer.calls == [(tmp_path / "out" / "model.n_fusion=12", True)]
    assert [r.label for r in out.table.rows] == ["model.n_fusion=12"]  # only finished cells aggregate

    plan = plan_sweep(spec)
    assert [c.state for c in plan.cells] == ["todo", "done", "todo"]
    lines: list[str] = []
    out = run_sweep(plan, plan.cells, announce=lines.append)
    assert [c[0].name for c in trainer.calls[1:]] == ["model.n_fusion=8", "model.n_fusion=16"]  # done cell skipped
    assert lines[1] == "cell 2/3 model.n_fusion=12: all 2 seeds done, skipped"
    assert lines[0].startswith("cell 1/3 model.n_fusion=8 (todo, 0/2 seeds done; seeds 1, 2)")
    rows = {r.label: r for r in out.table.rows}
    assert rows["model.n_fusion=16"].mean["MAE"] == pytest.approx(0.66015)
    assert out.table.varying == ["model.n_fusion"]
    assert {p.name for p in out.written} >= {"results.md", "results.csv", "metrics_vs_n_fusion.png"}


def test_keep_going_collects_failures(tmp_path, trainer):
    trainer.fail_on = {"model.n_fusion=8"}
    plan = plan_sweep(_spec(tmp_path))
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sweep(plan, plan.cells, announce=lambda s: None)
    out = run_sweep(plan, plan.cells, keep_going=True, announce=lambda s: None)
    assert out.failed == {"model.n_fusion=8": "RuntimeError: CUDA out of memory (simulated)"}
    assert [r.label for r in out.table.rows] == ["model.n_fusion=12", "model.n_fusion=16"]


def test_changed_config_refused_before_training(tmp_path, trainer):
    spec = _spec(tmp_path)
    plan = plan_sweep(spec)
    run_sweep(plan, plan.cells[:1], announce=lambda s: None)
    plan = plan_sweep(spec, overrides=["train.lr=0.5"])
    assert plan.cells[0].changed == {"train.lr": (0.0001, 0.5)}
    n_calls = len(trainer.calls)
    with pytest.raises(ConfigError, match="train.lr: 0.0001 on disk, 0.5 now"):
        run_sweep(plan, plan.cells, announce=lambda s: None)
    assert len(trainer.calls) == n_calls


def test_tune_minimises_best_epoch_metric(tmp_path, trainer):
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "t", "base": {"preset": "mosi"}, "seeds": [3], "out": str(tmp_path / "trials"),
        "search": {"train.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                   "model.mm_layers": {"type": "categorical", "choices": [[21, 23], [11, 14, 17, 20, 23]]}},
    }))
    ctx = prepare(spec)
    assert ctx.direction == "min"  # mosi preset: key_metric MAE
    study = run_worker(ctx, storage_url=f"journal://{tmp_path}/j.log", study_name="t", n_trials=3,
                       sampler_seed=0, announce=lambda s: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in study.trials:
        assert t.value == pytest.approx(0.3 + t.params["train.lr"])  # the best epoch, not the last one
        assert t.user_attrs["params"]["model.mm_layers"] in ([21, 23], [11, 14, 17, 20, 23])
        cfg = yaml.safe_load((Path(t.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert cfg["model"]["mm_layers"] == t.user_attrs["params"]["model.mm_layers"]
    best = min(study.trials, key=lambda t: t.value)
    md = summary_markdown(study, ctx)
    assert f"| trial | {best.number} |" in md and "3 complete" in md
    # A new study must not reuse the old study's trial dirs.
    with pytest.raises(ConfigError, match="already holds trial"):
        run_worker(ctx, storage_url=f"journal://{tmp_path}/j.log", study_name="other", n_trials=1,
                   announce=lambda s: None)


def test_median_pruner_stops_a_worse_trial(tmp_path, trainer):
    spec = tmp_path / "p.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "p", "base": {"preset": "mosi"}, "seeds": [3, 4], "out": str(tmp_path / "trials"),
        "search": {"train.lr": {"type": "float", "low": 0.001, "high": 0.5}},
        "pruner": {"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    }))
    ctx = prepare(spec)
    url = f"journal://{tmp_path}/p.log"
    study = optuna.create_study(storage=open_storage(url), study_name="p", direction="minimize")
    study.enqueue_trial({"train.lr": 0.001})
    study.enqueue_trial({"train.lr": 0.4})  # worse at every epoch than the first trial
    study = run_worker(ctx, storage_url=url, study_name="p", n_trials=2, announce=lambda s: None)
    good, bad = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and bad.state == optuna.trial.TrialState.PRUNED
    # Intermediate values: the first seed's best-so-far valid MAE per epoch (epochs 1..3), not the second seed's.
    assert good.intermediate_values == pytest.approx({1: 0.501, 2: 0.301, 3: 0.301})
    assert bad.intermediate_values == pytest.approx({1: 0.9})
    assert not (Path(bad.user_attrs["run_dir"]) / "seed-3" / "DONE").exists()
