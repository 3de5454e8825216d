"""`deepmlf features extract | list`: raw media -> MMSA-layout pickle (deepmlf.features)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import features_app
from .common import console, friendly_errors


class AsrChoice(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


@features_app.command("list")
@friendly_errors
def list_cmd() -> None:
    """The registered feature sets, their dims and what they hold."""
    from ..features.registry import FEATURE_SETS, get_feature_set

    table = Table(title="feature sets")
    for col in ("id", "audio", "vision", "description"):
        table.add_column(col)
    for name in FEATURE_SETS:
        fs = get_feature_set(name)
        try:
            audio = f"{fs.audio.kind} {fs.audio.dim}-d @ {fs.audio.frame_rate:g} fps"
        except Exception as e:  # noqa: BLE001 - an optional extra that is not installed
            audio = f"{fs.audio.kind} (unavailable: {e})"
        table.add_row(fs.id, audio, f"{fs.vision.kind} {fs.vision.dim}-d @ {fs.vision.frame_rate:g} fps", fs.description)
    console.print(table)


@features_app.command("extract")
@friendly_errors
def extract_cmd(
    sources: list[Path] = typer.Argument(..., help="A raw-layout folder (label.csv + Raw/<video>/<clip>.mp4), "
                                                   "a folder of clips, or clip files."),
    out: Path = typer.Option(..., "--out", "-o", help="MMSA-layout pickle to write (e.g. unaligned.pkl)."),
    feature_set: str = typer.Option("librosa-fer", "--feature-set", "-f", help="Feature set (deepmlf features list)."),
    split: str = typer.Option("test", "--split", help="Split of clips without label.csv (train, valid, test)."),
    asr: AsrChoice = typer.Option(AsrChoice.auto, "--asr", help="Speech recognition: auto (clips without a "
                                  "transcript), always, never (missing transcripts stay empty)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel clips (processes; default 2 "
                                          "or the core count if lower)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Per-clip cache folder (default OUT.cache)."),
    skip_errors: bool = typer.Option(False, "--skip-errors", help="Write the pickle without the clips that failed."),
    bert_vocab: Optional[Path] = typer.Option(None, "--bert-vocab", help="BERT vocab.txt for MMSA's text_bert key."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what was found (streams, text source, cache) and stop."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Extract per-frame audio, facial and text features of every clip into one MMSA pickle.

    Resumable: finished clips are cached (OUT.cache), so an interrupted or failed run continues
    where it stopped. The feature set is recorded in the pickle and in every checkpoint trained on it.
    """
    from ..features.cache import ClipCache
    from ..features.extract import default_cache_dir, default_workers, extract_features, plan
    from ..features.registry import get_feature_set
    from ..features.sources import discover

    fs = get_feature_set(feature_set)
    if not dry_run:
        from ..io import check_output_dir, check_output_file

        check_output_file(out, "--out", example="unaligned.pkl")  # before minutes of extraction, not after
        check_output_dir(cache or default_cache_dir(out), "--cache")
    if dry_run:
        clips, layout = discover(sources, split=split)
        rows = plan(clips, fs, asr=asr.value, cache=ClipCache(cache or default_cache_dir(out)))
        table = Table(title=f"{len(rows)} clip(s) ({'MMSA raw layout' if layout == 'raw' else 'files'}), "
                            f"feature set {fs.id}: nothing extracted (--dry-run)")
        for col in ("split", "id", "file", "duration", "label", "text from", "cached", "problem"):
            table.add_column(col)
        for r in rows:
            cached = ", ".join(p for p, hit in r.cached.items() if hit) or "—"
            table.add_row(r.clip.split, r.clip.id, str(r.clip.path), f"{r.info.duration_s:.2f} s" if r.info else "?",
                          "" if r.clip.label is None else f"{r.clip.label:g}", r.text_source, cached, r.problem or "")
        console.print(table)
        bad = sum(r.problem is not None for r in rows)
        if bad:
            console.print(f"[yellow]{bad} clip(s) cannot be extracted as they are (see 'problem')[/]")
        return
    report = extract_features(sources, out, feature_set=fs, split=split, asr=asr.value,
                              workers=workers if workers is not None else default_workers(), cache_dir=cache,
                              skip_errors=skip_errors, bert_vocab=bert_vocab, progress=not quiet)
    n_cached = sum(all(r.cached.values()) for r in report.results)
    console.print(f"{report.n_clips} clip(s) -> {out} ({', '.join(f'{k} {v}' for k, v in report.splits.items())}; "
                  f"feature set {fs.id}: audio {fs.audio_dim}-d, vision {fs.vision_dim}-d; "
                  f"{n_cached} from the cache; {report.wall_s:.1f} s)")
    for note in report.notes:
        console.print(f"  • {note}", highlight=False)
