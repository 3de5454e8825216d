"""env.json in every run dir, SHA-256 in `data inspect`, MMSA's published hashes."""

from __future__ import annotations

import hashlib
import json

from typer.testing import CliRunner

from deepmlf.checksums import MMSA_PUBLISHED_SHA256, mmsa_published_name, sha256_file
from deepmlf.cli import app
from deepmlf.envinfo import environment_record, write_env_record

runner = CliRunner()


def test_run_dir_env_json_records_packages_torch_git_data_and_command(tiny_run):
    env = json.loads((tiny_run / "env.json").read_text())
    data = tiny_run.parent / "toy.pkl"
    assert env["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert env["data"]["path"] == str(data.resolve()) and env["data"]["mmsa_published"] is None
    assert env["packages"]["torch"] == env["torch"]["version"] and "deepmlf" in env["packages"]
    assert env["torch"]["cuda_available"] in (True, False) and env["device"].startswith(("cpu", "cuda"))
    assert isinstance(env["command"], list) and env["invocations"] == []
    assert env["git"] is None or len(env["git"]["commit"]) == 40


def test_a_second_invocation_is_appended(tmp_path):
    first = environment_record(argv=["deepmlf", "train"])
    write_env_record(tmp_path, first)
    write_env_record(tmp_path, environment_record(argv=["deepmlf", "train", "--resume"]))
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["command"] == ["deepmlf", "train"] and env["invocations"][0]["command"][-1] == "--resume"


def test_data_inspect_prints_the_sha256_and_whether_mmsa_published_it(mmsa_pickle):
    digest = hashlib.sha256(mmsa_pickle.read_bytes()).hexdigest()
    res = runner.invoke(app, ["data", "inspect", str(mmsa_pickle), "--json"])
    out = json.loads(res.stdout)
    assert out["sha256"] == digest == sha256_file(mmsa_pickle) and out["mmsa_published"] is None
    res = runner.invoke(app, ["data", "inspect", str(mmsa_pickle)], env={"COLUMNS": "200"})
    assert f"sha256 {digest}" in res.output and "not one of the files MMSA publishes hashes for" in res.output


def test_the_published_table_is_mmsa_readme_block():
    assert len(MMSA_PUBLISHED_SHA256) == 5 and all(len(h) == 64 for h in MMSA_PUBLISHED_SHA256)
    assert mmsa_published_name("78E0F8B5EF8FF71558E7307848FC1FA929ECB078203F565AB22B9DAAB2E02524") == \
        "MOSI/Processed/unaligned_50.pkl"
