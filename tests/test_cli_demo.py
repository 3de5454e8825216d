"""`deepmlf demo [NAME]`: the default is the DeepMLF demo; names come from one registry."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from typer.testing import CliRunner

from deepmlf.cli import app, demo_cmd

runner = CliRunner()


def test_unknown_demo_is_one_clear_line_listing_the_known_ones():
    res = runner.invoke(app, ["demo", "nope"])
    assert res.exit_code == 2
    assert "unknown demo 'nope'; known demos: deepmlf" in res.output


def test_demo_name_defaults_to_deepmlf_and_options_reach_the_demo(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("fake_demo_module")
    fake.run = lambda out, **kw: calls.append((out, kw))
    monkeypatch.setitem(sys.modules, "fake_demo_module", fake)
    monkeypatch.setitem(demo_cmd.DEMOS, "deepmlf", demo_cmd.Demo("fake_demo_module:run", "stand-in", "runs/demo"))
    monkeypatch.setitem(demo_cmd.DEMOS, "other", demo_cmd.Demo("fake_demo_module:run", "another", "runs/demo-other"))

    assert runner.invoke(app, ["demo", "--fast", "--set", "train.max_epochs=1", "--no-progress"]).exit_code == 0
    out, kw = calls[-1]
    assert out == Path("runs/demo")  # `make demo` = `deepmlf demo`: unchanged
    assert (kw["fast"], kw["overrides"], kw["progress"], kw["n"]) == (True, ["train.max_epochs=1"], False, None)

    assert runner.invoke(app, ["demo", "other", "--out", str(tmp_path), "--n", "50"]).exit_code == 0
    assert calls[-1][0] == tmp_path and calls[-1][1]["n"] == 50
    assert runner.invoke(app, ["demo", "other"]).exit_code == 0 and calls[-1][0] == Path("runs/demo-other")


def test_every_registered_demo_resolves_to_a_function():
    for name, entry in demo_cmd.DEMOS.items():
        assert callable(entry.load()), name
