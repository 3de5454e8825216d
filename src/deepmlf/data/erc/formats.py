"""Loaders for the public ERC formats (notes/neighbour-systems.md §1.2-1.3), each to `ERCData`.

| source           | what                                                              | file's label order (default) |
|------------------|-------------------------------------------------------------------|------------------------------|
| `meld-csv`       | official MELD `*_sent_emo.csv` (also MAGTKD's IEMOCAP CSVs): a dir | names in the file            |
| `cosmic-pkl`     | COSMIC `meld.pkl` (7-list) / `iemocap.pkl` (6-list)               | meld-cosmic / iemocap-cosmic |
| `dialoguernn-pkl`| DialogueRNN/MMGCN 9-tuple (IEMOCAP), 10-tuple (MELD); SDT 12/13     | meld-cosmic / iemocap-cosmic |
| `merbench-npz`   | MERBench `label.npz` + a transcription CSV (`name`, text column)   | meld-merbench                |
| `magtkd-pkl`     | the MAGTKD release's first-stage feature dict                      | meld-alphabetical            |

`label_order` names what a file's integer labels mean (a `CLASS_ORDERS` name or a list);
`classes` is the order the returned data uses (labels re-mapped by name). Anything malformed is a
`DataError` naming the file and the key, column or tuple position.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import DataError
from ..mmsa import safe_pickle_load
from .core import CLASS_ORDERS, Conversation, ERCData, SpeakerMode, class_order, count_repairable, label_index, repair_text

SOURCES = ("meld-csv", "cosmic-pkl", "dialoguernn-pkl", "merbench-npz", "magtkd-pkl")
CSV_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
_SPLIT_WORDS = {"train": ("train",), "valid": ("dev", "valid", "val"), "test": ("test",)}
_IEMOCAP_NAMES = set(CLASS_ORDERS["iemocap-alphabetical"])


class _Repairs:
    def __init__(self) -> None:
        self.chars = 0

    def __call__(self, text: Any, where: str) -> str:
        if not isinstance(text, str):
            raise DataError(f"{where}: expected a string, got {type(text).__name__}")
        self.chars += count_repairable(text)
        return repair_text(text)

    def note(self) -> list[str]:
        return [f"repaired {self.chars} C1 control character(s) through cp1252 (U+0092 -> ’)"] if self.chars else []


def _sort_key(value: str) -> tuple:
    return (0, int(value), "") if re.fullmatch(r"-?\d+", value) else (1, 0, value)


# ============================================================================ CSV (MELD official, MAGTKD IEMOCAP)


def _csv_split_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        stem = path.stem.lower()
        for split, words in _SPLIT_WORDS.items():
            if any(re.search(rf"(^|[_\-.]){w}([_\-.]|$)", stem) for w in words):
                return {split: path}
        return {"test": path}
    found: dict[str, Path] = {}
    for f in sorted(path.glob("*.csv")):
        stem = f.stem.lower()
        for split, words in _SPLIT_WORDS.items():
            if any(re.search(rf"(^|[_\-.]){w}([_\-.]|$)", stem) for w in words) and split not in found:
                found[split] = f
    if not found:
        raise DataError(f"{path}: no CSV named like train/dev/test (e.g. train_sent_emo.csv) in this folder")
    return {s: found[s] for s in _SPLIT_WORDS if s in found}


def _iemocap_speaker(name: str) -> str:
    m = re.search(r"_([MF])\d*$", name)
    return m.group(1) if m else name


def load_conversation_csv(path: str | Path, *, classes: str | Sequence[str] | None = None,
                          speaker_mode: SpeakerMode | None = None) -> ERCData:
    """Official MELD CSVs (a folder with train/dev/test files, or one file) or MAGTKD's IEMOCAP CSVs.

    Rows are grouped by Dialogue_ID and ordered by Utterance_ID; labels are class names
    (`classes` default: MELD's own order, or IEMOCAP's COSMIC order when the names are IEMOCAP's).
    """
    import pandas as pd

    path = Path(path)
    files = _csv_split_files(path)
    repairs = _Repairs()
    frames = {}
    for split, f in files.items():
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False, encoding="utf-8")
        except (UnicodeDecodeError, pd.errors.ParserError) as e:
            raise DataError(f"{f}: not a readable UTF-8 CSV ({e})") from None
        missing = [c for c in CSV_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{f}: missing column(s) {', '.join(missing)}; an ERC CSV needs {', '.join(CSV_COLUMNS)}")
        frames[split] = (f, df)
    names = {str(e).strip().lower() for _, df in frames.values() for e in df["Emotion"]}
    iemocap = bool(names) and names <= (_IEMOCAP_NAMES | {"happy", "sad", "neutral", "angry", "excited", "frustrated"})
    order = class_order(classes if classes is not None else ("iemocap-cosmic" if iemocap else "meld-cosmic"))
    splits: dict[str, list[Conversation]] = {}
    for split, (f, df) in frames.items():
        dialogues: dict[str, list[tuple]] = {}
        for row, r in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
            where = f"{f}, line {row}"
            did, uid = str(getattr(r, "Dialogue_ID")).strip(), str(getattr(r, "Utterance_ID")).strip()
            if not did or not uid:
                raise DataError(f"{where}: empty Dialogue_ID or Utterance_ID")
            spk = repairs(getattr(r, "Speaker"), f"{where}, column Speaker").strip()
            if iemocap:
                spk = _iemocap_speaker(spk)
            text = repairs(getattr(r, "Utterance"), f"{where}, column Utterance")
            y = label_index(getattr(r, "Emotion"), order, where=f"{where}, column Emotion")
            dialogues.setdefault(did, []).append((uid, spk, text, y, row))
        convs = []
        for did in sorted(dialogues, key=_sort_key):
            rows = sorted(dialogues[did], key=lambda t: _sort_key(t[0]))
            seen: dict[str, int] = {}
            for uid, *_, row in rows:
                if uid in seen:
                    raise DataError(f"{f}, line {row}: Dialogue_ID {did} has Utterance_ID {uid} twice (also line {seen[uid]})")
                seen[uid] = row
            convs.append(Conversation(
                dialogue_id=did, utterance_ids=[f"dia{did}_utt{u}" for u, *_ in rows],
                speakers=[t[1] for t in rows], texts=[t[2] for t in rows], labels=[t[3] for t in rows]))
        splits[split] = convs
    mode = speaker_mode or ("per_dialogue" if iemocap else "global")
    return ERCData(splits=splits, classes=order, source="meld-csv", path=str(path), speaker_mode=mode,
                   notes=repairs.note())


# ============================================================================ pickles


def _load_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            # The DialogueRNN-era files are Python 2 pickles; read with the restricted unpickler (no code runs).
            return safe_pickle_load(fh, path, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, ImportError, AttributeError) as e:
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def _dict_at(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict keyed by dialogue id, got {type(obj).__name__}")
    return obj


def _ids_at(obj: Any, where: str) -> list:
    if isinstance(obj, (list, tuple, set, np.ndarray)) or hasattr(obj, "__iter__") and not isinstance(obj, (str, dict)):
        return sorted(obj, key=lambda v: _sort_key(str(v)))
    raise DataError(f"{where}: expected a collection of dialogue ids, got {type(obj).__name__}")


def _speaker_names(values: Any, where: str) -> list[str]:
    out = []
    for j, s in enumerate(values):
        if isinstance(s, str):
            out.append(s)
        else:
            arr = np.asarray(s, dtype=float).reshape(-1)
            if arr.size == 1:
                out.append(f"speaker{int(arr[0])}")
            elif arr.size > 1:
                out.append(f"speaker{int(arr.argmax())}")  # one-hot speaker vectors (COSMIC / DialogueRNN MELD)
            else:
                raise DataError(f"{where}, utterance {j}: empty speaker entry")
    return out


def _features(values: Any, k: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in values]), dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: not a list of equal-length feature vectors ({e})") from None
    if arr.shape[0] != k:
        raise DataError(f"{where}: {arr.shape[0]} feature rows for {k} utterances")
    return arr


def _build_conversations(path: Path, ids: list, *, speakers: dict, labels: dict, order: tuple[str, ...],
                         texts: dict | None, features: dict[str, dict], pos: Callable[[str], str],
                         repairs: _Repairs, utterance_ids: dict | None = None) -> list[Conversation]:
    convs = []
    for vid in ids:
        key = str(vid)
        for field, table in (("speakers", speakers), ("labels", labels)):
            if vid not in table:
                raise DataError(f"{path}: {pos(field)} has no entry for dialogue {vid!r}")
        spk = _speaker_names(speakers[vid], f"{path}: {pos('speakers')}[{vid!r}]")
        k = len(spk)
        lab = [label_index(y, order, where=f"{path}: {pos('labels')}[{vid!r}][{j}]") for j, y in enumerate(labels[vid])]
        if len(lab) != k:
            raise DataError(f"{path}: {pos('labels')}[{vid!r}] has {len(lab)} labels for {k} speakers")
        txt = None
        if texts is not None:
            if vid not in texts:
                raise DataError(f"{path}: {pos('sentences')} has no entry for dialogue {vid!r}")
            txt = [repairs(t, f"{path}: {pos('sentences')}[{vid!r}][{j}]") for j, t in enumerate(texts[vid])]
            if len(txt) != k:
                raise DataError(f"{path}: {pos('sentences')}[{vid!r}] has {len(txt)} sentences for {k} utterances")
        feats = {}
        for m, table in features.items():
            if vid not in table:
                raise DataError(f"{path}: {pos(m)} has no entry for dialogue {vid!r}")
            feats[m] = _features(table[vid], k, f"{path}: {pos(m)}[{vid!r}]")
        uids = [str(u) for u in utterance_ids[vid]] if utterance_ids is not None and vid in utterance_ids \
            else [f"{key}_{j}" for j in range(k)]
        if len(uids) != k:
            raise DataError(f"{path}: {pos('dia2utt')}[{vid!r}] has {len(uids)} utterance ids for {k} utterances")
        convs.append(Conversation(dialogue_id=key, utterance_ids=uids, speakers=spk, texts=txt, labels=lab,
                                  features=feats))
    return convs


# COSMIC: positions of the list, by length (6 = IEMOCAP, 7 = MELD).
COSMIC_LAYOUTS = {
    6: ("speakers", "labels", "sentences", "train", "test", "valid"),
    7: ("speakers", "labels", "sentiment", "sentences", "train", "test", "valid"),
}
# DialogueRNN / MMGCN / SDT tuples, by length.
DIALOGUERNN_LAYOUTS = {
    9: ("ids", "speakers", "labels", "text", "audio", "video", "sentences", "train", "test"),
    10: ("ids", "speakers", "labels", "text", "audio", "video", "sentences", "train", "test", "unused"),
    12: ("ids", "speakers", "labels", "text", "roberta2", "roberta3", "roberta4", "audio", "video", "sentences",
         "train", "test"),
    13: ("ids", "speakers", "labels", "text", "roberta2", "roberta3", "roberta4", "audio", "video", "sentences",
         "train", "test", "unused"),
}


def _positions(layout: tuple[str, ...], kind: str) -> Callable[[str], str]:
    return lambda name: f"{kind} position {layout.index(name)} ({name})"


def _sequence(obj: Any, path: Path, layouts: dict, kind: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    if not isinstance(obj, (list, tuple)):
        raise DataError(f"{path}: expected a {kind} of length {' or '.join(map(str, layouts))}, got {type(obj).__name__}")
    if len(obj) not in layouts:
        raise DataError(f"{path}: a {kind} of length {len(obj)}; expected length {' or '.join(map(str, layouts))} "
                        f"({'; '.join(f'{n}: ' + ', '.join(v) for n, v in layouts.items())})")
    layout = layouts[len(obj)]
    return layout, dict(zip(layout, obj))


def load_cosmic_pkl(path: str | Path, *, label_order: str | Sequence[str] | None = None,
                    classes: str | Sequence[str] | None = None, speaker_mode: SpeakerMode | None = None) -> ERCData:
    """COSMIC `feature-extraction/{meld,iemocap}/*.pkl` (text, speakers, labels, splits)."""
    path = Path(path)
    layout, f = _sequence(_load_pickle(path), path, COSMIC_LAYOUTS, "list")
    pos = _positions(layout, "list")
    iemocap = len(layout) == 6
    order = class_order(label_order or ("iemocap-cosmic" if iemocap else "meld-cosmic"))
    for name in ("speakers", "labels", "sentences"):
        _dict_at(f[name], f"{path}: {pos(name)}")
    repairs = _Repairs()
    splits = {s: _build_conversations(path, _ids_at(f[s], f"{path}: {pos(s)}"), speakers=f["speakers"],
                                      labels=f["labels"], order=order, texts=f["sentences"], features={}, pos=pos,
                                      repairs=repairs) for s in ("train", "valid", "test")}
    data = ERCData(splits=splits, classes=order, source="cosmic-pkl", path=str(path),
                   speaker_mode=speaker_mode or "per_dialogue", notes=repairs.note())
    return data.remap(class_order(classes)) if classes is not None else data


def load_dialoguernn_pkl(path: str | Path, *, label_order: str | Sequence[str] | None = None,
                         classes: str | Sequence[str] | None = None, speaker_mode: SpeakerMode | None = None,
                         valid_fraction: float = 0.0) -> ERCData:
    """DialogueRNN / MMGCN / SDT pickles: text, audio and video features per utterance, train/test ids.

    These files have no validation split; `valid_fraction` moves the last fraction of the (sorted)
    train dialogues into one (0 = none: training then needs a valid split from elsewhere).
    """
    path = Path(path)
    layout, f = _sequence(_load_pickle(path), path, DIALOGUERNN_LAYOUTS, "tuple")
    pos = _positions(layout, "tuple")
    meld = len(layout) in (10, 13)
    order = class_order(label_order or ("meld-cosmic" if meld else "iemocap-cosmic"))
    for name in ("speakers", "labels", "sentences", "text", "audio", "video"):
        _dict_at(f[name], f"{path}: {pos(name)}")
    repairs = _Repairs()
    feats = {"text": f["text"], "audio": f["audio"], "video": f["video"]}
    train_ids = _ids_at(f["train"], f"{path}: {pos('train')}")
    n_valid = int(round(len(train_ids) * valid_fraction))
    ids = {"train": train_ids[: len(train_ids) - n_valid], "test": _ids_at(f["test"], f"{path}: {pos('test')}")}
    if n_valid:
        ids["valid"] = train_ids[len(train_ids) - n_valid:]
    splits = {s: _build_conversations(path, v, speakers=f["speakers"], labels=f["labels"], order=order,
                                      texts=f["sentences"], features=feats, pos=pos, repairs=repairs)
              for s, v in ids.items()}
    notes = repairs.note() + ([f"valid = last {n_valid} train dialogues"] if n_valid else
                              ["no valid split in this format (valid_fraction=0)"])
    data = ERCData(splits=splits, classes=order, source="dialoguernn-pkl", path=str(path),
                   speaker_mode=speaker_mode or "per_dialogue", notes=notes)
    return data.remap(class_order(classes)) if classes is not None else data


MAGTKD_KEYS = ("text", "audio", "video", "audio_kd", "video_kd", "speakers", "labels", "vids", "dia2utt")


def load_magtkd_pkl(path: str | Path, *, label_order: str | Sequence[str] | None = None,
                    classes: str | Sequence[str] | None = None, speaker_mode: SpeakerMode | None = None,
                    split: str | None = None) -> ERCData:
    """MAGTKD's first-stage dict: `text, audio, video, audio_kd, video_kd` (dialogue id -> list of
    vectors), `speakers`, `labels`, `vids`, `dia2utt`. `vids` is either a dict split -> ids or one
    list (then `split`, default guessed from the file name, names it). Features become the modalities
    text, audio, video, audio_kd, video_kd."""
    path = Path(path)
    obj = _load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected MAGTKD's first-stage dict (keys {', '.join(MAGTKD_KEYS)}), got {type(obj).__name__}")
    missing = [k for k in ("speakers", "labels", "vids", "text") if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)} of MAGTKD's first-stage dict")
    pos = lambda name: f"key {name!r}"  # noqa: E731
    order = class_order(label_order or "meld-alphabetical")
    vids = obj["vids"]
    if isinstance(vids, dict):
        aliases = {"dev": "valid", "val": "valid"}
        ids = {aliases.get(str(k), str(k)): _ids_at(v, f"{path}: key 'vids'[{k!r}]") for k, v in vids.items()}
    else:
        if split is None:
            stem = path.stem.lower()
            split = next((s for s, words in _SPLIT_WORDS.items() if any(w in stem for w in words)), "test")
        ids = {split: _ids_at(vids, f"{path}: key 'vids'")}
    feats = {m: _dict_at(obj[m], f"{path}: key {m!r}") for m in ("text", "audio", "video", "audio_kd", "video_kd")
             if m in obj}
    repairs = _Repairs()
    dia2utt = _dict_at(obj["dia2utt"], f"{path}: key 'dia2utt'") if "dia2utt" in obj else None
    splits = {s: _build_conversations(path, v, speakers=_dict_at(obj["speakers"], f"{path}: key 'speakers'"),
                                      labels=_dict_at(obj["labels"], f"{path}: key 'labels'"), order=order, texts=None,
                                      features=feats, pos=pos, repairs=repairs, utterance_ids=dia2utt)
              for s, v in ids.items()}
    data = ERCData(splits=splits, classes=order, source="magtkd-pkl", path=str(path),
                   speaker_mode=speaker_mode or "global")
    return data.remap(class_order(classes)) if classes is not None else data


# ============================================================================ MERBench


_MERBENCH_NAME = re.compile(r"^(?:(?P<split>[a-z]+)_)?dia(?P<dia>\d+)_utt(?P<utt>\d+)$")
_TEXT_COLUMNS = ("english", "sentence", "text", "utterance", "Utterance", "chinese")


def load_merbench(path: str | Path, *, transcription: str | Path | None = None,
                  label_order: str | Sequence[str] | None = None, classes: str | Sequence[str] | None = None) -> ERCData:
    """MERBench `label.npz` (`train_corpus`/`val_corpus`/`test_corpus`: name -> {'emo', 'val'}) and a
    transcription CSV (`name` + a text column; default: the one CSV next to the npz). MERBench
    carries no speakers: every utterance gets the speaker "unknown" (fine for utterance-level work,
    not for speaker embeddings)."""
    import pandas as pd

    path = Path(path)
    order = class_order(label_order or "meld-merbench")
    try:
        npz = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    corpora = {"train": "train_corpus", "valid": "val_corpus", "test": "test_corpus"}
    missing = [k for k in corpora.values() if k not in npz.files]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; MERBench's label.npz has "
                        f"{', '.join(corpora.values())} (has {', '.join(npz.files) or 'none'})")
    texts: dict[str, str] | None = None
    if transcription is None:
        csvs = sorted(path.parent.glob("*.csv"))
        transcription = csvs[0] if len(csvs) == 1 else None
    repairs = _Repairs()
    if transcription is not None:
        tpath = Path(transcription)
        df = pd.read_csv(tpath, dtype=str, keep_default_na=False)
        col = next((c for c in _TEXT_COLUMNS if c in df.columns), None)
        if "name" not in df.columns or col is None:
            raise DataError(f"{tpath}: a transcription CSV needs a 'name' column and a text column "
                            f"({' / '.join(_TEXT_COLUMNS)}); has {', '.join(df.columns)}")
        texts = {n: repairs(t, f"{tpath}, name {n!r}, column {col}") for n, t in zip(df["name"], df[col])}
    splits = {}
    for split, key in corpora.items():
        table = npz[key]
        table = table.item() if isinstance(table, np.ndarray) and table.dtype == object and table.shape == () else table
        if not isinstance(table, dict):
            raise DataError(f"{path}: key {key!r} should hold a dict name -> {{'emo', 'val'}}, got {type(table).__name__}")
        dialogues: dict[str, list[tuple[int, str, int]]] = {}
        for name, entry in table.items():
            m = _MERBENCH_NAME.match(str(name))
            if m is None:
                raise DataError(f"{path}: key {key!r}, name {name!r} is not like 'train_dia0_utt0'")
            if not isinstance(entry, dict) or "emo" not in entry:
                raise DataError(f"{path}: key {key!r}[{name!r}] should be a dict with 'emo', got {entry!r}")
            y = label_index(entry["emo"], order, where=f"{path}: key {key!r}[{name!r}]['emo']")
            dialogues.setdefault(m.group("dia"), []).append((int(m.group("utt")), str(name), y))
        convs = []
        for did in sorted(dialogues, key=_sort_key):
            rows = sorted(dialogues[did])
            txt = None
            if texts is not None:
                absent = [n for _, n, _ in rows if n not in texts]
                if absent:
                    raise DataError(f"{transcription}: no transcription for {absent[0]!r} (and {len(absent) - 1} more)")
                txt = [texts[n] for _, n, _ in rows]
            convs.append(Conversation(dialogue_id=did, utterance_ids=[n for _, n, _ in rows],
                                      speakers=["unknown"] * len(rows), texts=txt, labels=[y for *_, y in rows]))
        splits[split] = convs
    data = ERCData(splits=splits, classes=order, source="merbench-npz", path=str(path), speaker_mode="global",
                   notes=repairs.note() + ["MERBench has no speakers: one speaker 'unknown'"])
    return data.remap(class_order(classes)) if classes is not None else data


# ============================================================================ dispatch


def detect_source(path: str | Path) -> str:
    """The format of `path` from its kind and layout."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() == ".csv":
        return "meld-csv"
    if path.suffix.lower() == ".npz":
        return "merbench-npz"
    obj = _load_pickle(path)
    if isinstance(obj, dict):
        return "magtkd-pkl"
    if isinstance(obj, (list, tuple)) and len(obj) in COSMIC_LAYOUTS:
        return "cosmic-pkl"
    if isinstance(obj, (list, tuple)) and len(obj) in DIALOGUERNN_LAYOUTS:
        return "dialoguernn-pkl"
    raise DataError(f"{path}: not a known ERC format ({', '.join(SOURCES)}): a "
                    f"{type(obj).__name__}{f' of length {len(obj)}' if hasattr(obj, '__len__') else ''}")


def load_erc(path: str | Path, *, source: str = "auto", classes: str | Sequence[str] | None = None,
             label_order: str | Sequence[str] | None = None, speaker_mode: SpeakerMode | None = None,
             **kwargs: Any) -> ERCData:
    """Load any supported ERC format (`source="auto"` detects it)."""
    src = detect_source(path) if source == "auto" else source
    if src == "meld-csv":
        if label_order is not None:
            raise DataError("label_order does not apply to CSVs (their labels are class names); use classes")
        return load_conversation_csv(path, classes=classes, speaker_mode=speaker_mode)
    if src == "cosmic-pkl":
        return load_cosmic_pkl(path, label_order=label_order, classes=classes, speaker_mode=speaker_mode)
    if src == "dialoguernn-pkl":
        return load_dialoguernn_pkl(path, label_order=label_order, classes=classes, speaker_mode=speaker_mode, **kwargs)
    if src == "magtkd-pkl":
        return load_magtkd_pkl(path, label_order=label_order, classes=classes, speaker_mode=speaker_mode, **kwargs)
    if src == "merbench-npz":
        return load_merbench(path, label_order=label_order, classes=classes, **kwargs)
    raise DataError(f"unknown ERC source {src!r}; known: {', '.join(SOURCES)}")
