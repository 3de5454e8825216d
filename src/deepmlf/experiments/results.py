"""Aggregate run directories into one paper-style table: mean ± std over finished seeds.

One row per run dir. Accuracies and F1 are shown as percentages with two decimals and MAE/Corr
with three, as MSA papers print them (Tables 3-13); the CSV keeps the raw values (fractions,
as in each run's results.csv). The config keys that differ between the runs (diffed from their
config.yaml) become columns, and decide which of the paper's plots apply (plots.py).
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
from ..metrics import METRIC_DIRECTIONS
from .. import rundir

DATASETS = ("mosi", "mosei", "sims")
IGNORED_DIFF_KEYS = {"train.seeds"}  # a run may have more seeds than another; that is not an axis


def metric_direction(name: str) -> str:
    """"max" or "min" from METRIC_DIRECTIONS; for names it lacks, "min" for losses and MAE, else "max"."""
    return METRIC_DIRECTIONS.get(name, "min" if name.upper() == "MAE" or "loss" in name.lower() else "max")


def is_percentage(metric: str) -> bool:
    """Accuracies and F1 scores are fractions on disk and percentages in papers."""
    low = metric.lower()
    return "acc" in low or "f1" in low


@dataclass
class RunRow:
    """One run dir: its per-seed test metrics and their mean/std."""

    label: str
    run_dir: Path
    dataset: str | None
    config: dict[str, Any] | None  # flattened config.yaml (None if the run dir has none)
    per_seed: dict[int, dict[str, float]]  # seed -> metric -> value (finished seeds only)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)  # population std (ddof=0, as MMSA); NaN with one seed

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


@dataclass
class ResultsTable:
    dataset: str | None
    metrics: list[str]  # metric columns, in the order the metrics module writes them
    varying: list[str]  # config keys (dotted) whose values differ between the rows
    rows: list[RunRow]
    empty: list[RunRow]  # run dirs without a finished seed (listed under the table)


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
    """Read every run dir's finished seeds (those with DONE) into a `ResultsTable`."""
    if dataset is not None and dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
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
        ds = dataset or (flat or {}).get("data.dataset")
        rows.append(RunRow(label=label, run_dir=path, dataset=ds, config=flat, per_seed=rundir.seed_test_metrics(path)))

    found = {r.dataset for r in rows if r.n_seeds}
    if dataset is None and len(found) > 1:
        raise ConfigError(
            f"the runs mix datasets ({', '.join(sorted(str(d) for d in found))}); aggregate each dataset "
            "separately (its metrics differ)"
        )
    ds = dataset or next(iter(found), None)

    metrics: list[str] = []
    for r in rows:
        for seed_metrics in r.per_seed.values():
            metrics.extend(m for m in seed_metrics if m not in metrics)
    for r in rows:
        r.mean, r.std = _aggregate(r.per_seed, metrics)

    done = [r for r in rows if r.n_seeds]
    configs = [r.config for r in done if r.config is not None]
    varying = varying_keys(configs) if len(configs) > 1 else []
    return ResultsTable(dataset=ds, metrics=metrics, varying=varying, rows=done, empty=[r for r in rows if not r.n_seeds])


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


def format_value(metric: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{100 * value:.2f}" if is_percentage(metric) else f"{value:.3f}"


def format_cell(metric: str, mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    text = format_value(metric, mean)
    if std is not None and not math.isnan(std):
        text += f" ± {format_value(metric, std)}"
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
        pick = max if metric_direction(m) == "max" else min
        target = pick(v for _, v in means)
        best[m] = {i for i, v in means if format_value(m, v) == format_value(m, target)}
    return best


def to_markdown(table: ResultsTable, title: str | None = None) -> str:
    arrows = {"max": "↑", "min": "↓"}
    header = ["run", *table.varying, "seeds", *[f"{m} {arrows[metric_direction(m)]}" for m in table.metrics]]
    lines = []
    if title:
        lines += [f"# {title}", ""]
    lines.append(
        f"Dataset: {table.dataset or 'unknown'}. Test metrics of each seed's best validation checkpoint, "
        "mean ± std (ddof=0, as MMSA) over finished seeds; accuracies and F1 in %, MAE and Corr raw. "
        "Best mean in bold."
    )
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * (1 + len(table.varying) + 1) + ["---:"] * len(table.metrics)) + "|")
    best = _best_rows(table)
    for i, r in enumerate(table.rows):
        cells = [r.label, *[format_key_value((r.config or {}).get(k)) for k in table.varying], str(r.n_seeds)]
        for m in table.metrics:
            text = format_cell(m, r.mean.get(m), r.std.get(m))
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
