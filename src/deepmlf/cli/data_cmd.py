"""`deepmlf data inspect | convert`: what an MMSA pickle holds, what the loader had to repair, and
the pickle-free copy every command also reads."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from ..data.corpora import FAMILY
from ..data.mmsa import PICKLE_RISK, MMSAData, Split, load_mmsa
from . import data_app
from .common import console, friendly_errors

# MMSA's metricsTop classes (DESIGN.md §4): Acc7 rounds the clipped score; SIMS Acc5 bins on (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01].
MOSI_CLASSES = tuple(str(c) for c in range(-3, 4))
SIMS_BINS = (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01)
SIMS_CLASSES = ("negative", "weak_negative", "neutral", "weak_positive", "positive")
SIMS_CLASS_RANGES = ("[-1, -0.7]", "(-0.7, -0.1]", "(-0.1, 0.1]", "(0.1, 0.7]", "(0.7, 1]")


class DatasetChoice(str, Enum):
    mosi = "mosi"
    mosei = "mosei"
    sims = "sims"
    simsv2 = "simsv2"


def label_histogram(labels: np.ndarray, dataset: str | None) -> dict[str, int]:
    """Counts per MMSA class: 7 classes (round(clip(y, -3, 3))) for MOSI/MOSEI, the 5 Acc5 bins for
    SIMS / SIMSv2. `dataset`: a corpus name or a family ("mosi" / "sims"), None = MOSI-like."""
    if FAMILY.get(dataset, dataset) == "sims":
        y = np.clip(labels, -1.0, 1.0)
        # Bin i holds (SIMS_BINS[i], SIMS_BINS[i+1]], as metricsTop's __multiclass_acc bins.
        # Edges in the labels' dtype: a float32 label of -0.7 must land in (-1.01, -0.7], not above it.
        cls = np.searchsorted(np.asarray(SIMS_BINS[1:-1], dtype=y.dtype), y, side="left")
        return {name: int(np.count_nonzero(cls == i)) for i, name in enumerate(SIMS_CLASSES)}
    cls = np.round(np.clip(labels, -3.0, 3.0)).astype(int)  # numpy round: half to even, as MMSA
    return {name: int(np.count_nonzero(cls == int(name))) for name in MOSI_CLASSES}


def _lengths_summary(seq_len: int, lengths: np.ndarray) -> dict[str, Any]:
    return {
        "max_len": seq_len,
        "length_min": int(lengths.min()),
        "length_mean": round(float(lengths.mean()), 2),
        "length_max": int(lengths.max()),
    }


def split_summary(split: Split, dataset: str | None) -> dict[str, Any]:
    """The facts `data inspect` shows for one split (stable keys; the --json output)."""
    labels: dict[str, Any] | None = None
    if split.has_labels:
        y = split.labels
        labels = {
            "min": round(float(y.min()), 4),
            "max": round(float(y.max()), 4),
            "mean": round(float(y.mean()), 4),
            "histogram": label_histogram(y, dataset),
        }
    return {
        "n": len(split),
        "audio": {"dim": split.audio_dim, **_lengths_summary(split.audio_len, split.audio_lengths)},
        "vision": {"dim": split.vision_dim, **_lengths_summary(split.vision_len, split.vision_lengths)},
        "labels": labels,
        "nonfinite_replaced": dict(split.nonfinite_replaced),
    }


def file_identity(path: Path) -> dict[str, Any]:
    """SHA-256 of the file and the MMSA processed file it matches, if any (deepmlf.checksums)."""
    from ..checksums import MMSA_SOURCE, mmsa_published_name, sha256_file

    digest = sha256_file(path, progress=True)
    return {"sha256": digest, "mmsa_published": mmsa_published_name(digest), "mmsa_source": MMSA_SOURCE}


def inspect_summary(data: MMSAData) -> dict[str, Any]:
    fs = data.feature_set
    return {
        "path": data.path,
        "feature_set": {k: fs.get(k) for k in ("id", "fingerprint", "audio_dim", "vision_dim")} if fs else None,
        "dataset": data.dataset,
        "dataset_label": data.dataset_label,
        "family": data.family,
        "label_range": list(data.label_range),
        "splits": {name: split_summary(split, data.family) for name, split in data.items()},
        "notes": list(data.notes),
    }


def _render(summary: dict[str, Any]) -> None:
    lo, hi = summary["label_range"]
    console.print(
        f"[bold]{summary['path']}[/]  dataset: [cyan]{summary['dataset_label']}[/]  labels expected in [{lo:g}, {hi:g}]",
        highlight=False,
        soft_wrap=True,
    )
    if "sha256" in summary:
        known = summary["mmsa_published"]
        match = (f"[green]matches MMSA's published {known}[/]" if known
                 else f"not one of the files MMSA publishes hashes for ({summary['mmsa_source']})")
        console.print(f"sha256 {summary['sha256']}  {match}", highlight=False, soft_wrap=True)
    if summary.get("feature_set"):
        console.print(f"feature set {summary['feature_set']['id']} (written by deepmlf features extract)", highlight=False)
    splits = summary["splits"]
    table = Table(title="splits", title_justify="left")
    table.add_column("")
    for name in splits:
        table.add_column(name, justify="right")

    def row(label: str, fn) -> None:
        table.add_row(label, *(fn(s) for s in splits.values()))

    row("samples", lambda s: str(s["n"]))
    for mod in ("audio", "vision"):
        row(f"{mod} dim", lambda s, m=mod: str(s[m]["dim"]))
        row(f"{mod} frames (L)", lambda s, m=mod: str(s[m]["max_len"]))
        row(
            f"{mod} length min/mean/max",
            lambda s, m=mod: f"{s[m]['length_min']} / {s[m]['length_mean']:.1f} / {s[m]['length_max']}",
        )
        row(f"{mod} non-finite -> 0", lambda s, m=mod: str(s["nonfinite_replaced"].get(m, 0)))
    row("label min / max", lambda s: f"{s['labels']['min']:g} / {s['labels']['max']:g}" if s["labels"] else "—")
    row("label mean", lambda s: f"{s['labels']['mean']:.3f}" if s["labels"] else "—")
    console.print(table)

    labelled = {name: s for name, s in splits.items() if s["labels"]}
    if labelled:
        sims = summary["family"] == "sims"
        hist = Table(title="label classes" + (" (SIMS Acc5 bins)" if sims else " (Acc7)"), title_justify="left")
        hist.add_column("class")
        for name in labelled:
            hist.add_column(name, justify="right")
        classes = next(iter(labelled.values()))["labels"]["histogram"]
        for i, cls in enumerate(classes):
            label = f"{cls} {SIMS_CLASS_RANGES[i]}" if sims else cls
            hist.add_row(label, *(str(s["labels"]["histogram"][cls]) for s in labelled.values()))
        console.print(hist)

    if summary["notes"]:
        console.print("[bold]load notes[/]")
        for note in summary["notes"]:
            console.print(f"  • {note}", highlight=False, soft_wrap=True)


@data_app.command("inspect")
@friendly_errors
def inspect(
    path: Path = typer.Argument(..., help="MMSA processed pickle (aligned_50.pkl, unaligned_50.pkl, unaligned_39.pkl)."),
    dataset: DatasetChoice | None = typer.Option(
        None, "--dataset",
        help="Corpus (sets the label range and classes); inferred from the file when omitted. A corpus the "
        "file contradicts (feature dims, regression_labels_T/A/V, label range) is an error.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the same facts."),
    unlabelled: bool = typer.Option(
        False, "--unlabelled", help="Accept a file for prediction: any subset of splits, labels optional."
    ),
) -> None:
    """Validate an MMSA pickle (or a `data convert` .safetensors file) and show its SHA-256 (matched
    against the hashes MMSA publishes) and per split: sizes, feature dims, frame lengths, labels, repairs.

    Safety: a pickle can run code when it is loaded. deepmlf reads pickles with a restricted
    unpickler (numpy arrays, numbers, strings, lists, dicts only) and refuses anything else; convert a
    file once with `deepmlf data convert IN.pkl OUT.safetensors` and use OUT, which holds no code.
    """
    data = load_mmsa(path, dataset=dataset.value if dataset else None, require_labels=not unlabelled)
    summary = {**inspect_summary(data), **file_identity(path)}
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _render(summary)


@data_app.command("convert")
@friendly_errors
def convert(
    src: Path = typer.Argument(..., help="MMSA pickle to convert (read with the restricted unpickler)."),
    out: Path = typer.Argument(..., help="File to write, e.g. unaligned_50.safetensors."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle",
        help="Read SRC with the full pickle module (it may run code): only for a file you made or vetted yourself.",
    ),
) -> None:
    """Write an MMSA pickle as one pickle-free .safetensors file (arrays as tensors, transcripts and ids
    as JSON in its header) that train, evaluate, predict, sweep and data inspect read like the pickle.

    Vet a file once, convert it, and never unpickle it again: loading OUT runs no code.
    """
    from ..data.mmsa import _read_pickle, mmsa_from_dict, read_pickle_unrestricted
    from ..data.safe_format import write_safe
    from ..errors import ConfigError
    from ..io import check_output_file

    if out.resolve() == src.resolve():
        raise ConfigError(f"{out}: the output would overwrite the input; choose another file name")
    check_output_file(out, "OUT", example="data.safetensors")
    if trust_pickle:
        if not src.is_file():
            raise ConfigError(f"{src}: file not found")
        obj = read_pickle_unrestricted(src)
    else:
        obj = _read_pickle(src)
    write_safe(obj, out)
    data = mmsa_from_dict(_read_pickle(out), source=str(out), require_labels=False)  # read back: same checks as every command
    sizes = ", ".join(f"{k} {len(v)}" for k, v in data.items())
    console.print(f"{src} -> {out} ({sizes}; dataset {data.dataset_label}); use {out} as --data from now on",
                  highlight=False, soft_wrap=True)
