"""Atomic file writes: a crash mid-write never leaves a truncated result or checkpoint behind.

Hand-written because it is a few lines: write to a temporary file in the same directory, fsync,
then `os.replace`, which is atomic on POSIX and Windows. Every file deepmlf writes goes through
`atomic_path` (or `append_jsonl` for the history log). A failing write (disk full, read-only file
system, permission) is a `WriteError` naming the file, and the file it would have replaced is
unchanged; `check_output_dir` / `check_output_file` find the usual causes before work starts.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import WriteError

_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"
_PROBE_PREFIX = ".deepmlf-write-check-"
_PROBE_BYTES = 64 * 1024  # a disk that cannot take this cannot take a checkpoint either
# `.NAME.XXXXXXXX.tmp` (mkstemp's 8 random characters) or a write probe.
_ORPHAN = re.compile(r"^(\..+\.[A-Za-z0-9_]{8}\.tmp|\.deepmlf-write-check-.*)$")

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and run the command again",
    errno.EDQUOT: "the disk quota is exhausted; free some space and run the command again",
    errno.EROFS: "the file system is read-only; choose an --out on a writable disk",
    errno.EACCES: "permission denied; choose an --out you can write to",
    errno.EPERM: "permission denied; choose an --out you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory; expected a file name",
    errno.ENAMETOOLONG: "the path is too long",
}


def write_error(path: str | Path, e: OSError, what: str = "") -> WriteError:
    """The user-facing error for an OSError while writing `path`."""
    reason = e.strerror or str(e)
    hint = _HINTS.get(e.errno or -1)
    label = f"{what} " if what else ""
    return WriteError(f"cannot write {label}{path}: {reason}" + (f" ({hint})" if hint else "")
                      + "; files written before are unchanged")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically.

    Any OSError on the way (creating the folder, writing, fsync, rename) is a WriteError naming
    `path`; the temporary file is removed and `path` keeps its old content.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results should read like any file
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    # Serialised in memory first: torch's own file writer turns ENOSPC into an opaque RuntimeError
    # ("unexpected pos ..."); a plain file write reports the OSError (checkpoints are small).
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a history log); a torn last line is skipped by `read_jsonl`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(path, e) from e


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a crash
    return out


# ----------------------------------------------------------------------------- checks before work


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(directory: Path, target: Path, what: str) -> None:
    """Write (and remove) a small file in `directory`: a full or read-only disk fails here, not mid-run."""
    probe: str | None = None
    try:
        fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=directory)
        with os.fdopen(fd, "wb") as f:  # buffered: a short write (nearly full disk) is retried until ENOSPC
            f.write(b"\0" * _PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise WriteError(f"{what} {target}: cannot write in {directory}: {e.strerror or e}"
                         + (f" ({_HINTS[e.errno]})" if e.errno in _HINTS else "") + "; nothing was started") from e
    finally:
        if probe is not None:
            try:
                os.unlink(probe)
            except OSError:
                pass


def check_output_dir(path: str | Path, what: str = "--out") -> None:
    """Refuse, before any work, a directory output that is a file, lies below a file, or cannot be
    written (read-only, full, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{what} {path} is a file; expected a directory (choose another path)")
    base = _first_existing(path)
    if not base.is_dir():
        raise WriteError(f"{what} {path}: {base} is a file, so nothing can be created below it")
    _probe(base, path, what)


def check_output_file(path: str | Path, what: str = "--out", example: str = "out.csv") -> None:
    """Refuse, before any work, a file output that is a directory, lies below a file, or whose
    folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{what} {path} is a directory; expected a file path such as {path / example}")
    if str(path).endswith(os.sep):
        raise WriteError(f"{what} {path}: expected a file path such as {path / example}, not a folder")
    base = _first_existing(path.parent)
    if not base.is_dir():
        raise WriteError(f"{what} {path}: {base} is a file, so nothing can be created below it")
    _probe(base, path, what)


def remove_orphaned_temps(root: str | Path) -> list[Path]:
    """Delete the temporary files interrupted writes left under `root` (call it holding the run lock)."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for p in root.rglob(".*"):
        if p.is_file() and _ORPHAN.match(p.name):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
