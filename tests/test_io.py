"""Atomic writes: a failure mid-write leaves the previous file intact, and no temp file behind."""

from __future__ import annotations

import os
import stat

import pytest

from deepmlf.io import append_jsonl, atomic_path, read_jsonl, write_json, write_text


def test_failed_write_keeps_the_old_result(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"MAE": 0.7})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"MAE": 0.')  # half written when the crash comes
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "MAE": 0.7\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a" / "metrics.csv", "x\n")  # parent dirs are created
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "metrics.csv").stat().st_mode) == 0o644


def test_a_torn_history_line_is_skipped(tmp_path):
    log = tmp_path / "history.jsonl"
    append_jsonl(log, {"epoch": 0, "loss": 1.0})
    with open(log, "a") as f:
        f.write('{"epoch": 1, "lo')  # the process died mid-line
    assert read_jsonl(log) == [{"epoch": 0, "loss": 1.0}]
