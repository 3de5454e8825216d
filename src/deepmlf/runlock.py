"""One writer per run directory: an exclusive lock file (`RUN_DIR/.lock`) held while a run trains.

`fcntl.flock` is released by the kernel when its holder exits, however it exits (kill -9
included), so a lock left by a dead process is simply taken over; the pid/host/command written
inside only serve the messages. A second writer is refused with a message naming the holder.
Two `deepmlf train` on one `--out` would otherwise interleave epochs in history.jsonl and leave
config.yaml from one run beside best.pt and DONE from the other (issue 9, item 2).

POSIX only (fcntl); on a system without it the lock is a no-op rather than an import error.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import RunDirError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunDirLocked(RunDirError):
    """Another live process holds the run directory's lock."""


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "another process (no details recorded)"
    parts = [f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"]
    if info.get("started"):
        parts.append(f"since {info['started']}")
    if info.get("command"):
        parts.append(f"running `{info['command']}`")
    return ", ".join(parts)


def read_lock_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run_dir: str | Path, *, say: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold RUN_DIR/.lock exclusively for the block (creating RUN_DIR if needed).

    Raises RunDirLocked naming the holder when another live process has it. A lock file left by a
    process that died is taken over (with a note through `say`). If the block leaves RUN_DIR holding
    nothing but the lock (a run refused by a later check), RUN_DIR is removed again when this call
    created it.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a run directory; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirLocked(
                f"{run_dir} is in use by {_holder_text(read_lock_info(path))}: two runs writing one run "
                "directory would mix their epochs and results; wait for it to finish, or choose another --out"
            ) from None
        previous = read_lock_info(path)
        if previous.get("pid") and say is not None and previous.get("pid") != os.getpid():
            same_host = previous.get("host") == socket.gethostname()
            state = "no longer running" if same_host and not _pid_alive(previous["pid"]) else "no longer holding it"
            say(f"{run_dir}: took over the lock left by {_holder_text(previous)} ({state})")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released cleanly: no holder to report
    finally:
        os.close(fd)  # closing the descriptor releases the flock
        if created:
            try:
                if [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
                    path.unlink()
                    run_dir.rmdir()
            except OSError:
                pass
