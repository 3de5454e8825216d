"""The CLI-wide error rule: known errors are one line and a non-zero exit; --debug shows the traceback."""

from __future__ import annotations

import errno
import os

from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.cli.common import known_error_exit

runner = CliRunner()


def test_known_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    res = runner.invoke(app, ["data", "inspect", str(tmp_path / "absent.pkl")])
    assert res.exit_code == 2 and res.output.strip().startswith("error: ") and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["--debug", "data", "inspect", str(tmp_path / "absent.pkl")])
    assert res.exit_code == 1 and type(res.exception).__name__ == "DataError"  # raised, traceback shown
    res = runner.invoke(app, ["data", "inspect", str(tmp_path / "absent.pkl")])  # --debug does not stick
    assert res.exit_code == 2


def test_os_errors_memory_and_nan_losses_are_known(capsys):
    from deepmlf.train.loop import NonFiniteLossError

    e = OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/x.pkl")
    assert known_error_exit(e) == 1
    assert "error: /data/x.pkl: Permission denied (permission denied" in capsys.readouterr().err.replace("\n", " ")
    assert known_error_exit(MemoryError()) == 1 and "out of memory" in capsys.readouterr().err
    assert known_error_exit(NonFiniteLossError("stage2: the training loss is nan")) == 1
    assert known_error_exit(KeyError("x")) is None  # a bug keeps its traceback
