"""Read what a run left on disk into plain objects the report draws from.

Two layouts are understood (docs/contracts.md, "Run directory"):
- a train run dir (`config.yaml`, `task.json`, `results.csv`/`results.json`, `seed-<S>/...`): one
  model (the arch of `model.arch`, DeepMLF by default);
- a comparison dir (the demo's): `comparison.json` naming several model dirs, each laid out like a
  seed dir (`history.jsonl`, `test_metrics.json`, `predictions_test.csv`, optional `gates.json`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, RunDirError
from ..rundir import read_config_tree, read_gates, read_json, read_metrics, read_task, seed_dirs
from ..io import read_jsonl
from ..tasks import MSATask, Task, from_spec

COMPARISON_FILE = "comparison.json"
# Columns of predictions_test.csv that hold a model's outputs, and what each one is (contracts.md).
HEAD_LABELS = {
    "y_o": "task head y_o (the prediction)",
    "y_t": "text head y_t",
    "y_av": "AV head y_av",
    "y_f": "fusion head y_f",
}


@dataclass
class ModelRun:
    """One trained model as the report sees it."""

    name: str  # shown in tables and plot titles ("DeepMLF", "text-only", ...)
    directory: Path
    metrics: dict[str, float]  # test metrics, MMSA names (accuracies/F1 as fractions)
    predictions: pd.DataFrame | None  # id, label, the task's prediction column (MSA: y_o[, y_t, y_av, y_f])
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    gates: list[dict[str, float]] | None = None  # [{"layer", "gate_attn", "gate_ffw"}]
    stage1_history: list[dict[str, Any]] = field(default_factory=list)  # AV pre-training, when it ran
    note: str = ""  # one sentence: what this model is


@dataclass
class ReferenceRow:
    """A row of the metrics table that is not a trained model (e.g. the probe's oracles)."""

    name: str
    metrics: dict[str, float]
    note: str = ""


@dataclass
class RunSummary:
    """Everything one report page shows."""

    title: str
    task: Task  # what the metrics are, their directions and units; label range / classes for plots
    models: list[ModelRun]
    references: list[ReferenceRow] = field(default_factory=list)
    table_rows: list[tuple[str, dict[str, float]]] | None = None  # overrides the table (seeds, mean, std)
    intro_md: str = ""  # Markdown placed under the title
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    config: dict[str, Any] | None = None
    run_dir: Path | None = None  # a train run dir: its robustness.csv (deepmlf robustness) is shown


# ----------------------------------------------------------------------------- readers


def read_predictions(path: Path, task: Task | None = None) -> pd.DataFrame:
    task = task or MSATask()
    df = _read_csv(path)
    missing = [c for c in ("label", task.prediction_column) if c not in df.columns]
    if missing:
        expected = "id,label,y_o[,y_t,y_av,y_f]" if isinstance(task, MSATask) else f"id,label,{task.prediction_column},..."
        raise RunDirError(f"{path}: missing column(s) {', '.join(missing)}; expected {expected}")
    return df


def _optional(path: Path, reader):
    return reader(path) if path.is_file() else None


def read_model_dir(directory: Path, name: str, note: str = "", *, stage1: bool = True,
                   task: Task | None = None) -> ModelRun:
    """A seed dir (or a comparison member laid out like one); `stage1=False` skips its stage1/ curves."""
    directory = Path(directory)
    metrics_path = directory / "test_metrics.json"
    if not metrics_path.is_file():
        raise RunDirError(f"{directory}: no test_metrics.json; has this model finished training?")
    history_path = directory / "history.jsonl"
    stage1_path = directory / "stage1" / "history.jsonl"
    if not stage1_path.is_file():  # pretrain.shared: one stage 1 for every seed, in the run dir
        stage1_path = directory.parent / "stage1" / "history.jsonl"
    return ModelRun(
        name=name,
        directory=directory,
        metrics=read_metrics(metrics_path),
        predictions=_optional(directory / "predictions_test.csv", lambda p: read_predictions(p, task)),
        history=read_jsonl(history_path) if history_path.is_file() else [],
        gates=_optional(directory / "gates.json", read_gates),
        stage1_history=read_jsonl(stage1_path) if stage1 and stage1_path.is_file() else [],
        note=note,
    )


def _task_of(run_dir: Path, cfg: dict[str, Any] | None) -> Task:
    """The run's task (task.json, else MSA on its config's dataset, else MSA on mosi)."""
    return read_task(run_dir, cfg or {}) or MSATask()


def model_name(cfg: dict[str, Any] | None) -> str:
    """How the report names the run's model: its arch's display name ("DeepMLF" by default)."""
    arch = str(((cfg or {}).get("model") or {}).get("arch", "deepmlf"))
    from ..model.registry import get_arch  # lazy: the model package pulls in torch

    try:
        return get_arch(arch).label
    except ConfigError:
        return arch  # an arch this install does not know: its name


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        return read_config_tree(run_dir)
    except RunDirError:
        return None  # a report still draws without the config section


def _results_rows(run_dir: Path) -> list[tuple[str, dict[str, float]]] | None:
    """results.csv: one row per seed + mean + std (the first column names the row)."""
    path = run_dir / "results.csv"
    if not path.is_file():
        return None
    df = _read_csv(path)
    key = df.columns[0]
    rows = []
    for _, r in df.iterrows():
        label = str(r[key])
        label = f"seed {label}" if label.isdigit() else label
        rows.append((label, {c: float(r[c]) for c in df.columns[1:] if _is_number(r[c])}))
    if sum(1 for label, _ in rows if label.startswith("seed ")) == 1:
        rows = [r for r in rows if r[0].startswith("seed ")]  # mean and std of one seed say nothing more
    return rows


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not a readable CSV ({e})") from None


def _is_number(v: Any) -> bool:
    try:
        return not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def load_train_run(run_dir: Path, seed: int | None = None) -> RunSummary:
    """A `deepmlf train` run dir. Plots show one seed (the first finished one unless `seed`)."""
    seeds = [p for p in seed_dirs(run_dir).values() if (p / "test_metrics.json").is_file()]
    if seed is not None:
        seeds = [p for p in seeds if p.name == f"seed-{seed}"]
        if not seeds:
            raise RunDirError(f"{run_dir}: no finished seed-{seed}/ (test_metrics.json missing)")
    if not seeds:
        raise RunDirError(
            f"{run_dir}: not a run dir with a finished seed (expected seed-<S>/test_metrics.json, "
            f"or {COMPARISON_FILE} for a comparison)"
        )
    cfg = _read_config(run_dir)
    task = _task_of(run_dir, cfg)
    backbone = ((cfg or {}).get("model") or {}).get("backbone")  # ERC runs have none (frozen features)
    name = model_name(cfg)
    chosen = seeds[0]
    model = read_model_dir(chosen, name, note=f"backbone {backbone}, {chosen.name}" if backbone else chosen.name,
                           task=task)
    rows = _results_rows(run_dir)
    n_seeds = len(seed_dirs(run_dir))
    intro = (
        f"Run dir `{run_dir}`: {name} on **{task.title}**" + (f" with backbone `{backbone}`. " if backbone else ". ") +
        f"The metrics table lists every seed ({n_seeds}); plots show **{chosen.name}**."
    )
    return RunSummary(
        title=f"{name} run report: {run_dir.name}",
        task=task,
        models=[model],
        table_rows=[(f"{name} {label}", m) for label, m in rows] if rows else None,
        intro_md=intro,
        config=cfg,
        run_dir=run_dir,
    )


def load_comparison(run_dir: Path) -> RunSummary:
    """A dir holding `comparison.json` (written by `deepmlf demo`)."""
    spec = read_json(run_dir / COMPARISON_FILE)
    if not isinstance(spec, dict) or not isinstance(spec.get("models"), list):
        raise RunDirError(f"{run_dir / COMPARISON_FILE}: expected an object with a 'models' list")
    try:  # "task" (a Task.spec()); comparisons written before it existed name an MSA "dataset"
        task = from_spec(spec["task"], str(run_dir / COMPARISON_FILE)) if "task" in spec else MSATask(
            str(spec.get("dataset", "mosi")))
    except ConfigError as e:
        raise RunDirError(f"{run_dir / COMPARISON_FILE}: {e}") from None
    models = []
    for i, m in enumerate(spec["models"]):
        if not isinstance(m, dict) or "name" not in m or "dir" not in m:
            raise RunDirError(f"{run_dir / COMPARISON_FILE}: models[{i}] needs 'name' and 'dir'")
        models.append(read_model_dir(run_dir / m["dir"], str(m["name"]), note=str(m.get("note", "")),
                                     stage1=bool(m.get("stage1_curves", True)), task=task))
    refs = [
        ReferenceRow(name=str(r["name"]), metrics={k: float(v) for k, v in r["metrics"].items()}, note=r.get("note", ""))
        for r in spec.get("references", [])
    ]
    return RunSummary(
        title=str(spec.get("title", f"DeepMLF comparison: {run_dir.name}")),
        task=task,
        models=models,
        references=refs,
        intro_md=str(spec.get("intro_md", "")),
        timings={k: float(v) for k, v in (spec.get("timings") or {}).items()},
        # The trained model's resolved config (e.g. `deepmlf/config.yaml`), named by the spec.
        config=_read_config(run_dir / str(spec.get("config_dir", "."))),
    )


def load_run(run_dir: str | Path, seed: int | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run dir {run_dir} does not exist")
    if (run_dir / COMPARISON_FILE).is_file():
        return load_comparison(run_dir)
    if (run_dir / "test_metrics.json").is_file():  # a seed dir given directly
        cfg = _read_config(run_dir.parent)
        task = _task_of(run_dir.parent, cfg)
        name = model_name(cfg)
        return RunSummary(
            title=f"{name} run report: {run_dir.parent.name}/{run_dir.name}",
            task=task,
            models=[read_model_dir(run_dir, name, note=run_dir.name, task=task)],
            config=cfg,
        )
    return load_train_run(run_dir, seed=seed)
