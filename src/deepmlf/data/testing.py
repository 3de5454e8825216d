"""Small MMSA pickles in the exact layout of the real ones: for tests, smoke runs and trying the CLI.

The layout copies MMSA's processed files key by key, including the keys deepmlf ignores (`text`,
`text_bert`, `annotations`, `classification_labels`, SIMS `regression_labels_T/A/V`) and the
habits of the real files (lengths stored as Python lists, ids as an object array of
`video$_$clip` strings, zero frames after each sample's length). Labels carry a weak signal in
the text (polarity words), audio channel 0 and vision channel 0, so a model can learn something.

    from deepmlf.data.testing import write_mmsa_pickle
    write_mmsa_pickle("toy.pkl", n_per_split=(64, 16, 16))
    write_mmsa_pickle("bad.pkl", train__audio_lengths=None)  # drop a key
    write_mmsa_pickle("bad.pkl", valid=None)                 # drop a split
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .mmsa import DATASETS, LABEL_RANGES, SPLITS

_WORDS = {
    "en": {
        "pos": ["good", "great", "love", "nice", "funny", "enjoyed"],
        "neg": ["bad", "awful", "hate", "boring", "worst", "annoying"],
        "neutral": ["the", "movie", "was", "and", "it", "i", "plot", "really"],
    },
    "zh": {
        "pos": ["好", "喜欢", "开心", "不错"],
        "neg": ["差", "讨厌", "难过", "无聊"],
        "neutral": ["这个", "电影", "我", "的", "是", "还"],
    },
}


def make_mmsa_dict(
    *,
    n_per_split: tuple[int, int, int] = (24, 8, 8),
    dataset: str = "mosi",
    audio_dim: int = 5,
    vision_dim: int = 20,
    la: int = 30,
    lv: int = 40,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, dict[str, Any]]:
    """An MMSA-layout dict: {"train"|"valid"|"test": {key: array}}.

    overrides: `<split>__<key>=value` replaces one key (None deletes it); `<split>=value` replaces
    a whole split (None deletes it). Applied after generation, in the order given.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r}: expected one of {DATASETS}")
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {
        name: _make_split(rng, name, n, dataset, audio_dim, vision_dim, la, lv)
        for name, n in zip(SPLITS, n_per_split)
    }
    for key, value in overrides.items():
        split, _, field = key.partition("__")
        if split not in SPLITS:
            raise ValueError(f"override {key!r}: expected '<split>' or '<split>__<key>' with split in {SPLITS}")
        if not field:
            if value is None:
                data.pop(split, None)
            else:
                data[split] = value
        elif value is None:
            data[split].pop(field, None)
        else:
            data[split][field] = value
    return data


def write_mmsa_pickle(path: str | Path, **kwargs: Any) -> Path:
    """Write `make_mmsa_dict(**kwargs)` as a pickle (protocol 4, as MMSA does) and return the path."""
    data = make_mmsa_dict(**kwargs)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


def _make_split(
    rng: np.random.Generator, name: str, n: int, dataset: str, audio_dim: int, vision_dim: int, la: int, lv: int
) -> dict[str, Any]:
    lo, hi = LABEL_RANGES[dataset]
    # Real MOSI/MOSEI scores are annotator means (steps of 1/5 here); SIMS uses steps of 0.2.
    step = 0.2 if dataset == "sims" else 1 / 5
    labels = np.clip(np.round(rng.uniform(lo, hi, n) / step) * step, lo, hi).astype(np.float32)
    polarity = labels / hi  # in [-1, 1]

    words = _WORDS["zh" if dataset == "sims" else "en"]
    sep = "" if dataset == "sims" else " "
    raw_text = []
    for p in polarity:
        k = int(rng.integers(3, 9))
        bag = [
            str(rng.choice(words["pos"] if p > 0 else words["neg"])) if rng.random() < abs(p) else str(rng.choice(words["neutral"]))
            for _ in range(k)
        ]
        raw_text.append(sep.join(bag))

    audio, audio_lengths = _frames(rng, n, la, audio_dim, polarity)
    vision, vision_lengths = _frames(rng, n, lv, vision_dim, polarity)
    split: dict[str, Any] = {
        "raw_text": np.array(raw_text, dtype=object),
        "audio": audio,
        "vision": vision,
        "audio_lengths": audio_lengths,  # Python lists, as in MMSA's files
        "vision_lengths": vision_lengths,
        "regression_labels": labels,
        "id": np.array([f"{name}vid{i // 2:03d}$_${i % 2}" for i in range(n)], dtype=object),
        # Keys deepmlf ignores, present so the loader proves it tolerates them.
        "text": rng.standard_normal((n, 10, 4)).astype(np.float32),
        "text_bert": rng.integers(0, 100, (n, 3, 10)).astype(np.float32),
        "annotations": ["Positive" if y > 0 else "Negative" if y < 0 else "Neutral" for y in labels],
        "classification_labels": np.where(labels < 0, 0, np.where(labels == 0, 1, 2)).astype(np.float32),
    }
    if dataset == "sims":
        for m in "TAV":
            noisy = labels + rng.normal(0, 0.2, n)
            split[f"regression_labels_{m}"] = np.clip(np.round(noisy / 0.2) * 0.2, -1, 1).astype(np.float32)
    return split


def _frames(
    rng: np.random.Generator, n: int, seq_len: int, dim: int, polarity: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """(n, seq_len, dim) float32 with zero frames after each length; channel 0 carries the polarity."""
    lengths = rng.integers(max(1, seq_len // 3), seq_len + 1, n)
    x = rng.normal(0.0, 0.5, (n, seq_len, dim)).astype(np.float32)
    x[:, :, 0] += polarity[:, None].astype(np.float32)
    x[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0.0
    return x, [int(v) for v in lengths]
