"""Load and validate MMSA processed feature pickles (DESIGN.md §3).

An MMSA pickle (`aligned_50.pkl`, `unaligned_50.pkl`, `unaligned_39.pkl`) is a dict with splits
`train` / `valid` / `test`, each a dict of arrays. deepmlf reads `raw_text`, `audio`, `vision`,
`audio_lengths`, `vision_lengths`, `regression_labels` and `id`; everything else (`text`,
`text_bert`, `annotations`, `classification_labels`, SIMS `regression_labels_T/A/V`) is ignored.

Every check names the file, split and key, and says what was expected, so a user with a
hand-made or truncated file learns what to fix instead of meeting a bare KeyError deep inside
training. Repairs that real files need (NaN/±inf in MOSEI COVAREP audio, missing `*_lengths`
in some `aligned_50.pkl` versions, missing `id`) are made and reported in `MMSAData.notes`.

Pickles can run code when loaded. deepmlf therefore reads them with a restricted unpickler that
admits only numpy arrays, numbers, strings, lists and dicts (`SafeUnpickler`): a file that asks
for anything else (a function, a class) is refused before it runs. `deepmlf data convert IN.pkl
OUT.safetensors` writes the same content as safetensors (arrays) + JSON (text) in one file, which
every command reads like the pickle and which holds no code at all (`deepmlf.data.safe_format`).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .corpora import (
    DATASETS,
    FAMILY,
    LABEL_RANGES,
    LABEL_SLACK,
    MOSI_LIKE,
    STANDARD_DIMS,
    UNIMODAL_LABEL_KEYS,
    DatasetInference,
    check_dataset,
    infer_dataset,
)

SPLITS = ("train", "valid", "test")

_MODALITIES = ("audio", "vision")
FEATURE_SET_KEY = "feature_set"  # top-level record of `deepmlf features extract` (deepmlf.features.registry)
_USED_KEYS = ("raw_text", "audio", "vision", "audio_lengths", "vision_lengths", "regression_labels", "id")
_CHUNK = 256  # samples per chunk when scanning features: bounds temporary masks on multi-GB MOSEI arrays
_PROGRESS_MIN_BYTES = 256 * 2**20  # show a read progress bar for files at least this large
# Features beyond this magnitude are a scaling bug (raw sample counts, a 1e30 fill value): a value
# of 1e30 trained silently to a loss of 4.7e26 (issue 9, item 10). Real MMSA features stay < 1e4.
SANE_MAGNITUDE = 1e6


@dataclass(eq=False)
class Split:
    """One split of an MMSA pickle, validated. N samples, La/Lv raw frames, Da/Dv feature dims."""

    name: str  # "train", "valid" or "test"
    raw_text: list[str]  # (N,) transcripts, tokenised on the fly by the collate function
    audio: np.ndarray  # (N, La, Da) float32, non-finite values replaced by 0
    audio_lengths: np.ndarray  # (N,) int64 in [1, La]: real frames
    vision: np.ndarray  # (N, Lv, Dv) float32
    vision_lengths: np.ndarray  # (N,) int64 in [1, Lv]
    labels: np.ndarray  # (N,) float32 sentiment scores; NaN when the file has none (prediction only)
    ids: list[str]  # (N,) sample ids, as in the pickle's `id` (or `<split>-<index>` when it has none)
    nonfinite_replaced: dict[str, int] = field(default_factory=dict)  # key -> NaN/±inf values set to 0
    has_labels: bool = True  # False when `regression_labels` was absent (require_labels=False)

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    @property
    def audio_dim(self) -> int:
        return int(self.audio.shape[2])

    @property
    def vision_dim(self) -> int:
        return int(self.vision.shape[2])

    @property
    def audio_len(self) -> int:
        """La: frames per sample in the array (real frames are `audio_lengths`)."""
        return int(self.audio.shape[1])

    @property
    def vision_len(self) -> int:
        return int(self.vision.shape[1])

    def __repr__(self) -> str:
        return (
            f"Split({self.name!r}, n={len(self)}, audio={tuple(self.audio.shape)}, "
            f"vision={tuple(self.vision.shape)}, has_labels={self.has_labels})"
        )


class MissingSplitError(DataError, KeyError):
    """`data[name]` for a split the file does not hold (a KeyError too, so Mapping idioms keep working)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class MMSAData(dict):
    """The validated splits of one file (a `dict[str, Split]`) plus what the loader found out.

    `data["train"]` is the train `Split`; `notes` lists every repair and inference the loader made
    (the load report); `dataset` is the corpus ("mosi", "mosei", "sims", "simsv2") or None when
    neither the caller nor the file identified it; `inference` is what the file itself shows (shared
    by `data inspect` and training) and `family` its label range / metric set ("mosi" or "sims").
    """

    def __init__(
        self,
        splits: Mapping[str, Split],
        *,
        path: str,
        dataset: str | None,
        label_range: tuple[float, float],
        notes: list[str],
        feature_set: dict[str, Any] | None = None,
        inference: DatasetInference | None = None,
    ) -> None:
        super().__init__(splits)
        self.path = path
        self.dataset = dataset
        self.label_range = label_range
        self.notes = notes
        # What made the features (`deepmlf features extract` records it; None for MMSA's own files).
        self.feature_set = feature_set
        self.inference = inference

    @property
    def family(self) -> str | None:
        """"mosi" (labels in [-3, 3], MOSI/MOSEI metrics) or "sims" ([-1, 1]); None when undecided."""
        if self.dataset is not None:
            return FAMILY[self.dataset]
        return self.inference.family if self.inference is not None else None

    @property
    def splits(self) -> dict[str, Split]:
        return dict(self)

    @property
    def dataset_label(self) -> str:
        """The corpus for display: its name, or "mosi/mosei-like" / "sims-like" when only the family is known."""
        if self.dataset is not None:
            return self.dataset
        return "sims-like (CH-SIMS or v2)" if self.family == "sims" else MOSI_LIKE

    def __missing__(self, key: str) -> Split:
        raise MissingSplitError(f"{self.path}: no split {key!r}; the file holds: {', '.join(self) or 'none'}")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.items())
        return f"MMSAData({self.path!r}, dataset={self.dataset_label!r}, {sizes})"


# --------------------------------------------------------------------------------------- public API
def load_mmsa(path: str | Path, *, dataset: str | None = None, require_labels: bool = True) -> MMSAData:
    """Read and validate an MMSA processed pickle.

    dataset: "mosi", "mosei", "sims", "simsv2", or None / "infer" to infer it from the file (`corpora.infer_dataset`);
        a named dataset that the file contradicts is a DataError naming both.
    require_labels: True for training/evaluation (all three splits, each with `regression_labels`);
        False for prediction on new data (any non-empty subset of the splits; absent labels -> NaN).
    Raises DataError naming the file, split and key for anything that is not MMSA layout.
    """
    path = Path(path)
    obj = _read_pickle(path)
    return mmsa_from_dict(obj, source=str(path), dataset=dataset, require_labels=require_labels)


def mmsa_from_dict(
    obj: Any, *, source: str = "<in-memory>", dataset: str | None = None, require_labels: bool = True
) -> MMSAData:
    """Validate an already-unpickled MMSA dict (as `load_mmsa` does after reading the file).

    Feature arrays that are already float32 are used in place (NaN/±inf replaced in place), so
    the caller's dict should not be reused for anything else.
    """
    if dataset == "infer":  # config.DATASET_INFER: the file decides
        dataset = None
    if dataset is not None and dataset not in DATASETS:
        raise ConfigError(f"dataset={dataset!r}: expected one of {', '.join(DATASETS)} (or None to infer it)")
    if not isinstance(obj, Mapping):
        raise DataError(
            f"{source}: expected a dict with splits {', '.join(SPLITS)} (MMSA layout); found {type(obj).__name__}"
        )
    keys = [str(k) for k in obj]
    if "audio" in obj and "vision" in obj:
        raise DataError(
            f"{source}: the top level holds feature keys ({', '.join(keys)}), not splits; "
            f"MMSA files nest them as {{'train': {{...}}, 'valid': {{...}}, 'test': {{...}}}}"
        )
    present = [s for s in SPLITS if s in obj]
    if require_labels:
        missing = [s for s in SPLITS if s not in obj]
        if missing:
            raise DataError(
                f"{source}: missing split {', '.join(repr(s) for s in missing)}; expected train, valid, test; "
                f"found keys: {', '.join(keys) or 'none'}"
            )
    elif not present:
        raise DataError(
            f"{source}: holds none of the splits {', '.join(SPLITS)}; found keys: {', '.join(keys) or 'none'}"
        )

    notes: list[str] = []
    feature_set = _feature_set(obj.get(FEATURE_SET_KEY), source, notes)
    other_top = [k for k in keys if k not in SPLITS and k != FEATURE_SET_KEY]
    if other_top:
        notes.append(f"ignored top-level keys: {', '.join(other_top)}")
    splits = {name: _parse_split(obj[name], name, source, require_labels, notes) for name in present}
    ignored = sorted({str(k) for name in present for k in obj[name] if k not in _USED_KEYS})
    if ignored:
        notes.append(f"ignored keys (not used by deepmlf): {', '.join(ignored)}")

    _check_dims_agree(splits, source)
    inference = _infer(splits, obj, present)
    dataset, inference_note = _resolve_dataset(splits, dataset, inference)
    if inference_note:
        notes.append(inference_note)
    family = FAMILY[dataset] if dataset else inference.family
    label_range = LABEL_RANGES["sims" if family == "sims" else "mosi"]
    for split in splits.values():
        _check_label_range(split, source, dataset, label_range)
    if dataset is not None:
        check_dataset(dataset, inference, source)  # after the label check: its message is the clearer one
    return MMSAData(splits, path=source, dataset=dataset, label_range=label_range, notes=notes, feature_set=feature_set,
                    inference=inference)


def _feature_set(meta: Any, source: str, notes: list[str]) -> dict[str, Any] | None:
    """The top-level `feature_set` record of an extracted pickle (MMSA ignores the key)."""
    if meta is None:
        return None
    if not isinstance(meta, Mapping) or not isinstance(meta.get("id"), str) or not isinstance(meta.get("fingerprint"), str):
        raise DataError(f"{source}: key 'feature_set': expected the dict `deepmlf features extract` writes "
                        f"(with 'id' and 'fingerprint'); found {type(meta).__name__}")
    notes.append(f"features from feature set {meta['id']} (audio {meta.get('audio_dim')}-d, vision {meta.get('vision_dim')}-d)")
    return dict(meta)


# --------------------------------------------------------------------------------------- reading
PICKLE_RISK = (
    "MMSA pickles are Python pickles, and a pickle can run code when it is loaded: deepmlf admits only "
    "numpy arrays, numbers, strings, lists and dicts from them; convert a file you trust once with "
    "`deepmlf data convert IN.pkl OUT.safetensors` and use OUT from then on"
)

# (module, name) a plain MMSA pickle needs: numpy's array and scalar rebuilders, and the bytes
# decoder protocol-2 pickles use for array buffers. None of them calls anything a file names.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
    ("__builtin__", "set"), ("__builtin__", "frozenset")
}


class UnsafePickleError(DataError):
    """A pickle asked for a global outside the admitted numpy/builtin set (it could run code)."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays, numbers, strings, lists and dicts only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafePickleError(f"{module}.{name}")


def _read_pickle(path: Path) -> Any:
    if path.is_file() and _is_safetensors(path):
        from .safe_format import read_safe

        return read_safe(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected an MMSA pickle such as unaligned_50.pkl)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected an MMSA pickle file such as unaligned_50.pkl")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: file is empty; expected an MMSA pickle")
    try:
        return _unpickle(path, size, encoding="ASCII")
    except UnicodeDecodeError:
        # Python 2 pickles hold numpy buffers as str; latin1 is numpy's documented way to read them.
        try:
            return _unpickle(path, size, encoding="latin1")
        except UnsafePickleError as e:
            raise _unsafe(path, e) from None
        except Exception as e:  # noqa: BLE001 - any failure here means "not a readable pickle"
            raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); {PICKLE_RISK}") from None
    except UnsafePickleError as e:
        raise _unsafe(path, e) from None
    except ModuleNotFoundError as e:
        raise DataError(
            f"{path}: the pickle needs module {e.name!r}, which is not installed "
            "(files written with numpy>=2 need numpy>=2 to read)"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, ValueError, ... all mean the same to the user
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); {PICKLE_RISK}") from None


def _unsafe(path: Path, e: UnsafePickleError) -> DataError:
    return UnsafePickleError(
        f"{path}: refused to load: the pickle asks for {e}, which is not a numpy array, number, string, list or "
        "dict, so loading it could run code; nothing from it was run. If you made the file yourself and trust "
        "it, convert it once with `deepmlf data convert IN.pkl OUT.safetensors --trust-pickle` and use OUT"
    )


def safe_pickle_load(fh: Any, path: str | Path, *, encoding: str = "ASCII") -> Any:
    """`pickle.load` through `SafeUnpickler` for other readers of pickled arrays (ERC files, feature
    pickles); a forbidden global is the same DataError as for MMSA files."""
    try:
        return SafeUnpickler(fh, encoding=encoding).load()
    except UnsafePickleError as e:
        raise _unsafe(Path(path), e) from None


def _is_safetensors(path: Path) -> bool:
    """safetensors: 8-byte little-endian header size, then a JSON header (a pickle starts with 0x80)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_pickle_unrestricted(path: str | Path) -> Any:
    """Plain `pickle.load`, for `deepmlf data convert --trust-pickle` on a file the user vouches for."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return pickle.load(f)
        except UnicodeDecodeError:
            pass
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _unpickle(path: Path, size: int, *, encoding: str) -> Any:
    # MOSEI unaligned files are multi-GB: show read progress (on a terminal) for large files.
    disable = True if size < _PROGRESS_MIN_BYTES else None
    with open(path, "rb") as f, tqdm(
        total=size, desc=f"reading {path.name}", unit="B", unit_scale=True, disable=disable, leave=False
    ) as bar:
        return SafeUnpickler(_ProgressReader(f, bar), encoding=encoding).load()


class _ProgressReader:
    """The file methods the unpickler uses, each advancing a progress bar.

    (tqdm.wrapattr wraps `read` only, but numpy buffers arrive through `readinto`.)
    """

    def __init__(self, f: Any, bar: tqdm) -> None:
        self._f, self._bar = f, bar

    def read(self, n: int = -1) -> bytes:
        out = self._f.read(n)
        self._bar.update(len(out))
        return out

    def readinto(self, buf: Any) -> int:
        k = self._f.readinto(buf)
        self._bar.update(k or 0)
        return k

    def readline(self) -> bytes:
        out = self._f.readline()
        self._bar.update(len(out))
        return out


# --------------------------------------------------------------------------------------- one split
def _parse_split(raw: Any, name: str, source: str, require_labels: bool, notes: list[str]) -> Split:
    where = f"{source}: split {name!r}"
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: expected a dict of arrays (raw_text, audio, vision, ...); found {type(raw).__name__}")
    required = ["raw_text", "audio", "vision"] + (["regression_labels"] if require_labels else [])
    for key in required:
        if key not in raw:
            raise DataError(
                f"{where}: missing key {key!r}; expected {', '.join(required)}; "
                f"found keys: {', '.join(map(str, raw)) or 'none'}"
            )

    # Sample counts first: cheap, and the most common sign of a hand-assembled file gone wrong.
    counts: dict[str, int] = {}
    for key in _USED_KEYS:
        if key in raw:
            counts[key] = _count(raw[key], f"{where}: key {key!r}")
    n = counts["audio"]
    for key, c in counts.items():
        if c != n:
            raise DataError(f"{where}: sample counts differ: 'audio' has {n} samples but {key!r} has {c}")
    if n == 0:
        raise DataError(f"{where}: holds no samples")

    features: dict[str, np.ndarray] = {}
    nonfinite: dict[str, int] = {}
    for key in _MODALITIES:
        features[key] = _features(raw[key], f"{where}: key {key!r}")
        nonfinite[key] = _replace_nonfinite(features[key])
        if nonfinite[key]:
            notes.append(f"{name}: replaced {nonfinite[key]} non-finite values (NaN/±inf) in {key} with 0")
        if nonfinite[key] == features[key].size:
            notes.append(f"warning: {name}: every {key} value was non-finite (NaN/±inf), so the whole modality is "
                         "now 0 and carries no information; check how the file was made")
        big, largest = _count_large(features[key])
        if big:
            notes.append(f"warning: {name}: {big} {key} value(s) exceed {SANE_MAGNITUDE:g} in magnitude (largest "
                         f"{largest:.3g}); features this large make the loss explode: check how they were scaled")

    lengths: dict[str, np.ndarray] = {}
    for key in _MODALITIES:
        lkey = f"{key}_lengths"
        if lkey in raw:
            lengths[key] = _lengths(raw[lkey], features[key].shape[1], f"{where}: key {lkey!r}", name, lkey, notes)
        else:
            lengths[key] = _derive_lengths(features[key])
            notes.append(f"{name}: no {lkey!r}; derived as the last non-zero {key} frame + 1 (min 1)")

    if "regression_labels" in raw:
        labels = _labels(raw["regression_labels"], n, f"{where}: key 'regression_labels'")
        has_labels = True
    else:
        labels = np.full(n, np.nan, dtype=np.float32)
        has_labels = False
        notes.append(f"{name}: no 'regression_labels'; labels are NaN (prediction only)")

    if "id" in raw:
        ids = _strings(raw["id"], f"{where}: key 'id'", name, "id", notes)
    else:
        ids = [f"{name}-{i}" for i in range(n)]
        notes.append(f"{name}: no 'id'; generated ids {name}-0 .. {name}-{n - 1}")
    if len(set(ids)) != n:
        notes.append(f"{name}: {n - len(set(ids))} duplicate ids")

    return Split(
        name=name,
        raw_text=_strings(raw["raw_text"], f"{where}: key 'raw_text'", name, "raw_text", notes),
        audio=features["audio"],
        audio_lengths=lengths["audio"],
        vision=features["vision"],
        vision_lengths=lengths["vision"],
        labels=labels,
        ids=ids,
        nonfinite_replaced=nonfinite,
        has_labels=has_labels,
    )


def _count(value: Any, where: str) -> int:
    if isinstance(value, (str, bytes)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        # len() of one string is its character count: N one-character transcripts, silently.
        raise DataError(f"{where}: expected one entry per sample (a list or array); found a single "
                        f"{type(value).__name__} {value!r:.60}")
    try:
        return len(value)
    except TypeError:
        raise DataError(f"{where}: expected one entry per sample; found {type(value).__name__} {value!r:.60}") from None


def _features(value: Any, where: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except ValueError:  # ragged lists of frames
        raise DataError(f"{where}: expected a 3-D array (N, L, D); found ragged sequences") from None
    if a.ndim != 3:
        raise DataError(f"{where}: expected a 3-D array (N, L, D) of frames; found shape {tuple(a.shape)}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{where}: expected numeric features; found dtype {a.dtype}")
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise DataError(f"{where}: expected at least one frame and one feature; found shape {tuple(a.shape)}")
    if a.dtype != np.float32:
        a = a.astype(np.float32)  # the one conversion: float64 pickles become float32 once
    elif not a.flags.writeable:
        a = a.copy()
    return a


def _replace_nonfinite(a: np.ndarray) -> int:
    """Set NaN/±inf to 0 in place (real MOSEI COVAREP audio holds -inf); return how many."""
    replaced = 0
    for start in range(0, a.shape[0], _CHUNK):
        block = a[start : start + _CHUNK]  # a view: assignments write through
        bad = ~np.isfinite(block)
        k = int(np.count_nonzero(bad))
        if k:
            block[bad] = 0.0
            replaced += k
    return replaced


def _derive_lengths(a: np.ndarray) -> np.ndarray:
    """Real frames = index of the last frame with any non-zero value + 1; all-zero samples get 1."""
    n, seq_len, _ = a.shape
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        nonzero = np.any(a[start : start + _CHUNK] != 0, axis=2)  # (b, L)
        last = seq_len - np.argmax(nonzero[:, ::-1], axis=1)
        out[start : start + _CHUNK] = np.where(nonzero.any(axis=1), last, 1)
    return out


def _lengths(value: Any, seq_len: int, where: str, split: str, key: str, notes: list[str]) -> np.ndarray:
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected integer frame counts; found non-numeric values") from None
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise DataError(f"{where}: expected shape (N,); found {tuple(x.shape)}")
    if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
        i = int(np.flatnonzero(~np.isfinite(x) | (x != np.round(x)))[0])
        raise DataError(f"{where}: expected integer frame counts; sample {i} has {x[i]}")
    bad = (x < 0) | (x > seq_len)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: expected lengths in [0, {seq_len}] (the array holds {seq_len} frames); "
            f"{int(bad.sum())} outside, e.g. sample {i} has {int(x[i])}"
        )
    out = x.astype(np.int64)
    zeros = int(np.count_nonzero(out == 0))
    if zeros:
        out[out == 0] = 1  # pooling needs one frame; a 0-length sample is all padding (zeros) anyway
        notes.append(f"{split}: {zeros} {key} of 0 set to 1")
    return out


def _labels(value: Any, n: int, where: str) -> np.ndarray:
    try:
        y = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected numeric sentiment scores; found non-numeric values") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: expected shape (N,) or (N, 1); found {tuple(y.shape)}")
    finite = np.isfinite(y)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{where}: {int((~finite).sum())} non-finite labels, e.g. sample {i} has {y[i]}")
    return y.astype(np.float32)


def _count_large(a: np.ndarray) -> tuple[int, float]:
    """(values with |x| > SANE_MAGNITUDE, the largest |x|), chunked like the non-finite scan."""
    big, largest = 0, 0.0
    for start in range(0, a.shape[0], _CHUNK):
        block = np.abs(a[start : start + _CHUNK])
        k = int(np.count_nonzero(block > SANE_MAGNITUDE))
        if k:
            big += k
            largest = max(largest, float(block.max()))
    return big, largest


def clean_text(s: str) -> tuple[str, bool]:
    """`s` with every lone surrogate (not encodable as UTF-8; tokenizers crash on it) replaced by U+FFFD."""
    try:
        s.encode("utf-8")
        return s, False
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s), True


def _strings(value: Any, where: str, split: str = "", key: str = "", notes: list[str] | None = None) -> list[str]:
    out: list[str] = []
    repaired = 0
    for i, v in enumerate(value):
        if isinstance(v, str):
            text, fixed = clean_text(str(v))  # np.str_ -> str
            repaired += fixed
            out.append(text)
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8", errors="replace"))
        elif isinstance(v, (int, np.integer)):
            out.append(str(v))
        else:
            raise DataError(f"{where}: expected strings; sample {i} is {type(v).__name__} {v!r:.60}")
    if repaired and notes is not None:
        notes.append(f"{split}: {repaired} {key} value(s) held characters not encodable as UTF-8 (lone surrogates), "
                     "replaced with U+FFFD")
    return out


# --------------------------------------------------------------------------------------- across splits
def _check_dims_agree(splits: dict[str, Split], source: str) -> None:
    first = next(iter(splits.values()))
    for split in splits.values():
        for key in _MODALITIES:
            d0, d = getattr(first, f"{key}_dim"), getattr(split, f"{key}_dim")
            if d != d0:
                raise DataError(
                    f"{source}: key {key!r}: feature dim differs across splits: "
                    f"{first.name!r} has {d0}, {split.name!r} has {d}"
                )


def _infer(splits: dict[str, Split], obj: Mapping, present: list[str]) -> DatasetInference:
    first = next(iter(splits.values()))
    labelled = [s.labels for s in splits.values() if s.has_labels]
    return infer_dataset(
        audio_dim=first.audio_dim,
        vision_dim=first.vision_dim,
        label_min=min((float(y.min()) for y in labelled), default=None),
        label_max=max((float(y.max()) for y in labelled), default=None),
        has_unimodal_labels=all(all(k in obj[name] for k in UNIMODAL_LABEL_KEYS) for name in present),
    )


def _resolve_dataset(
    splits: dict[str, Split], dataset: str | None, inference: DatasetInference
) -> tuple[str | None, str | None]:
    """The caller's dataset, or the one the file shows; plus a note saying how it was decided."""
    first = next(iter(splits.values()))
    dims = (first.audio_dim, first.vision_dim)
    if dataset is not None:
        if dataset in STANDARD_DIMS and dims != STANDARD_DIMS[dataset]:
            return dataset, (
                f"feature dims (audio {dims[0]}, vision {dims[1]}) differ from the standard {dataset} features "
                f"(audio {STANDARD_DIMS[dataset][0]}, vision {STANDARD_DIMS[dataset][1]}); fine for custom features"
            )
        return dataset, None
    aside = f" (set aside: {'; '.join(inference.set_aside)})" if inference.set_aside else ""
    if inference.dataset is not None:
        return inference.dataset, f"dataset inferred as {inference.dataset}: {inference.describe()}{aside}"
    if inference.family == "sims":
        return None, (
            f"dataset not given and not told apart between sims and simsv2 ({inference.describe()}){aside}; "
            "treated as sims-like (labels in [-1, 1], SIMS metrics); pass the dataset to be explicit"
        )
    if inference.family == "mosi":
        return None, (
            f"dataset not given and not identified by the feature dims (audio {dims[0]}, vision {dims[1]}){aside}; "
            f"treated as {MOSI_LIKE} (labels in [-3, 3]); pass the dataset to be explicit"
        )
    return None, (
        f"dataset not given and not identified: feature dims (audio {dims[0]}, vision {dims[1]}) are no standard "
        f"set, there are no regression_labels_T/A/V, and every label lies in [-1, 1]{aside}; checked as "
        f"{MOSI_LIKE} (labels in [-3, 3]); pass the dataset (e.g. --dataset sims) to be sure"
    )


def _check_label_range(split: Split, source: str, dataset: str | None, label_range: tuple[float, float]) -> None:
    if not split.has_labels:
        return
    lo, hi = label_range
    y = split.labels
    bad = (y < lo - LABEL_SLACK) | (y > hi + LABEL_SLACK)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: split {split.name!r}: key 'regression_labels': expected scores in [{lo:g}, {hi:g}] "
            f"for {dataset or MOSI_LIKE}; {int(bad.sum())} outside, e.g. {float(y[i]):g} (id {split.ids[i]!r}). "
            "Is the dataset right?"
        )
