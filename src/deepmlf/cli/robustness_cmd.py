"""`deepmlf robustness RUN_DIR --data PKL`: metrics against the missing rate per modality."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from . import app
from .common import console, friendly_errors


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}={text!r}: expected comma-separated numbers in [0, 1], e.g. 0,0.5,1") from None


@app.command("robustness")
@friendly_errors
def robustness_cmd(
    run_dir: Path = typer.Argument(..., help="A `deepmlf train` run dir (every finished seed is scored)."),
    data: str = typer.Option(..., "--data", "-d", help="MMSA pickle to score on."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    modalities: str = typer.Option("text,audio,vision,audio+vision", "--modalities",
                                   help="Comma-separated modality sets, each as for evaluate --missing."),
    rates: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", "--rates", help="Missing rates (0...1)."),
    seed: int = typer.Option(0, "--missing-seed", help="Seed of the per-sample drops."),
) -> None:
    """Score every seed with each modality set missing at each rate (docs/missing-modalities.md):
    writes RUN_DIR/robustness.csv, robustness.json and robustness.png; `deepmlf report` shows them."""
    from ..train.robustness import ROBUSTNESS_CSV, ROBUSTNESS_PNG, read_robustness, robustness, robustness_markdown

    mods = [m.strip() for m in modalities.split(",") if m.strip()]
    if not mods:
        raise ConfigError("--modalities is empty: name at least one modality set, e.g. text")
    robustness(run_dir, data, modalities=mods, rates=_floats(rates, "--rates"), split=split, seed=seed,
               progress=lambda line: console.print(line, highlight=False))
    frame, info = read_robustness(run_dir)
    console.print("\n".join(robustness_markdown(frame, info)), highlight=False)
    console.print(f"table: {run_dir / ROBUSTNESS_CSV}, plot: {run_dir / ROBUSTNESS_PNG}")
