"""Per-utterance feature files: extraction with a frozen text encoder (cached by content hash),
and user-supplied audio/video features attached to conversations.

A feature file is an .npz with `ids` (N,) utterance keys "<split>/<utterance_id>", `X` (N, d)
float32 and `meta` (JSON: encoder, readout, prompt, dim, deepmlf version); optionally `zs` (N, C),
the causal LM's log-probabilities of one emotion word per class at the readout (zero-shot scores)
and `zs_classes`. User-supplied files may also be a pickle of {key: vector}; keys may omit the
split when the utterance ids are unique across splits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.erc import ERCData
from ..errors import DataError
from ..io import atomic_path

# The word a speaker "feels" for each class (zero-shot verbalizer); other names are used as they are.
VERBALIZER = {"neutral": "neutral", "surprise": "surprised", "fear": "scared", "sadness": "sad", "joy": "happy",
              "disgust": "disgusted", "anger": "angry", "hap": "happy", "sad": "sad", "neu": "neutral",
              "ang": "angry", "exc": "excited", "fru": "frustrated"}


def utterance_keys(data: ERCData) -> list[str]:
    return [f"{split}/{u}" for split, convs in data.splits.items() for c in convs for u in c.utterance_ids]


def _weights_digest(model: torch.nn.Module) -> str:
    """A content hash of the encoder's weights (all of them; ~0.5 s for 135M parameters)."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if p.numel() else b"")
    return h.hexdigest()


def _content_key(data: ERCData, encoder: Any, verbalizer: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(encoder.describe(), sort_keys=True).encode())
    h.update(_weights_digest(encoder.model).encode())
    h.update(json.dumps(list(verbalizer or [])).encode())
    for split, convs in data.splits.items():
        for c in convs:
            h.update(json.dumps([split, c.utterance_ids, c.speakers, c.texts]).encode())
    return h.hexdigest()[:24]


def save_features(path: str | Path, ids: Sequence[str], X: np.ndarray, meta: dict, **extra: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=np.asarray(ids, dtype=str), X=np.asarray(X, dtype=np.float32),
                     meta=np.asarray(json.dumps(meta)), **extra)
    return path


def load_features(path: str | Path) -> tuple[list[str], np.ndarray, dict, dict[str, np.ndarray]]:
    """(keys, X (N, d), meta, extra arrays) of a feature .npz or a {key: vector} pickle."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such feature file")
    if path.suffix.lower() in (".pkl", ".pickle"):
        from ..data.mmsa import safe_pickle_load

        with open(path, "rb") as fh:
            obj = safe_pickle_load(fh, path)  # restricted: a feature pickle holds arrays, never code
        if not isinstance(obj, dict) or not obj:
            raise DataError(f"{path}: a feature pickle must be a non-empty dict utterance key -> vector")
        keys = [str(k) for k in obj]
        try:
            X = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in obj.values()])
        except ValueError as e:
            raise DataError(f"{path}: feature vectors of different lengths ({e})") from None
        return keys, X, {}, {}
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable feature .npz ({e})") from None
    for key in ("ids", "X"):
        if key not in z.files:
            raise DataError(f"{path}: missing key {key!r}; a feature .npz holds ids (N,) and X (N, d)")
    X = z["X"]
    if X.ndim != 2 or len(z["ids"]) != X.shape[0]:
        raise DataError(f"{path}: X must be (N, d) with one row per id; got X {X.shape} for {len(z['ids'])} ids")
    if not np.isfinite(X).all():
        raise DataError(f"{path}: X holds non-finite values")
    meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    extra = {k: z[k] for k in z.files if k not in ("ids", "X", "meta")}
    return [str(i) for i in z["ids"]], X.astype(np.float32), meta, extra


def attach_features(data: ERCData, modality: str, path: str | Path) -> int:
    """Set `conv.features[modality]` from a per-utterance file; every utterance must have a row."""
    keys, X, _, _ = load_features(path)
    index = {k: i for i, k in enumerate(keys)}
    bare: dict[str, int] = {}
    for k, i in index.items():
        bare.setdefault(k.split("/", 1)[-1], i)
    missing = []
    for split, convs in data.splits.items():
        for c in convs:
            rows = []
            for u in c.utterance_ids:
                i = index.get(f"{split}/{u}", bare.get(u))
                if i is None:
                    missing.append(f"{split}/{u}")
                    rows.append(0)
                else:
                    rows.append(i)
            c.features[modality] = X[rows]
    if missing:
        raise DataError(f"{path}: no {modality} features for {len(missing)} utterance(s), e.g. "
                        f"{', '.join(missing[:3])} (keys are '<split>/<utterance_id>' or the bare utterance id)")
    return X.shape[1]


def verbalizer_ids(tokenizer: Any, classes: Sequence[str]) -> list[int]:
    """First token of ' <word>' per class (the next token after '... feels')."""
    return [tokenizer(" " + VERBALIZER.get(c, c), add_special_tokens=False)["input_ids"][0] for c in classes]


def extract_text_features(data: ERCData, encoder: Any, *, out: str | Path | None = None,
                          cache_dir: str | Path | None = None, zero_shot: bool = False,
                          progress: bool = True) -> Path | tuple[list[str], np.ndarray, dict, dict]:
    """Encode every utterance of `data` (once per dialogue). With `cache_dir`, a file named by the
    content hash (encoder config + weights + every dialogue's text) is reused. Returns the path
    written (`out` or the cache file), or the arrays when neither is given."""
    verb = list(data.classes) if zero_shot and encoder.kind == "causal" else None
    key = _content_key(data, encoder, verb) if cache_dir is not None else None
    cached = Path(cache_dir) / f"text-{key}.npz" if key else None
    if cached is not None and cached.is_file():
        if out is None:
            return cached
        ids, X, meta, extra = load_features(cached)
        return save_features(out, ids, X, meta, **extra)
    ids: list[str] = []
    rows, zs = [], []
    vids = verbalizer_ids(encoder.tokenizer, data.classes) if verb else None
    total = sum(len(v) for v in data.splits.values())
    with tqdm(total=total, desc=f"text features ({encoder.name})", unit="dialogue", disable=not progress) as bar:
        for split, convs in data.splits.items():
            for c in convs:
                if c.texts is None:
                    raise DataError(f"{data.path}: dialogue {c.dialogue_id} ({split}) has no text to encode")
                h, logits = encoder.encode_dialogue(c.speakers, c.texts)
                rows.append(h.float().cpu().numpy())
                if vids is not None:
                    zs.append(torch.log_softmax(logits.float(), -1)[:, vids].cpu().numpy())
                ids += [f"{split}/{u}" for u in c.utterance_ids]
                bar.update(1)
    from .. import __version__

    meta = {**encoder.describe(), "content_key": key, "deepmlf": __version__, "source": data.source}
    X = np.concatenate(rows) if rows else np.zeros((0, encoder.dim), np.float32)
    extra = {"zs": np.concatenate(zs), "zs_classes": np.asarray(list(data.classes))} if vids is not None else {}
    target = out if out is not None else cached
    if target is None:
        return ids, X, meta, extra
    path = save_features(target, ids, X, meta, **extra)
    if cached is not None and out is not None:
        save_features(cached, ids, X, meta, **extra)
    return path
