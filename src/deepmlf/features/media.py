"""Reading media files with the ffmpeg binary that ships in PyPI `imageio-ffmpeg` (no system ffmpeg needed).

`probe` reads the container's streams, `read_audio` decodes the first audio track to mono float32
at a fixed rate, `read_gray_frames` decodes the video resampled to a fixed frame rate as 8-bit
grey frames (all that face detection and the FER network use). Every failure is a `MediaError`
naming the file and what ffmpeg said, never a broken pipe or an empty array.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError

MEDIA_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
IMAGEIO_FFMPEG = "imageio-ffmpeg"


class MediaError(DataError):
    """A media file cannot be read, or lacks the stream a feature needs."""


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MediaError(
            "reading media needs the ffmpeg of PyPI `imageio-ffmpeg`: pip install 'deepmlf[media]'"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0  # the video stream's own rate (we resample to the feature set's rate)
    audio_rate: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) (?:fps|tbr)")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: .*?(\d+) Hz")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def _fail(path: Path, what: str, stderr: str) -> MediaError:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    said = lines[-1] if lines else "no message"
    return MediaError(f"{path}: {what} (ffmpeg: {said})")


def probe(path: str | Path) -> MediaInfo:
    """Streams and duration of a media file (ffmpeg -i), or MediaError for a missing/unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                          text=True, errors="replace")
    err = proc.stderr  # `ffmpeg -i` without an output always exits 1; the stream list is on stderr
    if "Stream #" not in err:
        raise _fail(path, "not a readable media file", err)
    m = _DURATION.search(err)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    info = {"path": str(path), "duration_s": duration, "has_video": False, "has_audio": False}
    for line in err.splitlines():
        v = _VIDEO.search(line)
        if v and not info["has_video"] and "attached pic" not in line:
            fps = _FPS.search(line)
            info.update(has_video=True, width=int(v.group(1)), height=int(v.group(2)),
                        fps=float(fps.group(1)) if fps else 0.0)
        a = _AUDIO.search(line)
        if a and not info["has_audio"]:
            info.update(has_audio=True, audio_rate=int(a.group(1)))
    rot = _ROTATION.search(err)
    if info["has_video"] and rot and round(abs(float(rot.group(1)))) % 180 == 90:
        # ffmpeg auto-rotates while decoding (phone videos): frames come out transposed.
        info["width"], info["height"] = info["height"], info["width"]
    return MediaInfo(**info)


def read_audio(path: str | Path, *, sample_rate: int = 16000) -> np.ndarray:
    """The first audio track as mono float32 in [-1, 1] at `sample_rate` Hz, shape (n_samples,)."""
    path = Path(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "matches no streams" in stderr:
            raise MediaError(f"{path}: no audio track (the audio features and speech recognition need one)")
        raise _fail(path, "cannot decode the audio track", stderr)
    audio = np.frombuffer(proc.stdout, dtype=np.float32)
    if audio.size == 0:
        raise MediaError(f"{path}: the audio track holds no samples")
    return audio.copy()


def read_gray_frames(path: str | Path, *, fps: float, max_side: int | None = None) -> Iterator[np.ndarray]:
    """(H, W) uint8 grey frames resampled to `fps` (ffmpeg's fps filter: frame k shows time k/fps),
    optionally scaled so that the longer side is at most `max_side` pixels."""
    path = Path(path)
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: no video track (the facial features need one)")
    w, h = info.width, info.height
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    vf = f"fps={fps},scale={w}:{h}"  # an explicit size: every frame is exactly w*h bytes
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", vf,
           "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frame_bytes = w * h
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w)
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        rc = proc.wait()
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if rc != 0:
        raise _fail(path, "cannot decode the video track", stderr)

