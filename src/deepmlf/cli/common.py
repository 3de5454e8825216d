"""Shared CLI plumbing: user-facing errors become one clear line and exit code 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer
from rich.console import Console

from ..errors import DeepMLFError

F = TypeVar("F", bound=Callable)
console = Console()
err_console = Console(stderr=True)


def friendly_errors(fn: F) -> F:
    """Turn DeepMLFError (DataError, ConfigError, ...) into `error: <message>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DeepMLFError as e:
            err_console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; completed results and the last checkpoint are kept on disk")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
