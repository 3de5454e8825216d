"""`deepmlf erc ...`: emotion recognition in conversation (MAGTKD, seed 004).

    deepmlf erc data inspect PATH     dialogues, utterances, speakers, label histogram per split
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import app
from .common import console, friendly_errors

erc_app = typer.Typer(help="Emotion recognition in conversation (MAGTKD): data, features, training.",
                      no_args_is_help=True)
erc_data_app = typer.Typer(help="Inspect conversation data (MELD CSVs, COSMIC/DialogueRNN pickles, MERBench, MAGTKD).",
                           no_args_is_help=True)
app.add_typer(erc_app, name="erc")
erc_app.add_typer(erc_data_app, name="data")


@erc_data_app.command("inspect")
@friendly_errors
def data_inspect(
    path: Path = typer.Argument(..., help="A MELD/IEMOCAP CSV folder or file, a COSMIC/DialogueRNN/MAGTKD pickle, or MERBench label.npz."),
    source: str = typer.Option("auto", "--source", help="Format: auto, meld-csv, cosmic-pkl, dialoguernn-pkl, merbench-npz, magtkd-pkl."),
    label_order: Optional[str] = typer.Option(None, "--label-order", help="What the file's integer labels mean (a named order, e.g. meld-cosmic); default: the format's."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """What a conversation file holds: per split the dialogues, utterances, speakers, utterances per
    dialogue and the label histogram, plus what the loader repaired."""
    from ..data.erc import load_erc

    data = load_erc(path, source=source, label_order=label_order)
    summary = data.summary()
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(f"[bold]{path}[/] ({summary['source']}; speakers {summary['speaker_mode']}; "
                  f"classes: {', '.join(summary['classes'])})")
    table = Table()
    for col in ("split", "dialogues", "utterances", "speakers", "utt/dialogue min/mean/max", "features"):
        table.add_column(col, justify="right" if col not in ("split", "features") else "left")
    for name, s in summary["splits"].items():
        u = s["utterances_per_dialogue"]
        table.add_row(name, str(s["dialogues"]), str(s["utterances"]), str(s["speakers"]),
                      f"{u['min']}/{u['mean']}/{u['max']}", ", ".join(f"{m} {d}" for m, d in s["features"].items()) or "-")
    console.print(table)
    hist = Table(title="labels per split")
    hist.add_column("class")
    for name in summary["splits"]:
        hist.add_column(name, justify="right")
    for c in summary["classes"]:
        hist.add_row(c, *(str((s["labels"] or {}).get(c, "-")) for s in summary["splits"].values()))
    console.print(hist)
    for note in summary["notes"]:
        console.print(f"note: {note}")
