"""Conversations for emotion recognition in conversation (ERC): the in-memory form every loader returns.

A `Conversation` is one dialogue in temporal order; `ERCData` holds the splits ("train", "valid",
"test") with an explicit, ordered class list: four different label orders are in circulation for
the same corpora (notes/neighbour-systems.md §1.3), so an integer label is only ever read through
a named order (`CLASS_ORDERS`) and re-mapped by class *name* onto the order the caller asks for.

Text is repaired once here: copies of MELD carry the typographic apostrophe mis-decoded as the C1
control character U+0092 (cp1252 bytes read as Latin-1); every U+0080–U+009F is mapped through
cp1252 (`repair_text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from ...errors import DataError

SPLITS = ("train", "valid", "test")
SpeakerMode = Literal["global", "per_dialogue"]

# The orders in circulation, by name. Index i of a file's integer labels means CLASS_ORDERS[order][i].
CLASS_ORDERS: dict[str, tuple[str, ...]] = {
    # MELD's own paper order; COSMIC's meld.pkl and the DialogueRNN/MMGCN pickles use it.
    "meld-cosmic": ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"),
    # MAGTKD's MELD code (sorted names).
    "meld-alphabetical": ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"),
    # MERBench's meld-process label.npz.
    "meld-merbench": ("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise"),
    # IEMOCAP: COSMIC / DialogueRNN pickles, and MAGTKD's (sorted) order.
    "iemocap-cosmic": ("hap", "sad", "neu", "ang", "exc", "fru"),
    "iemocap-alphabetical": ("ang", "exc", "fru", "hap", "neu", "sad"),
}
# IEMOCAP spellings met in CSVs, folded onto the three-letter names.
_ALIASES = {"happy": "hap", "happiness": "hap", "sadness": "sad", "neutral": "neu", "angry": "ang", "anger": "ang",
            "excited": "exc", "excitement": "exc", "frustrated": "fru", "frustration": "fru"}


def class_order(order: str | Sequence[str]) -> tuple[str, ...]:
    """A named order (`CLASS_ORDERS`) or an explicit list of class names."""
    if isinstance(order, str):
        if order not in CLASS_ORDERS:
            raise DataError(f"unknown class order {order!r}; known orders: {', '.join(CLASS_ORDERS)} "
                            "(or give the class names as a list)")
        return CLASS_ORDERS[order]
    names = tuple(str(c) for c in order)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"a class order needs at least 2 distinct names, got {list(names)}")
    return names


def repair_text(text: str) -> str:
    """Map C1 control characters U+0080–U+009F through cp1252 ('company\\x92s' -> 'company’s')."""
    if not any("\x80" <= ch <= "\x9f" for ch in text):
        return text
    out = []
    for ch in text:
        if "\x80" <= ch <= "\x9f":
            try:
                ch = bytes([ord(ch)]).decode("cp1252")
            except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in cp1252
                pass
        out.append(ch)
    return "".join(out)


def count_repairable(text: str) -> int:
    return sum("\x80" <= ch <= "\x9f" for ch in text)


@dataclass
class Conversation:
    """One dialogue, utterances in temporal order. K = number of utterances."""

    dialogue_id: str
    utterance_ids: list[str]
    speakers: list[str]  # raw speaker names / tags (ids come from ERCData.speaker_ids)
    texts: list[str] | None  # repaired; None when the source has no text
    labels: list[int] | None  # indices into ERCData.classes; None for unlabelled data
    features: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (K, d) float32

    def __len__(self) -> int:
        return len(self.utterance_ids)


@dataclass
class ERCData:
    """Splits of conversations over one ordered class list."""

    splits: dict[str, list[Conversation]]
    classes: tuple[str, ...]
    source: str  # the format name ("meld-csv", "cosmic-pkl", ...)
    path: str
    speaker_mode: SpeakerMode = "global"
    notes: list[str] = field(default_factory=list)  # what the loader repaired or assumed
    fixed_vocab: dict[str, int] | None = None  # a trained run's speaker vocabulary (global mode), reused on new data

    def __getitem__(self, split: str) -> list[Conversation]:
        if split not in self.splits:
            raise DataError(f"{self.path}: no split {split!r} (has {', '.join(self.splits)})")
        return self.splits[split]

    @property
    def speaker_vocab(self) -> dict[str, int]:
        """Global ids: speakers in order of first appearance, train first (padding uses its own id)."""
        if self.fixed_vocab is not None:
            return self.fixed_vocab
        vocab: dict[str, int] = {}
        for split in sorted(self.splits, key=lambda s: (SPLITS.index(s) if s in SPLITS else 9, s)):
            for conv in self.splits[split]:
                for s in conv.speakers:
                    vocab.setdefault(s, len(vocab))
        return vocab

    def speaker_ids(self, conv: Conversation, vocab: Mapping[str, int] | None = None) -> list[int]:
        """Speaker ids of `conv`: global (`vocab`, default this data's) or per dialogue (order of first appearance)."""
        if self.speaker_mode == "per_dialogue":
            local: dict[str, int] = {}
            return [local.setdefault(s, len(local)) for s in conv.speakers]
        vocab = self.speaker_vocab if vocab is None else vocab
        return [vocab.get(s, len(vocab)) for s in conv.speakers]  # unseen speaker -> one shared "unknown" id

    def n_speakers(self) -> int:
        if self.speaker_mode == "per_dialogue":
            return max((len(set(c.speakers)) for convs in self.splits.values() for c in convs), default=1)
        return len(self.speaker_vocab) + 1  # + unknown

    def remap(self, classes: Sequence[str]) -> "ERCData":
        """The same data with labels re-indexed onto `classes` (same names, another order)."""
        classes = class_order(classes)
        if sorted(classes) != sorted(self.classes):
            raise DataError(f"{self.path}: cannot re-order classes {list(self.classes)} as {list(classes)} "
                            "(the names differ)")
        index = {c: i for i, c in enumerate(classes)}
        perm = [index[c] for c in self.classes]
        for convs in self.splits.values():
            for conv in convs:
                if conv.labels is not None:
                    conv.labels = [perm[y] for y in conv.labels]
        self.classes = classes
        return self

    def summary(self) -> dict:
        """Per split: dialogues, utterances, speakers, label histogram, length range, feature dims."""
        out: dict = {"source": self.source, "path": self.path, "classes": list(self.classes),
                     "speaker_mode": self.speaker_mode, "splits": {}, "notes": list(self.notes)}
        for name, convs in self.splits.items():
            lens = [len(c) for c in convs] or [0]
            hist = {c: 0 for c in self.classes}
            labelled = 0
            for conv in convs:
                for y in conv.labels or []:
                    hist[self.classes[y]] += 1
                    labelled += 1
            dims = {m: int(f.shape[1]) for m, f in (convs[0].features.items() if convs else [])}
            out["splits"][name] = {
                "dialogues": len(convs), "utterances": int(sum(len(c) for c in convs)),
                "speakers": len({s for c in convs for s in c.speakers}),
                "utterances_per_dialogue": {"min": min(lens), "mean": round(float(np.mean(lens)), 2), "max": max(lens)},
                "labels": hist if labelled else None, "features": dims,
            }
        return out


def label_index(value: object, order: tuple[str, ...], *, where: str) -> int:
    """A label as an index into `order`: an integer index, or a class name (IEMOCAP aliases folded)."""
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{where}: label {value!r} is not a class index or name")
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        i = int(value)
        if not 0 <= i < len(order):
            raise DataError(f"{where}: label {i} is outside 0..{len(order) - 1} of the class order {list(order)}")
        return i
    if isinstance(value, str):
        name = value.strip().lower()
        name = name if name in order else _ALIASES.get(name, name)
        if name in order:
            return order.index(name)
        raise DataError(f"{where}: label {value!r} is not one of the classes {list(order)}")
    raise DataError(f"{where}: label {value!r} ({type(value).__name__}) is not a class index or name")
