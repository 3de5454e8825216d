"""Utterance-level audio and video features from media files, with the offline extractors of
`deepmlf.features` (DESIGN.md §7: librosa or eGeMAPS acoustics, the FER2013 face network).

The paper's encoders (data2vec-audio, TimesFormer) are not reachable offline; these are the
honest substitutes. Per utterance: the clip's frame features are pooled over time — audio: mean
and std of the frames; video: mean over the frames where a face was found (zeros when none) — and
written as feature files (`ids`, `X`) that `data.features.audio/video` read.

A clip is found as `<media_dir>/**/<utterance_id>.<ext>` (MELD's raw clips are named
`dia{D}_utt{U}.mp4`, which is our MELD utterance id); a missing clip is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.erc import ERCData
from ..errors import DataError
from .features import save_features

MEDIA_EXT = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def _index(media_dir: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in sorted(media_dir.rglob("*")):
        if p.suffix.lower() in MEDIA_EXT:
            index.setdefault(p.stem, p)
    return index


def pool_audio(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    return np.concatenate([frames.mean(0), frames.std(0)]) if len(frames) else np.zeros(0, np.float32)


def pool_video(frames: np.ndarray, found: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    found = np.asarray(found, dtype=bool)
    return frames[found].mean(0) if found.any() else np.zeros(frames.shape[1], np.float32)


def extract_media_features(data: ERCData, media_dir: str | Path, *, out_audio: str | Path, out_video: str | Path,
                           feature_set: str = "librosa-fer", cache_dir: str | Path | None = None,
                           progress: bool = True) -> tuple[Path, Path]:
    from ..features.cache import ClipCache
    from ..features.extract import extract_clip
    from ..features.registry import get_feature_set
    from ..features.sources import Clip

    media_dir = Path(media_dir)
    if not media_dir.is_dir():
        raise DataError(f"{media_dir}: no such media folder")
    index = _index(media_dir)
    fs = get_feature_set(feature_set)
    cache = ClipCache(cache_dir)
    todo = [(split, c, j) for split, convs in data.splits.items() for c in convs for j in range(len(c))]
    missing = [c.utterance_ids[j] for _, c, j in todo if c.utterance_ids[j] not in index]
    if missing:
        raise DataError(f"{media_dir}: no clip for {len(missing)} utterance(s), e.g. {', '.join(missing[:3])} "
                        f"(expected files named <utterance_id>{MEDIA_EXT[0]})")
    ids, audio, video = [], [], []
    for split, c, j in tqdm(todo, desc=f"media features ({fs.id})", disable=not progress):
        uid = c.utterance_ids[j]
        clip = Clip(path=index[uid], video_id=c.dialogue_id, clip_id=uid, split=split)
        feats = extract_clip(fs, clip, asr="never", cache=cache, text=(c.texts[j] if c.texts else ""))
        ids.append(f"{split}/{uid}")
        audio.append(pool_audio(feats.audio))
        video.append(pool_video(feats.vision, feats.face_found))
    meta = {"feature_set": fs.describe(), "pooling": {"audio": "mean+std over frames", "video": "mean over face frames"}}
    return (save_features(out_audio, ids, np.stack(audio), {**meta, "modality": "audio"}),
            save_features(out_video, ids, np.stack(video), {**meta, "modality": "video"}))
