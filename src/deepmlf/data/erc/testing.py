"""Tiny files in each ERC format, built in code (tests, examples). Two dialogues per split unless told."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def write_meld_csvs(folder: Path) -> Path:
    """train/dev/test `*_sent_emo.csv` in MELD's layout: rows out of order, a U+0092 apostrophe."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "train": [("Oh my God, he\x92s lost it.", "Phoebe", "sadness", 0, 0), ("What?", "Monica", "surprise", 0, 1),
                  ("Hey!", "Joey", "joy", 1, 1), ("Okay.", "Phoebe", "neutral", 1, 0),
                  ("Get out!", "Monica", "anger", 1, 2)],
        "dev": [("No way.", "Ross", "disgust", 0, 0), ("Yes way.", "Rachel", "neutral", 0, 1)],
        "test": [("I\x92m scared.", "Chandler", "fear", 3, 0), ("Why?", "Phoebe", "neutral", 3, 1)],
    }
    for split, rs in rows.items():
        lines = [MELD_HEADER] + [f'{i + 1},"{t}",{s},{e},neutral,{d},{u},1,1,"00:00:01,000","00:00:02,000"\n'
                                 for i, (t, s, e, d, u) in enumerate(rs)]
        (folder / f"{split}_sent_emo.csv").write_text("".join(lines), encoding="utf-8")
    return folder


def cosmic_meld_list() -> list:
    """COSMIC meld.pkl layout: speakers (one-hot), emotion, sentiment, sentences, train, test, valid."""
    eye = np.eye(9)
    speakers = {0: [eye[0], eye[1]], 1: [eye[1], eye[0], eye[1]], 2: [eye[0]], 3: [eye[2], eye[0]]}
    labels = {0: [0, 4], 1: [6, 6, 1], 2: [3], 3: [2, 0]}
    sent = {k: [0] * len(v) for k, v in labels.items()}
    texts = {0: ["Hi.", "I\x92m happy!"], 1: ["Stop.", "No!", "Oh?"], 2: ["So sad."], 3: ["Eek.", "Fine."]}
    return [speakers, labels, sent, texts, [0, 1], [3], [2]]


def cosmic_iemocap_list() -> list:
    speakers = {"Ses01_a": ["M", "F", "M"], "Ses05_b": ["F", "M"], "Ses01_c": ["F"]}
    labels = {"Ses01_a": [0, 1, 2], "Ses05_b": [3, 4], "Ses01_c": [5]}
    texts = {"Ses01_a": ["yay", "oh no", "ok"], "Ses05_b": ["stop", "wow"], "Ses01_c": ["ugh"]}
    return [speakers, labels, texts, ["Ses01_a"], ["Ses05_b"], ["Ses01_c"]]


def dialoguernn_tuple(*, meld: bool = False, dims=(4, 3, 2), seed: int = 0) -> tuple:
    """DialogueRNN/MMGCN layout: 9-tuple (IEMOCAP) or 10-tuple (MELD)."""
    rng = np.random.default_rng(seed)
    ids = {"d1": None, "d2": None, "d3": None}
    spk = {"d1": ["M", "F", "M"], "d2": ["F", "M"], "d3": ["M"]}
    if meld:
        eye = np.eye(9)
        spk = {k: [eye[0 if s == "M" else 1] for s in v] for k, v in spk.items()}
    lab = {"d1": [0, 1, 2], "d2": [3, 4], "d3": [5]}
    feats = [{k: [rng.normal(size=d).astype(np.float32) for _ in v] for k, v in lab.items()} for d in dims]
    sent = {k: [f"utterance {i} of {k}" for i in range(len(v))] for k, v in lab.items()}
    out = (ids, spk, lab, *feats, sent, ["d1", "d2"], ["d3"])
    return out + (None,) if meld else out


def magtkd_dict(*, d: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lab = {0: [0, 4, 6], 1: [3, 3], 2: [1]}
    spk = {0: [5, 7, 5], 1: [7, 2], 2: [5]}
    out = {m: {k: [rng.normal(size=d).astype(np.float32) for _ in v] for k, v in lab.items()}
           for m in ("text", "audio", "video", "audio_kd", "video_kd")}
    out.update(speakers=spk, labels=lab, vids={"train": [0, 1], "dev": [2], "test": [2]},
               dia2utt={k: [f"dia{k}_utt{i}" for i in range(len(v))] for k, v in lab.items()})
    return out


def write_pickle(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def write_merbench(folder: Path) -> Path:
    """label.npz + transcription.csv; labels as MERBench ints (anger, joy, sadness, neutral, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    corp = {
        "train_corpus": {"train_dia0_utt0": {"emo": 1, "val": 0}, "train_dia0_utt1": {"emo": 0, "val": 0},
                         "train_dia1_utt0": {"emo": 3, "val": 0}},
        "val_corpus": {"val_dia0_utt0": {"emo": 2, "val": 0}},
        "test_corpus": {"test_dia0_utt1": {"emo": 6, "val": 0}, "test_dia0_utt0": {"emo": 5, "val": 0}},
    }
    np.savez(folder / "label.npz", **{k: np.array(v, dtype=object) for k, v in corp.items()})
    names = [n for c in corp.values() for n in c]
    (folder / "transcription.csv").write_text("name,english\n" + "".join(f"{n},text of {n}\n" for n in names))
    return folder / "label.npz"
