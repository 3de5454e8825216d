"""Aggregate run directories into one paper-style table: mean ± std over finished seeds.

One row per run dir. The runs' task (their task.json, deepmlf.tasks) decides the metric columns,
their directions and units: accuracies and F1 as percentages with two decimals, other values
(MSA: MAE/Corr) with three, as papers print them (Tables 3-13); the CSV keeps the raw values
(fractions, as in each run's results.csv). The config keys that differ between the runs (diffed
from their config.yaml) become columns, and decide which of the paper's plots apply (plots.py).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import write_text
from ..tasks import MSATask, Task, guess_direction
from .. import rundir

IGNORED_DIFF_KEYS = {"train.seeds"}  # a run may have more seeds than another; that is not an axis


def metric_direction(name: str, task: Task | None = None) -> str:
    """"max" or "min": the task's direction; with no task, "min" for losses and MAE, else "max"."""
    return task.direction(name) if task is not None else guess_direction(name)


def is_percentage(metric: str, task: Task | None = None) -> bool:
    """Accuracies and F1 scores are fractions on disk and percentages in papers."""
    return (task or _ANY).is_percentage(metric)


_ANY = MSATask()  # the shared percentage rule, for tables of unknown task


@dataclass
class RunRow:
    """One run dir: its per-seed test metrics and their mean/std."""

    label: str
    run_dir: Path
    task: Task | None  # from its task.json (or its config's data.dataset)
    config: dict[str, Any] | None  # flattened config.yaml (None if the run dir has none)
    per_seed: dict[int, dict[str, float]]  # seed -> metric -> value (finished seeds only)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)  # population std (ddof=0, as MMSA); NaN with one seed

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


@dataclass
class ResultsTable:
    task: Task | None  # what every row was scored by (None: no run dir says)
    metrics: list[str]  # metric columns: the task's table metrics, in its order, then any others found
    varying: list[str]  # config keys (dotted) whose values differ between the rows
    rows: list[RunRow]
    empty: list[RunRow]  # run dirs without a finished seed (listed under the table)

    @property
    def dataset(self) -> str | None:
        """The task's title ("mosi", "meld (7 classes)"), as the table heading names it."""
        return self.task.title if self.task is not None else None

    def direction(self, metric: str) -> str:
        return metric_direction(metric, self.task)

    def is_percentage(self, metric: str) -> bool:
        return is_percentage(metric, self.task)


def _aggregate(per_seed: dict[int, dict[str, float]], metrics: list[str]) -> tuple[dict, dict]:
    mean, std = {}, {}
    for m in metrics:
        vals = np.array([s[m] for s in per_seed.values() if m in s], dtype=float)
        if vals.size == 0:
            continue
        mean[m] = float(vals.mean())
        std[m] = float(vals.std(ddof=0)) if vals.size > 1 else math.nan
    return mean, std


def _labels(run_dirs: list[Path]) -> list[str]:
    """Folder names; the path below the common parent where names collide."""
    names = [p.name for p in run_dirs]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in run_dirs]
    common = Path(os.path.commonpath(resolved))
    return [str(p.relative_to(common)) if p != common else p.name for p in resolved]


def collect(run_dirs: list[str | Path], *, dataset: str | None = None, labels: list[str] | None = None) -> ResultsTable:
    """Read every run dir's finished seeds (those with DONE) into a `ResultsTable`.

    `dataset` (MSA) overrides what the run dirs say they were scored by."""
    forced: Task | None = None
    if dataset is not None:
        try:
            forced = MSATask(dataset)
        except ConfigError as e:
            raise ConfigError(f"--dataset {dataset!r}: {e}") from None
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ConfigError("no run directories given")
    for p in paths:
        if not p.is_dir():
            raise DataError(f"run dir {p} does not exist")
    labels = labels or _labels(paths)
    rows: list[RunRow] = []
    for label, path in zip(labels, paths):
        tree = rundir.read_config_tree(path)
        flat = rundir.flatten(tree) if tree is not None else None
        task = forced or rundir.read_task(path, tree)
        rows.append(RunRow(label=label, run_dir=path, task=task, config=flat, per_seed=rundir.seed_test_metrics(path)))

    found = list(dict.fromkeys(r.task for r in rows if r.n_seeds))
    if forced is None and len(found) > 1:
        raise ConfigError(
            f"the runs mix datasets/tasks ({', '.join(sorted(str(t.title if t else None) for t in found))}); "
            "aggregate each separately (their metrics differ)"
        )
    task = forced or (found[0] if found else None)

    seen: list[str] = []
    for r in rows:
        for seed_metrics in r.per_seed.values():
            seen.extend(m for m in seed_metrics if m not in seen)
    if task is None:
        metrics = seen
    else:  # the task's table columns, then names it does not know (none for runs it wrote)
        metrics = [m for m in task.table_metrics if m in seen]
        metrics += [m for m in seen if m not in task.metric_names]
    for r in rows:
        r.mean, r.std = _aggregate(r.per_seed, metrics)

    done = [r for r in rows if r.n_seeds]
    configs = [r.config for r in done if r.config is not None]
    varying = varying_keys(configs) if len(configs) > 1 else []
    return ResultsTable(task=task, metrics=metrics, varying=varying, rows=done, empty=[r for r in rows if not r.n_seeds])


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted config keys whose value is not the same in every (flattened) config, in config order."""
    keys: list[str] = []
    for c in configs:
        keys.extend(k for k in c if k not in keys)
    out = []
    for k in keys:
        if k in IGNORED_DIFF_KEYS:
            continue
        values = [repr(c.get(k)) for c in configs]
        if len(set(values)) > 1:
            out.append(k)
    return out


# ----------------------------------------------------------------------------- formatting


def format_value(metric: str, value: float, task: Task | None = None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return (task or _ANY).format_value(metric, value, digits=3)


def format_cell(metric: str, mean: float | None, std: float | None, task: Task | None = None) -> str:
    if mean is None:
        return "–"
    text = format_value(metric, mean, task)
    if std is not None and not math.isnan(std):
        text += f" ± {format_value(metric, std, task)}"
    return text


def format_key_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _best_rows(table: ResultsTable) -> dict[str, set[int]]:
    """Per metric, the row indices whose mean is best (bold in the Markdown, as papers do)."""
    best: dict[str, set[int]] = {}
    if len(table.rows) < 2:
        return best
    for m in table.metrics:
        means = [(i, r.mean[m]) for i, r in enumerate(table.rows) if m in r.mean and not math.isnan(r.mean[m])]
        if not means:
            continue
        pick = max if table.direction(m) == "max" else min
        target = pick(v for _, v in means)
        best[m] = {i for i, v in means if format_value(m, v, table.task) == format_value(m, target, table.task)}
    return best


def to_markdown(table: ResultsTable, title: str | None = None) -> str:
    arrows = {"max": "↑", "min": "↓"}
    header = ["run", *table.varying, "seeds", *[f"{m} {arrows[table.direction(m)]}" for m in table.metrics]]
    lines = []
    if title:
        lines += [f"# {title}", ""]
    units = (table.task or _ANY).units_note
    lines.append(
        f"Dataset: {table.dataset or 'unknown'}. Test metrics of each seed's best validation checkpoint, "
        f"mean ± std (ddof=0, as MMSA) over finished seeds; {units}. "
        "Best mean in bold."
    )
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * (1 + len(table.varying) + 1) + ["---:"] * len(table.metrics)) + "|")
    best = _best_rows(table)
    for i, r in enumerate(table.rows):
        cells = [r.label, *[format_key_value((r.config or {}).get(k)) for k in table.varying], str(r.n_seeds)]
        for m in table.metrics:
            text = format_cell(m, r.mean.get(m), r.std.get(m), table.task)
            cells.append(f"**{text}**" if i in best.get(m, set()) else text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.empty:
        lines += ["", "Without a finished seed yet: " + ", ".join(f"`{r.label}`" for r in table.empty) + "."]
    return "\n".join(lines) + "\n"


def to_csv(table: ResultsTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run", "run_dir", *table.varying, "n_seeds", "seeds",
                *[f"{m}_{stat}" for m in table.metrics for stat in ("mean", "std")]])
    for r in table.rows:
        row: list[Any] = [r.label, str(r.run_dir), *[format_key_value((r.config or {}).get(k)) for k in table.varying],
                          r.n_seeds, " ".join(str(s) for s in r.per_seed)]
        for m in table.metrics:
            row += [_raw(r.mean.get(m)), _raw(r.std.get(m))]
        w.writerow(row)
    return buf.getvalue()


def _raw(v: float | None) -> str:
    return "" if v is None or math.isnan(v) else repr(v)


def write_results(table: ResultsTable, out_dir: str | Path, *, title: str | None = None) -> list[Path]:
    """results.md, results.csv and the plots that apply; returns the written paths."""
    from .plots import write_plots

    out_dir = Path(out_dir)
    md, csv_path = out_dir / "results.md", out_dir / "results.csv"
    written = [md, csv_path]
    plots = write_plots(table, out_dir)
    text = to_markdown(table, title)
    if plots:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    write_text(md, text)
    write_text(csv_path, to_csv(table))
    return written + plots
