"""Shared CLI plumbing: every error a user can act on becomes one clear line and a non-zero exit.

Known errors print `error: <message>` with no traceback (`deepmlf --debug ...` or DEEPMLF_DEBUG=1
shows it): DeepMLFError (data, config, checkpoint, run dir, write errors) exits 2; an OSError
(a file that cannot be read or written), running out of memory, or a NaN loss exits 1; Ctrl-C
exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

import typer
from rich.console import Console

from ..errors import DeepMLFError

F = TypeVar("F", bound=Callable)
console = Console()
err_console = Console(stderr=True)
_debug = {"on": False}


def set_debug(on: bool) -> None:
    _debug["on"] = bool(on)


def debug_enabled() -> bool:
    return _debug["on"] or os.environ.get("DEEPMLF_DEBUG", "") not in ("", "0")


def _say(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)


def _os_error_text(e: OSError) -> str:
    from ..io import _HINTS

    where = f"{e.filename}: " if e.filename else ""
    hint = _HINTS.get(e.errno or -1)
    return f"{where}{e.strerror or e}" + (f" ({hint})" if hint else "")


def known_error_exit(e: BaseException) -> int | None:
    """Print a known error as one line; return its exit code (None: not a known error)."""
    from ..train.loop import NonFiniteLossError

    if isinstance(e, DeepMLFError):
        _say(str(e))
        return 2
    if isinstance(e, NonFiniteLossError):
        _say(str(e))
        return 1
    if isinstance(e, OSError):
        _say(_os_error_text(e))
        return 1
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        _say(f"out of memory ({type(e).__name__}); lower data.batch_size / data.eval_batch_size, or use a "
             "smaller backbone; completed results and the last checkpoint are kept on disk")
        return 1
    return None


def friendly_errors(fn: F) -> F:
    """Known errors (see module docstring) -> `error: <message>` and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("interrupted; completed results and the last checkpoint are kept on disk")
            sys.exit(130)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - sorted into known and unknown below
            if debug_enabled():
                raise
            code = known_error_exit(e)
            if code is None:
                raise
            raise typer.Exit(code=code) from None

    return wrapper  # type: ignore[return-value]
