"""`deepmlf report RUN_DIR`: a Markdown page with plots for a train run dir or the demo's dir."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import console, friendly_errors


@app.command("report")
@friendly_errors
def report(
    run_dir: Path = typer.Argument(..., help="A `deepmlf train` run dir (or one of its seed-<S> dirs), or a `deepmlf demo` output dir."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write report.md and the PNGs (default: RUN_DIR)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Which seed's curves and predictions to plot (default: the first finished one)."),
) -> None:
    """Write report.md: metrics table, training curves, predicted-vs-true scatter, confusion matrices, gates."""
    from ..report import write_report

    if out is not None:
        from ..io import check_output_dir

        check_output_dir(out, "--out")
    path = write_report(run_dir, out, seed=seed)
    pngs = re.findall(r"\]\(([^)]+\.png)\)", path.read_text())
    console.print(f"wrote [bold]{path}[/] and {len(pngs)} plots: {', '.join(pngs)}")
