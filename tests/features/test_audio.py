"""Acoustic frame features on signals whose answer is known: frame counts, pitch of a tone, silence."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from deepmlf.features.audio import SAMPLE_RATE, EgemapsAudio, LibrosaAudio

from .conftest import need_media

pytestmark = need_media


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_librosa_frames_pitch_and_names():
    ex = LibrosaAudio()
    y = np.concatenate([_tone(200.0, 1.0), np.zeros(SAMPLE_RATE // 2, np.float32)])  # 1 s of 200 Hz, 0.5 s silence
    out = ex.extract(y)
    assert out.shape == (1 + len(y) // 320, 26) == (ex.n_frames(len(y)), ex.dim) and out.dtype == np.float32
    assert np.isfinite(out).all()
    names = ex.names
    f0, voiced, log_rms = (out[:, names.index(k)] for k in ("log2_f0_rel100", "voiced_prob", "log_rms"))
    tone, silence = slice(5, 45), slice(55, 75)  # frames well inside each part (20 ms each)
    np.testing.assert_allclose(f0[tone], np.log2(200 / 100), atol=0.02)  # one octave above 100 Hz
    assert voiced[tone].min() > 0.5 and np.all(f0[silence] == 0) and voiced[silence].max() < 0.1
    assert log_rms[tone].mean() > log_rms[silence].mean() + 5
    assert ex.frame_rate == 50.0 and ex.describe()["dim"] == 26


@pytest.mark.skipif(importlib.util.find_spec("opensmile") is None, reason="needs the [egemaps] extra")
def test_egemaps_llds_at_100_fps():
    ex = EgemapsAudio()
    out = ex.extract(_tone(220.0, 1.0))
    assert out.shape[1] == 25 == len(ex.names) and abs(out.shape[0] - 100) <= 6  # 10 ms hop, 60 ms windows
    assert np.isfinite(out).all()
    f0 = out[:, [i for i, n in enumerate(ex.names) if n.startswith("F0semitone")][0]]
    assert np.median(f0[10:-10]) == pytest.approx(12 * np.log2(220 / 27.5), abs=0.5)  # semitones above 27.5 Hz
