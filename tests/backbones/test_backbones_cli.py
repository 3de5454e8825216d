"""`deepmlf backbones list|show`: what a user sees, and exit code 2 with the message for a bad name."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from deepmlf.backbones.tiny import tiny_gpt2
from deepmlf.cli import app

from .backbone_helpers import put_in_hf_cache

WIDE = {"COLUMNS": "250"}


def _save(directory):
    bb = tiny_gpt2(n_layers=2)
    bb.model.save_pretrained(directory)
    bb.tokenizer.save_pretrained(directory)


def test_list_shows_builtins_and_hf_cache_entries(offline_env):
    put_in_hf_cache(offline_env["hf_cache"], "acme/tiny", _save)
    result = CliRunner().invoke(app, ["backbones", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    tiny_row = next(line for line in lines if "tiny-llama" in line)
    assert "built-in" in tiny_row and "random weights" in tiny_row and "llama" in tiny_row
    acme_row = next(line for line in lines if "acme/tiny" in line)
    assert "hf-cache" in acme_row and "ready" in acme_row and "gpt2" in acme_row
    assert str(offline_env["hf_cache"]) in result.output


def test_list_json(offline_env):
    result = CliRunner().invoke(app, ["backbones", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["smollm2-135m", "tiny-gpt2", "tiny-llama"]
    assert set(rows[0]) == {"name", "kind", "ready", "status", "model_type", "location"}


def test_show_json_describes_a_local_directory(offline_env, tmp_path):
    _save(tmp_path / "m")
    result = CliRunner().invoke(app, ["backbones", "show", str(tmp_path / "m"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["kind"], info["model_type"], info["n_layers"], info["hidden_size"]) == ("local", "gpt2", 2, 32)
    assert info["vocab_size"] == 257 and info["family"]["norm"] == "LayerNorm"


def test_show_table(offline_env):
    result = CliRunner().invoke(app, ["backbones", "show", "tiny-llama"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 (valid model.mm_layers: 0..3)" in out
    assert "swiglu MLP, LlamaRMSNorm, layers at model.layers" in out
    assert "built in code (random weights)" in out


def test_show_unknown_name_exits_2_with_what_was_tried(offline_env):
    result = CliRunner().invoke(app, ["backbones", "show", "no-such-model"], env=WIDE)
    assert result.exit_code == 2
    assert "error: cannot resolve backbone 'no-such-model' offline" in result.output
    assert "built-in names: smollm2-135m, tiny-gpt2, tiny-llama" in result.output
    assert "Traceback" not in result.output
