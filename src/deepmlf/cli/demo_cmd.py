"""`deepmlf demo` (= `make demo`): DeepMLF on the real SmolLM2-135M against text-only and AV-only references."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .common import console, friendly_errors


@app.command("demo")
@friendly_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output dir: probe data, the three models, report.md."),
    n: Optional[int] = typer.Option(None, "--n", help="Probe samples in all, split 70/15/15 (default 1000)."),
    fast: bool = typer.Option(False, "--fast", help="5 stage-2 epochs instead of 8: about 2 minutes less, a rougher result."),
    overrides: Optional[List[str]] = typer.Option(
        None, "--set", help="Config override on the `demo` preset, KEY=VALUE (repeatable), e.g. --set train.max_epochs=4."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Generate the fusion probe, train DeepMLF (stage 1 + 2) and its text-only / AV-only references,
    print the comparison table and write OUT/report.md. No data, no download; ~10 min on 2 CPU cores."""
    from ..demo import run_demo

    run_demo(out, n=n, fast=fast, overrides=overrides, progress=progress, console=console)
