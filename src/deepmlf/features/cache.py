"""Per-clip feature cache: extraction resumes clip by clip, and a re-run only extracts what changed.

An entry is keyed by the clip file's SHA-256 (a renamed or moved clip is still found; an edited one
is not) and by the fingerprint of the one extractor that made it, so audio, facial features and
transcripts are cached apart: switching the ASR settings re-runs only the ASR. Entries are written
atomically (`deepmlf.io.atomic_path`): an interrupted run leaves whole entries or none.

    CACHE/<sha[:2]>/<sha>/<part>-<fingerprint[:16]>.npz
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path


def part_fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class ClipCache:
    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, file_sha: str, part: str, fingerprint: str) -> Path:
        assert self.root is not None
        return self.root / file_sha[:2] / file_sha / f"{part}-{fingerprint[:16]}.npz"

    def has(self, file_sha: str, part: str, fingerprint: str) -> bool:
        return self.root is not None and self._path(file_sha, part, fingerprint).is_file()

    def load(self, file_sha: str, part: str, fingerprint: str) -> dict[str, Any] | None:
        """The cached arrays (+ "meta" dict), or None (absent, or unreadable: then it is re-extracted)."""
        if not self.has(file_sha, part, fingerprint):
            return None
        try:
            with np.load(self._path(file_sha, part, fingerprint), allow_pickle=False) as z:
                out: dict[str, Any] = {k: z[k] for k in z.files if k != "meta"}
                out["meta"] = json.loads(str(z["meta"])) if "meta" in z.files else {}
        except Exception:  # noqa: BLE001 - a damaged entry is simply extracted again
            return None
        return out

    def save(self, file_sha: str, part: str, fingerprint: str, *, meta: dict[str, Any] | None = None,
             **arrays: np.ndarray) -> None:
        if self.root is None:
            return
        with atomic_path(self._path(file_sha, part, fingerprint)) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
                np.savez(f, meta=np.array(json.dumps(meta or {})), **arrays)
