"""What `features extract` reads: MMSA's raw layout, a plain folder of clips, or a list of files.

MMSA raw layout (as MMSA-FET and the MOSI/MOSEI/SIMS downloads have it):

    DATASET/label.csv                    video_id, clip_id, text, label, mode (+ optional label_T/A/V)
    DATASET/Raw/<video_id>/<clip_id>.mp4

`mode` is train / valid / test. An empty `text` cell is filled by speech recognition. Anything else
(a plain folder, searched recursively, or files named one by one) becomes unlabelled clips of one
split: id `<parent folder>$_$<file stem>`, as MMSA's ids are `video_id$_$clip_id`.

Every problem is found before extraction starts and reported together, naming the file, row and
column: a missing column, an unknown mode, a row without its clip, a duplicate id, an empty folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .media import MEDIA_EXTENSIONS

LABEL_CSV = "label.csv"
RAW_DIR = "Raw"
REQUIRED_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MODALITY_LABELS = ("label_T", "label_A", "label_V")  # CH-SIMS unimodal labels -> regression_labels_T/A/V
MODES = ("train", "valid", "test")


@dataclass(frozen=True)
class Clip:
    path: Path
    video_id: str
    clip_id: str
    split: str
    text: str | None = None  # None: no transcript given (speech recognition fills it)
    label: float | None = None
    modality_labels: tuple[tuple[str, float], ...] = ()  # (("T", 0.2), ...) when label.csv has them

    @property
    def id(self) -> str:
        return f"{self.video_id}$_${self.clip_id}"


def _media_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)


def _find_clip(raw: Path, video_id: str, clip_id: str) -> Path | None:
    folder = raw / video_id
    for ext in MEDIA_EXTENSIONS:
        for cand in (folder / f"{clip_id}{ext}", folder / f"{clip_id}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_raw_layout(root: Path) -> list[Clip]:
    """Clips of an MMSA raw-layout folder (label.csv + Raw/), validated row by row."""
    import pandas as pd

    csv = root / LABEL_CSV
    try:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - a parser error of any kind means the same to the user
        raise DataError(f"{csv}: not a readable CSV ({type(e).__name__}: {e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{csv}: missing column {', '.join(repr(c) for c in missing)}; expected columns "
                        f"{', '.join(REQUIRED_COLUMNS)}; found {', '.join(frame.columns) or 'none'}")
    if frame.empty:
        raise DataError(f"{csv}: holds no rows")
    raw = root / RAW_DIR
    if not raw.is_dir():
        raise DataError(f"{root}: no {RAW_DIR}/ folder next to {LABEL_CSV} (clips go in {RAW_DIR}/<video_id>/<clip_id>.mp4)")
    extra = [c for c in MODALITY_LABELS if c in frame.columns]
    problems: list[str] = []
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(frame.itertuples(index=False), start=2):  # line 1 is the header
        r = row._asdict()
        vid, cid, mode = r["video_id"].strip(), r["clip_id"].strip(), r["mode"].strip()
        where = f"{csv} line {i} (video_id={vid!r}, clip_id={cid!r})"
        if not vid or not cid:
            problems.append(f"{where}: empty video_id or clip_id")
            continue
        if mode not in MODES:
            problems.append(f"{where}: mode {mode!r}; expected one of {', '.join(MODES)}")
        label = _float(r["label"])
        if label is None:
            problems.append(f"{where}: label {r['label']!r} is not a finite number")
        key = f"{vid}$_${cid}"
        if key in seen:
            problems.append(f"{where}: same video_id/clip_id as line {seen[key]}")
        seen[key] = i
        path = _find_clip(raw, vid, cid)
        if path is None:
            problems.append(f"{where}: no clip {RAW_DIR}/{vid}/{cid}.<{'|'.join(e[1:] for e in MEDIA_EXTENSIONS[:4])}|...>")
            continue
        mods = tuple((c[-1], v) for c in extra if (v := _float(r[c])) is not None)
        text = r["text"].strip() or None
        clips.append(Clip(path=path, video_id=vid, clip_id=cid, split=mode, text=text, label=label, modality_labels=mods))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(f"{csv}: {len(problems)} problem(s), nothing extracted:\n  {shown}")
    return clips


def discover(sources: list[Path], *, split: str = "test") -> tuple[list[Clip], str]:
    """Clips from the command line's sources, and which layout they were read as ("raw", "files")."""
    if split not in MODES:
        raise DataError(f"--split {split!r}: expected one of {', '.join(MODES)}")
    if not sources:
        raise DataError("no input given: pass a raw-layout folder (label.csv + Raw/), a folder of clips, or clip files")
    if len(sources) == 1 and sources[0].is_dir() and (sources[0] / LABEL_CSV).is_file():
        return read_raw_layout(sources[0]), "raw"
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            found = _media_files(src)
            if not found:
                raise DataError(f"{src}: no media files found (looked for {', '.join(MEDIA_EXTENSIONS)}, "
                                f"recursively) and no {LABEL_CSV}")
            files += found
        elif src.is_file():
            files.append(src)
        else:
            raise DataError(f"{src}: no such file or folder")
    clips, seen = [], {}
    for f in files:
        clip = Clip(path=f, video_id=f.parent.name or "clip", clip_id=f.stem, split=split)
        if clip.id in seen:
            raise DataError(f"{f} and {seen[clip.id]} get the same id {clip.id!r} (folder name $_$ file stem)")
        seen[clip.id] = f
        clips.append(clip)
    return clips, "files"
