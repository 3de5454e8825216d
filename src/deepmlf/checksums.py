"""SHA-256 of data files, and the hashes MMSA publishes for its processed feature pickles.

`MMSA_PUBLISHED_SHA256` is copied from the "SHA-256 for feature files" block of MMSA's README
(github.com/thuiar/MMSA, README.md at commit a94e65d07fa1ae0d44e552390074b29b0898edfd). MMSA
publishes no hash for SIMSv2 or for older releases of these files; a file that matches none of
them is reported as such, which says nothing bad about it (custom features, another release).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm.auto import tqdm

MMSA_SOURCE = "MMSA README (github.com/thuiar/MMSA @ a94e65d)"
# sha256 -> the file MMSA names it for
MMSA_PUBLISHED_SHA256: dict[str, str] = {
    "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524": "MOSI/Processed/unaligned_50.pkl",
    "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9": "MOSI/Processed/aligned_50.pkl",
    "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f": "MOSEI/Processed/unaligned_50.pkl",
    "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791": "MOSEI/Processed/aligned_50.pkl",
    "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f": "SIMS/Processed/unaligned_39.pkl",
}
_CHUNK = 4 * 2**20
_PROGRESS_MIN_BYTES = 256 * 2**20
# (resolved path, size, mtime_ns) -> digest: a sweep hashing one multi-GB pickle per run does it once.
_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, *, progress: bool = False) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (a progress bar for large files when asked)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    size = st.st_size
    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False,
                                     disable=not progress or size < _PROGRESS_MIN_BYTES) as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def mmsa_published_name(sha256: str) -> str | None:
    """The MMSA file a hash was published for, or None."""
    return MMSA_PUBLISHED_SHA256.get(sha256.lower())
