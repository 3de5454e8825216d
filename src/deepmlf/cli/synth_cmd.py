"""`deepmlf data synth`: write the fusion probe dataset (docs/probe-dataset.md) as an MMSA pickle."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from ..data.synth import (CUES, ECHO_FLOOR_NOTE, NOISE_FLOOR_NOTES, PRESETS, RULES, echo_floor, make_probe,
                          probe_noise_floor, save_probe)
from ..metrics import key_metric_names
from . import data_app
from .common import console, friendly_errors


class PresetChoice(str, Enum):
    mosi = "mosi"
    sims = "sims"


RuleChoice = Enum("RuleChoice", {r: r for r in RULES}, type=str)
CuesChoice = Enum("CuesChoice", {c: c for c in CUES}, type=str)


@data_app.command("synth")
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Pickle to write (MMSA layout, e.g. runs/probe/unaligned_50.pkl)."),
    n: int = typer.Option(1000, "--n", help="Samples in all (split 70/15/15 into train/valid/test)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives byte-identical arrays."),
    preset: PresetChoice = typer.Option(
        PresetChoice.mosi, "--preset", help="mosi: 5-d audio, 20-d vision, labels in [-3, 3]; sims: 33/709-d, [-1, 1]."
    ),
    rule: RuleChoice = typer.Option(
        "flip", "--rule", help="Interaction rule: flip (sarcasm flips the words, the default probe) or gate "
        "(a flat tone makes the words count for nothing); docs/probe-dataset.md."),
    cues: CuesChoice = typer.Option(
        "first", "--cues", help="Where the cues live: first (tone in the first audio channels, smile in the first "
        "vision ones; the default), last (the last channels), swapped (tone in vision, smile in audio)."),
    echo: float = typer.Option(0.0, "--echo", help="Valence echo ρ in the audio (ρ v / 2 on the audio channel after "
                               "the tone ones, as prosody echoes the words; 0 = none, today's probe byte for byte). "
                               "Adds the exact text-missing oracle floor."),
) -> None:
    """Generate the fusion probe: labels only a text+audio+vision model can predict well."""
    from ..io import check_output_file

    check_output_file(out, "--out", example="unaligned_50.pkl")
    p = PRESETS[preset.value]
    rule_v, cues_v = RuleChoice(rule).value, CuesChoice(cues).value
    data = make_probe(n=n, seed=seed, preset=preset.value, rule=rule_v, cues=cues_v, echo=echo)
    path = save_probe(out, data)
    floor = probe_noise_floor(n, seed, preset.value, data=data, rule=rule_v, cues=cues_v)
    if echo > 0:
        floor["oracle_text_missing"] = echo_floor(data, n=n, seed=seed, preset=preset.value, echo=echo)["oracle_text_missing"]

    sizes = ", ".join(f"{name} {len(split['regression_labels'])}" for name, split in data.items())
    nonfinite = sum(int(np.count_nonzero(~np.isfinite(split["audio"]))) for split in data.values())
    lo, hi = p.label_range
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    console.print(
        f"preset {preset.value}, seed {seed}, rule {rule_v}, cues {cues_v}: {sizes}; audio ({p.audio_len} frames x {p.audio_dim}), "
        f"vision ({p.vision_len} frames x {p.vision_dim}), labels in [{lo:g}, {hi:g}], "
        f"{nonfinite} NaN/±inf audio values"
    )

    # Metrics as rows, predictors as columns: fits an 80-column terminal.
    keys = key_metric_names(p.dataset)
    table = Table(title="Reference predictors on the test split (the oracle's MAE is the floor)")
    table.add_column("metric")
    for name in floor:
        table.add_column(name, justify="right")
    for key in keys:
        cells = ["nan" if math.isnan(m[key]) else f"{m[key]:.4f}" for m in floor.values()]
        table.add_row(key, *cells)
    console.print(table)
    for name in floor:
        console.print(f"  {name}: {NOISE_FLOOR_NOTES.get(name, ECHO_FLOOR_NOTE)}", highlight=False)
