"""Frame-level acoustic features from a mono waveform: librosa (default) or openSMILE eGeMAPS LLDs.

Both take float32 audio at `SAMPLE_RATE` (what `media.read_audio` returns) and give (L, D)
float32 frames at a fixed rate, with finite values everywhere (unvoiced pitch is 0, not NaN), so
the MMSA loader has nothing to repair. They are importable parts (the ERC extractors reuse them):

    from deepmlf.features.audio import LibrosaAudio
    frames = LibrosaAudio().extract(waveform)      # (L, 26) at 50 frames/s
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError

SAMPLE_RATE = 16000  # Hz: Whisper's rate, so one decode serves the features and the ASR
_EPS = 1e-6


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"this feature set needs `{module}`: pip install 'deepmlf[{extra}]'") from None


@dataclass(frozen=True)
class LibrosaAudio:
    """MFCC, energy, zero-crossing rate, spectral shape and pitch per 20 ms frame (librosa)."""

    n_mfcc: int = 20
    n_mels: int = 40
    n_fft: int = 512  # 32 ms analysis window at 16 kHz
    hop: int = 320  # 20 ms hop -> 50 frames/s
    fmin_f0: float = 65.0  # pYIN pitch search range (Hz): covers low male to high female speech
    fmax_f0: float = 500.0

    kind = "librosa"

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    @property
    def names(self) -> list[str]:
        return [f"mfcc_{i}" for i in range(self.n_mfcc)] + [
            "log_rms", "zcr", "spectral_centroid", "spectral_flatness", "log2_f0_rel100", "voiced_prob"
        ]

    @property
    def dim(self) -> int:
        return len(self.names)

    def n_frames(self, n_samples: int) -> int:
        """librosa's centred framing: 1 + n_samples // hop frames."""
        return 1 + n_samples // self.hop

    def describe(self) -> dict:
        return {"extractor": self.kind, **asdict(self), "sample_rate": SAMPLE_RATE, "frame_rate": self.frame_rate,
                "dim": self.dim, "names": self.names}

    def extract(self, audio: np.ndarray) -> np.ndarray:
        """(n_samples,) float32 at 16 kHz -> (1 + n_samples // hop, dim) float32."""
        librosa = _need("librosa", "media")
        y = np.asarray(audio, dtype=np.float32)
        kw = {"n_fft": self.n_fft, "hop_length": self.hop}
        power = np.abs(librosa.stft(y, **kw)) ** 2  # (1 + n_fft/2, L)
        mel = librosa.feature.melspectrogram(S=power, sr=SAMPLE_RATE, n_mels=self.n_mels)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=self.n_mfcc)  # (n_mfcc, L)
        rms = librosa.feature.rms(S=np.sqrt(power), frame_length=self.n_fft)[0]
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=self.n_fft, hop_length=self.hop)[0]
        centroid = librosa.feature.spectral_centroid(S=np.sqrt(power), sr=SAMPLE_RATE)[0] / (SAMPLE_RATE / 2)
        flatness = librosa.feature.spectral_flatness(S=np.sqrt(power))[0]
        # pYIN needs two periods of the lowest pitch per window: 2 * 16000/65 ≈ 492 samples -> 1024.
        f0, _, voiced_prob = librosa.pyin(y, fmin=self.fmin_f0, fmax=self.fmax_f0, sr=SAMPLE_RATE,
                                          frame_length=1024, hop_length=self.hop)
        log_f0 = np.where(np.isfinite(f0), np.log2(np.nan_to_num(f0, nan=100.0) / 100.0), 0.0)
        rows = [mfcc, np.log(rms + _EPS)[None], zcr[None], centroid[None], flatness[None], log_f0[None],
                np.nan_to_num(voiced_prob)[None]]
        n = min(r.shape[1] for r in rows)  # all centred with the same hop: equal lengths, trimmed defensively
        out = np.concatenate([r[:, :n] for r in rows], axis=0).T.astype(np.float32)  # (L, dim)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass(frozen=True)
class EgemapsAudio:
    """The 25 eGeMAPS v02 low-level descriptors per 10 ms frame (openSMILE).

    Licence: openSMILE is free for research and education only (audEERING's research licence);
    commercial use needs a licence from audEERING. That is why it is an optional extra
    (`pip install 'deepmlf[egemaps]'`) and not the default feature set.
    """

    kind = "egemaps"

    @property
    def frame_rate(self) -> float:
        return 100.0

    def _smile(self):
        opensmile = _need("opensmile", "egemaps")
        return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                               feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    @property
    def names(self) -> list[str]:
        return list(self._smile().feature_names)

    @property
    def dim(self) -> int:
        return 25

    def describe(self) -> dict:
        return {"extractor": self.kind, "feature_set": "eGeMAPSv02", "level": "LowLevelDescriptors",
                "sample_rate": SAMPLE_RATE, "frame_rate": self.frame_rate,
                "dim": self.dim, "names": self.names}

    def extract(self, audio: np.ndarray) -> np.ndarray:
        frame = self._smile().process_signal(np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
        out = frame.to_numpy(dtype=np.float32)  # (L, 25)
        if out.shape[0] == 0:  # shorter than one 60 ms window
            out = np.zeros((1, self.dim), dtype=np.float32)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
