"""Raw media -> MMSA-layout features, offline: audio (librosa / openSMILE), faces (Haar + FER2013), ASR (Whisper).

Parts are importable on their own (`features.audio.LibrosaAudio`, `features.face.FaceFER`,
`features.asr.WhisperASR`, `features.fer_net.MiniXception`); `registry` names the combinations
(feature sets) that pickles and checkpoints record; `extract` runs them over many clips.
Nothing heavy is imported until used: `import deepmlf.features` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FeatureSet": "registry", "get_feature_set": "registry", "feature_set_from_meta": "registry",
    "FEATURE_SETS": "registry", "DEFAULT_FEATURE_SET": "registry", "FeatureSetMismatch": "registry",
    "check_same_feature_set": "registry",
    "extract_features": "extract", "extract_clip": "extract", "ExtractionError": "extract",
    "LibrosaAudio": "audio", "EgemapsAudio": "audio", "FaceFER": "face", "WhisperASR": "asr",
    "probe": "media", "read_audio": "media", "MediaError": "media",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
