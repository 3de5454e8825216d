"""Feature extraction throughput on 2 cores: clips/s end to end and the real-time factor per modality.

Builds N real clips in code (espeak-ng speech over the moving astronaut face, deepmlf.features.testing),
then times
  1. each part on its own, one clip after another in this process (1 thread): audio decode + librosa,
     facial features (decode + Haar + FER), Whisper tiny.en -> real-time factor = seconds / media seconds;
  2. `extract_features` end to end with --workers 1 and 2 (fresh cache each time) -> clips/s.
A warm-up clip runs first (numba JIT of librosa, model loads), as a long extraction amortises them.

    flock /tmp/deepmlf-heavy.lock .venv/bin/python benchmarks/extract_throughput.py --clips 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The movie was wonderful and I really enjoyed the music.",
    "I did not like the ending, it felt rushed and boring.",
    "Honestly the acting was fine but the plot made no sense at all.",
    "What a great surprise, I would watch it again tomorrow.",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from deepmlf.features.asr import WhisperASR
    from deepmlf.features.audio import LibrosaAudio
    from deepmlf.features.extract import extract_features
    from deepmlf.features.face import FaceFER
    from deepmlf.features.media import read_audio
    from deepmlf.features.testing import make_clip

    tmp = Path(tempfile.mkdtemp(prefix="deepmlf-bench-"))
    clips = [make_clip(tmp / "clips" / f"c{i:02d}.mp4", SENTENCES[i % len(SENTENCES)], seed=i) for i in range(args.clips)]
    media_s = sum(c.duration_s for c in clips)
    audio_ex, face_ex, asr = LibrosaAudio(), FaceFER(), WhisperASR()

    warm = clips[0].path  # JIT and model loads, outside the timings
    w = read_audio(warm)
    audio_ex.extract(w), face_ex.extract_file(warm), asr.transcribe(w)

    t = {"audio": 0.0, "vision": 0.0, "asr": 0.0}
    for c in clips:
        t0 = time.perf_counter()
        wave = read_audio(c.path)
        audio_ex.extract(wave)
        t["audio"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        face_ex.extract_file(c.path)
        t["vision"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        asr.transcribe(wave)
        t["asr"] += time.perf_counter() - t0

    end_to_end = {}
    for workers in (1, 2):
        cache = tmp / f"cache{workers}"
        t0 = time.perf_counter()
        extract_features([tmp / "clips"], tmp / f"out{workers}.pkl", workers=workers, cache_dir=cache, progress=False)
        end_to_end[workers] = time.perf_counter() - t0

    load = os.getloadavg()
    print(f"{args.clips} clips, {media_s:.1f} s of media (mean {media_s / args.clips:.2f} s, 320x240 H.264 25 fps + AAC)")
    print(f"uptime load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; nproc {os.cpu_count()}")
    print("\n| part (1 process, 1 thread, warm) | seconds | real-time factor (s per s of media) |")
    print("|---|---:|---:|")
    names = {"audio": "audio: ffmpeg decode + librosa (MFCC, pYIN, ...)", "vision": "vision: decode 10 fps + Haar + FER",
             "asr": "text: Whisper tiny.en int8 (beam 5)"}
    for k, v in t.items():
        print(f"| {names[k]} | {v:.2f} | {v / media_s:.3f} |")
    print(f"| all three | {sum(t.values()):.2f} | {sum(t.values()) / media_s:.3f} |")
    print("\n| end to end `extract_features` (cold processes, empty cache) | wall s | clips/s | real-time factor |")
    print("|---|---:|---:|---:|")
    for wk, v in end_to_end.items():
        print(f"| --workers {wk} | {v:.1f} | {args.clips / v:.2f} | {v / media_s:.3f} |")
    subprocess.run(["uptime"])
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
