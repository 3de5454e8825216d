"""Real media built in code, for tests and benchmarks: synthesised speech over a moving real face.

Speech comes from Debian's `espeak-ng`; the face is the astronaut photo scikit-image ships (a real
photograph, `skimage.data.astronaut()`), pasted on a grey background where it moves and grows,
with blank frames before and after; the two are muxed into an H.264/AAC mp4 by imageio-ffmpeg's
ffmpeg. `face_times` says when the face is on screen, so a test can check detection per frame.

    clip = make_clip("clip.mp4", "The movie was wonderful.", seed=0)
    clip.duration_s, clip.face_times       # e.g. 2.6, (0.4, 2.2)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .media import ffmpeg_exe

ESPEAK = "espeak-ng"
SOURCE_FPS = 25
SIZE = (320, 240)  # width, height
_FACE_BOX = (150, 40, 140, 140)  # x, y, w, h of the astronaut's head in the 512x512 photo (with margin)


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def synth_speech(text: str, path: str | Path, *, voice: str = "en-us", words_per_minute: int = 150) -> Path:
    """Speak `text` into a WAV file with espeak-ng (22.05 kHz mono)."""
    if not espeak_available():
        raise DataError(f"{ESPEAK} is not installed (Debian: apt-get install espeak-ng)")
    path = Path(path)
    subprocess.run([ESPEAK, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text], check=True,
                   capture_output=True)
    return path


def _face_patch() -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    x, y, w, h = _FACE_BOX
    return (rgb2gray(data.astronaut())[y: y + h, x: x + w] * 255).astype(np.uint8)


@dataclass(frozen=True)
class SynthClip:
    path: Path
    duration_s: float  # of the speech (= of the mp4)
    face_times: tuple[float, float]  # [start, end) seconds in which the face is on screen
    text: str
    has_audio: bool


def _frames(n: int, face_on: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    patch = _face_patch()
    w, h = SIZE
    frames = []
    for i in range(n):
        frame = np.full((h, w), 128, dtype=np.uint8)
        if face_on[0] <= i < face_on[1]:
            t = (i - face_on[0]) / max(1, face_on[1] - face_on[0] - 1)  # 0 -> 1 over the face interval
            side = int(110 + 70 * t)  # the face grows from 110 to 180 px
            face = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
            x0 = int(10 + (w - side - 20) * t)  # and moves left to right
            y0 = int((h - side) / 2 + 10 * np.sin(3 * t))
            frame[y0: y0 + side, x0: x0 + side] = face
        frame = np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
        frames.append(frame)
    return frames


def make_clip(path: str | Path, text: str, *, seed: int = 0, blank_s: float = 0.4, audio: bool = True,
              words_per_minute: int = 150) -> SynthClip:
    """An mp4 of `text` spoken over the moving face, blank (grey) frames for `blank_s` at each end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        wav = synth_speech(text, Path(tmp) / "speech.wav", words_per_minute=words_per_minute)
        import soundfile as sf

        info = sf.info(str(wav))
        duration = info.frames / info.samplerate
        n = int(round(duration * SOURCE_FPS))
        face_on = (int(round(blank_s * SOURCE_FPS)), n - int(round(blank_s * SOURCE_FPS)))
        frames = _frames(n, face_on, rng)
        w, h = SIZE
        cmd = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
               "-s", f"{w}x{h}", "-r", str(SOURCE_FPS), "-i", "-"]
        if audio:
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "96k"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-t", f"{duration:.3f}", str(path)]
        proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
        if proc.returncode != 0:
            raise DataError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace')[-400:]}")
    return SynthClip(path=path, duration_s=duration, face_times=(face_on[0] / SOURCE_FPS, face_on[1] / SOURCE_FPS),
                     text=text, has_audio=audio)
