"""`deepmlf export RUN_DIR`: model.safetensors + resolved config + model card (deepmlf.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import console, friendly_errors


@app.command("export")
@friendly_errors
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A `deepmlf train` run directory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default RUN_DIR/export)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed to export (default: best on validation)."),
) -> None:
    """Export one seed's trained weights as model.safetensors with config.yaml, checkpoint.json and a
    model card (README.md) whose metadata block holds the test metrics per seed and mean ± std."""
    from ..export import export_run
    from ..io import check_output_dir

    target = out if out is not None else run_dir / "export"
    if run_dir.is_dir():
        check_output_dir(target, "--out" if out is not None else "export folder")
    folder = export_run(run_dir, target, seed=seed)
    console.print(f"exported -> {folder} (load it with deepmlf.load({str(folder)!r}))")
