"""Optuna tuning: two worker processes share one study; failed trials are recorded, not fatal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from deepmlf.experiments.tune import objective_value, open_storage, prepare, run_worker
from deepmlf.errors import ConfigError

from .exp_helpers import TINY_SET, cli_env, deepmlf_cmd

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path, data: Path, search: dict | None = None) -> Path:
    spec = {
        "name": "tiny-tune",
        "base": {"set": [*TINY_SET, f"data.path={data}", "train.max_epochs=1", "train.key_metric=MAE"]},
        "search": search or {
            "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "model.n_fusion": {"type": "categorical", "choices": [2, 4]},
            "model.mm_layers": {"type": "categorical", "choices": [[3], [2, 3]]},
        },
        "seeds": [7],
        "out": str(tmp_path / "trials"),
        "pruner": {"kind": "none"},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_one_study(tmp_path, tiny_pickle, kind):
    spec = _spec(tmp_path, tiny_pickle)
    url = f"journal://{tmp_path}/study.log" if kind == "journal" else f"sqlite:///{tmp_path}/study.db"
    cmd = deepmlf_cmd("tune", str(spec), "--storage", url, "--study", "shared", "--n-trials", "2", "--quiet")
    workers = [subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, out + err

    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    pids = [t.user_attrs["worker_pid"] for t in trials]
    assert len(set(pids)) == 2 and sorted(pids.count(p) for p in set(pids)) == [2, 2]
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    for t in trials:
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir == tmp_path / "trials" / f"trial-{t.number}" and (run_dir / "seed-7" / "DONE").exists()
        assert t.user_attrs["params"]["model.mm_layers"] in ([3], [2, 3])
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["model"]["n_fusion"] == t.params["model.n_fusion"]
        assert cfg["train"]["lr"] == pytest.approx(t.params["train.lr"])
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # key metric MAE
    summary = (tmp_path / "trials" / "tune-summary.md").read_text()
    assert f"| trial | {study.best_trial.number} |" in summary


def test_objective_is_best_validation_epoch(tmp_path, tiny_pickle):
    spec = _spec(tmp_path, tiny_pickle)
    ctx = prepare(spec, overrides=["train.max_epochs=2"])
    study = run_worker(ctx, storage_url=f"journal://{tmp_path}/s.log", study_name="one", n_trials=1, progress=False,
                       announce=lambda s: None)
    t = study.trials[0]
    run_dir = Path(t.user_attrs["run_dir"])
    from deepmlf.io import read_jsonl

    maes = [rec["valid"]["MAE"] for rec in read_jsonl(run_dir / "seed-7" / "history.jsonl")]
    assert len(maes) == 2 and t.value == pytest.approx(min(maes))
    cfg = ctx.config_for(t.user_attrs["params"], "check")
    assert objective_value(run_dir, cfg) == pytest.approx(t.value)


def test_failed_trial_is_recorded_and_worker_goes_on(tmp_path, tiny_pickle):
    # n_heads=3 passes config validation but cannot divide the tiny backbone's width 32: build fails.
    spec = _spec(tmp_path, tiny_pickle, search={"model.n_heads": {"type": "categorical", "choices": [3, 4]}})
    ctx = prepare(spec)
    url = f"journal://{tmp_path}/f.log"
    study = optuna.create_study(storage=open_storage(url), study_name="f", direction="minimize")
    study.enqueue_trial({"model.n_heads": 3})
    study.enqueue_trial({"model.n_heads": 4})
    study = run_worker(ctx, storage_url=url, study_name="f", n_trials=2, progress=False, announce=lambda s: None)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]


def test_search_space_validated_up_front(tmp_path, tiny_pickle):
    bad = _spec(tmp_path, tiny_pickle, search={
        "model.n_fusoin": {"type": "int", "low": 2, "high": 4},
        "model.gate": {"type": "categorical", "choices": ["sigmoid", "banana"]},
    })
    with pytest.raises(ConfigError) as e:
        prepare(bad)
    assert "model.n_fusoin" in str(e.value) and "banana" in str(e.value) and "nothing was tuned" in str(e.value)
    bad2 = _spec(tmp_path, tiny_pickle, search={"train.lr": {"type": "float", "low": 1.0, "high": 0.1}})
    with pytest.raises(ConfigError, match=r"search\.train\.lr\.float.*low=1.0 must be below high=0.1|low=1.0 must be below"):
        prepare(bad2)
    with pytest.raises(ConfigError, match="is searched by"):
        prepare(_spec(tmp_path, tiny_pickle), overrides=["train.lr=0.1"])
    with pytest.raises(ConfigError, match="expected a URL"):
        open_storage("study.db")
