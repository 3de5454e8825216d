"""Markdown + PNG report of a run dir (`deepmlf report RUN_DIR`), also written by `deepmlf demo`.

`write_report(run_dir)` reads a `deepmlf train` run dir or a comparison dir (`comparison.json`,
the demo's) and writes `report.md` with curves, scatter, confusion and gate plots next to it.
"""

from __future__ import annotations

from pathlib import Path

from .page import format_metric, metrics_table, render
from .rundir import COMPARISON_FILE, ModelRun, ReferenceRow, RunDirError, RunSummary, load_run, read_model_dir


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, seed: int | None = None) -> Path:
    """Write report.md (+ PNGs) for `run_dir` into `out_dir` (default: `run_dir`). Returns report.md."""
    summary = load_run(run_dir, seed=seed)
    return render(summary, Path(out_dir) if out_dir is not None else Path(run_dir))


__all__ = [
    "COMPARISON_FILE", "ModelRun", "ReferenceRow", "RunDirError", "RunSummary", "format_metric",
    "load_run", "metrics_table", "read_model_dir", "render", "write_report",
]
