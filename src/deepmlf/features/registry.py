"""Named, versioned feature sets: which extractors with which settings make a pickle's features.

A feature set is recorded in every pickle `features extract` writes (top-level key `feature_set`)
and in every checkpoint trained on one, so `predict` can run the very same extraction on a new
video and refuse features from another extractor. Its identity is `name@version` plus a
fingerprint (SHA-256 of the canonical JSON of every setting that changes the numbers): change an
extractor's behaviour -> bump the version here.

    fs = get_feature_set("librosa-fer")          # the registry entry
    fs.id, fs.audio_dim, fs.vision_dim           # "librosa-fer@1", 26, 140
    meta = fs.describe()                         # what pickles and checkpoints store
    fs2 = feature_set_from_meta(meta)            # rebuilt from a checkpoint, same fingerprint
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from .asr import WhisperASR
from .audio import EgemapsAudio, LibrosaAudio
from .face import FaceFER

META_KEY = "feature_set"  # top-level pickle key and checkpoint key
FORMAT = 1  # layout of the recorded dict


class FeatureSetMismatch(DataError):
    """Features (a pickle, a video's extraction) come from another feature set than the checkpoint's."""


@dataclass(frozen=True)
class FeatureSet:
    name: str
    version: int
    audio: LibrosaAudio | EgemapsAudio
    vision: FaceFER
    asr: WhisperASR = field(default_factory=WhisperASR)
    bert_text_len: int = 50  # `text_bert` width for MMSA's BERT models (MOSI/MOSEI: 50)
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def audio_dim(self) -> int:
        return self.audio.dim

    @property
    def vision_dim(self) -> int:
        return self.vision.dim

    def _settings(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "audio": self.audio.describe(),
                "vision": self.vision.describe(), "asr": self.asr.describe()}

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self._settings(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-able record stored in pickles and checkpoints (plain str/int/float/bool/list/dict)."""
        return {"format": FORMAT, "id": self.id, **self._settings(), "audio_dim": self.audio_dim,
                "vision_dim": self.vision_dim, "fingerprint": self.fingerprint, "description": self.description}


def _librosa_fer() -> FeatureSet:
    return FeatureSet(
        "librosa-fer", 1, LibrosaAudio(), FaceFER(),
        description="librosa MFCC/energy/ZCR/spectral shape/pYIN pitch at 50 fps; Haar face box + FER2013 "
                    "expression scores + 128-d embedding at 10 fps; Whisper tiny.en transcripts when none is given",
    )


def _egemaps_fer() -> FeatureSet:
    return FeatureSet(
        "egemaps-fer", 1, EgemapsAudio(), FaceFER(),
        description="openSMILE eGeMAPS v02 LLDs at 100 fps (research-only licence); face/FER as librosa-fer",
    )


FEATURE_SETS = {"librosa-fer": _librosa_fer, "egemaps-fer": _egemaps_fer}
DEFAULT_FEATURE_SET = "librosa-fer"


def get_feature_set(name: str) -> FeatureSet:
    """A registered feature set by name (or `name@version` for the current version)."""
    base, _, version = name.partition("@")
    if base not in FEATURE_SETS:
        raise DataError(f"unknown feature set {name!r}; choose one of {', '.join(FEATURE_SETS)}")
    fs = FEATURE_SETS[base]()
    if version and version != str(fs.version):
        raise DataError(f"feature set {base!r} is at version {fs.version} in this deepmlf; {name!r} cannot be rebuilt")
    return fs


def feature_set_from_meta(meta: dict[str, Any]) -> FeatureSet:
    """Rebuild the feature set a pickle/checkpoint records; refuses if this deepmlf extracts it differently."""
    fs = get_feature_set(f"{meta.get('name')}@{meta.get('version')}")
    if fs.fingerprint != meta.get("fingerprint"):
        raise FeatureSetMismatch(
            f"feature set {meta.get('id')!r} was recorded with other settings (fingerprint "
            f"{str(meta.get('fingerprint'))[:12]}) than this deepmlf's {fs.id} ({fs.fingerprint[:12]}); "
            "re-extract the training data with this version"
        )
    return fs


def describe_id(meta: dict[str, Any] | None) -> str:
    """How a recorded feature set is named in messages."""
    if not meta:
        return "no feature set recorded (MMSA's processed features or other custom features)"
    return f"{meta.get('id', '?')} (fingerprint {str(meta.get('fingerprint', '?'))[:12]})"


def check_same_feature_set(expected: dict[str, Any] | None, got: dict[str, Any] | None, *, expected_what: str,
                           got_what: str) -> None:
    """Refuse features from another extractor, naming both feature sets."""
    same = (expected is None and got is None) or (
        expected is not None and got is not None and expected.get("fingerprint") == got.get("fingerprint"))
    if not same:
        raise FeatureSetMismatch(
            f"{got_what} has features from {describe_id(got)}, but {expected_what} was trained on "
            f"{describe_id(expected)}; extract the features with the checkpoint's feature set "
            "(deepmlf features extract --feature-set NAME) or use a matching checkpoint"
        )
