"""`deepmlf export RUN_DIR`: safetensors weights, resolved config, model card with mean ± std; loadable again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import deepmlf
from deepmlf.cli import app
from deepmlf.export import choose_seed

runner = CliRunner()


def test_export_folder_holds_weights_config_and_card(tiny_run, tmp_path):
    out = tmp_path / "export"
    res = runner.invoke(app, ["export", str(tiny_run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    seed, ckpt = choose_seed(tiny_run)
    valid = {s: torch.load(tiny_run / f"seed-{s}" / "best.pt", weights_only=True)["metrics"]["MAE"] for s in (1, 2)}
    assert seed == min(valid, key=valid.get)  # chosen on validation, never on test

    weights = load_file(str(out / "model.safetensors"))
    assert set(weights) == set(ckpt["model"]) and all(torch.equal(weights[k], ckpt["model"][k]) for k in weights)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["backbone"] == "tiny-gpt2" and cfg["model"]["av_encoder"]["checkpoint"] is None
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["seed"] == seed and (meta["audio_dim"], meta["vision_dim"]) == (5, 20) and meta["stage"] == "stage2"

    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    results = json.loads((tiny_run / "results.json").read_text())
    block = front["deepmlf"]["test_metrics"]
    assert front["library_name"] == "deepmlf" and front["deepmlf"]["exported_seed"] == seed
    for k in results["metrics"]:
        per_seed = np.array([results["per_seed"][s][k] for s in ("1", "2")])
        if np.isnan(per_seed).any():
            continue
        assert block["mean"][k] == pytest.approx(per_seed.mean()) and block["std"][k] == pytest.approx(per_seed.std())
        assert block["per_seed"]["1"][k] == pytest.approx(per_seed[0])
    assert "| mean ± std |" in card


def test_an_export_predicts_like_its_checkpoint(tiny_run, tmp_path):
    from deepmlf.export import export_run

    out = export_run(tiny_run, tmp_path / "e", seed=2)
    data = tiny_run.parent / "toy.pkl"
    a = deepmlf.load(out).predict_split(data, "valid")
    b = deepmlf.load(tiny_run / "seed-2" / "best.pt").predict_split(data, "valid")
    np.testing.assert_allclose(a.y_o, b.y_o, atol=1e-6)
    res = runner.invoke(app, ["export", str(tiny_run), "--seed", "9", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no best.pt for seed 9" in res.output
