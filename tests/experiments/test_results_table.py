"""`deepmlf results`: mean ± std over finished seeds, exact against hand-made run dirs, plus the plots."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest
import yaml

from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.config import Config
from deepmlf.errors import ConfigError
from deepmlf.experiments import collect, to_markdown, write_results
from deepmlf.metrics import MOSI_KEYS, SIMS_KEYS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(keys, base: float) -> dict[str, float]:
    """Accuracies/F1 = base, MAE = 1 - base, Corr = base - 0.1 (fractions, as test_metrics.json holds them)."""
    return {k: (1 - base if k == "MAE" else base - 0.1 if k == "Corr" else base) for k in keys}


def make_run(root: Path, name: str, *, dataset="mosi", seeds: dict[int, float], unfinished=(), gates=True, **model):
    """A run dir laid out as docs/contracts.md says, with known test metrics per seed."""
    cfg = Config().to_dict()
    cfg["data"]["dataset"] = dataset
    cfg["model"].update(model)
    cfg["train"]["seeds"] = list(seeds) + list(unfinished)
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    keys = SIMS_KEYS if dataset == "sims" else MOSI_KEYS
    layers = cfg["model"]["mm_layers"]
    for i, (seed, base) in enumerate(seeds.items()):
        d = run / f"seed-{seed}"
        d.mkdir()
        (d / "test_metrics.json").write_text(json.dumps(_metrics(keys, base)))
        if gates:
            (d / "gates.json").write_text(json.dumps(
                [{"layer": l, "gate_attn": 0.5 + 0.01 * j + 0.01 * i, "gate_ffw": 0.4 - 0.02 * j} for j, l in enumerate(layers)]
            ))
        (d / "DONE").write_text("")
    for seed in unfinished:  # killed mid-run: a checkpoint and metrics of a half-trained model, no DONE
        d = run / f"seed-{seed}"
        d.mkdir()
        (d / "last.pt").write_bytes(b"")
        (d / "test_metrics.json").write_text(json.dumps(_metrics(keys, 0.0)))
    return run


@pytest.fixture()
def fusion_runs(tmp_path):
    root = tmp_path / "fig3"
    return [
        make_run(root, "nf8", seeds={1: 0.80, 2: 0.82, 3: 0.84}, unfinished=(4,), n_fusion=8),
        make_run(root, "nf12", seeds={1: 0.85, 2: 0.86}, n_fusion=12),
        make_run(root, "nf16", seeds={1: 0.70}, n_fusion=16),
        make_run(root, "empty", seeds={}, unfinished=(1,), n_fusion=20),
    ]


def test_mean_std_over_done_seeds_only(fusion_runs):
    table = collect(fusion_runs)
    assert table.dataset == "mosi" and table.metrics == list(MOSI_KEYS)
    assert table.varying == ["model.n_fusion"]
    rows = {r.label: r for r in table.rows}
    assert set(rows) == {"nf8", "nf12", "nf16"} and [r.label for r in table.empty] == ["empty"]
    nf8 = rows["nf8"]
    assert nf8.n_seeds == 3 and list(nf8.per_seed) == [1, 2, 3]  # seed 4 has no DONE
    assert nf8.mean["Has0_acc_2"] == pytest.approx(0.82, abs=1e-12)
    assert nf8.std["Has0_acc_2"] == pytest.approx(math.sqrt(0.0008 / 3), abs=1e-12)  # population std (ddof=0), as MMSA
    assert nf8.mean["MAE"] == pytest.approx(0.18) and nf8.std["MAE"] == pytest.approx(math.sqrt(0.0008 / 3))
    assert rows["nf12"].mean["Corr"] == pytest.approx(0.755) and rows["nf12"].std["Corr"] == pytest.approx(0.005)
    assert rows["nf16"].n_seeds == 1 and math.isnan(rows["nf16"].std["MAE"])


def test_markdown_prints_paper_units(fusion_runs):
    md = to_markdown(collect(fusion_runs), title="Fig. 3")
    lines = md.splitlines()
    header = next(l for l in lines if l.startswith("| run"))
    assert header.split(" | ")[:4] == ["| run", "model.n_fusion", "seeds", "Has0_acc_2 ↑"]
    assert "MAE ↓" in header
    nf8 = next(l for l in lines if l.startswith("| nf8 "))
    cells = [c.strip() for c in nf8.strip("|").split("|")]
    # run, n_fusion, seeds, Has0_acc_2, Has0_F1, Non0_acc_2, Non0_F1, Acc5, Acc7, MAE, Corr
    assert cells[:4] == ["nf8", "8", "3", "82.00 ± 1.63"]
    assert cells[9] == "0.180 ± 0.016" and cells[10] == "0.720 ± 0.016"
    nf12 = [c.strip() for c in next(l for l in lines if l.startswith("| nf12 ")).strip("|").split("|")]
    assert nf12[3] == "**85.50 ± 0.50**" and nf12[9] == "**0.145 ± 0.005**"  # best mean in bold
    nf16 = [c.strip() for c in next(l for l in lines if l.startswith("| nf16 ")).strip("|").split("|")]
    assert nf16[2:4] == ["1", "70.00"]  # one seed: no ± std
    assert "Without a finished seed yet: `empty`" in md


def test_csv_and_plots_written(fusion_runs, tmp_path):
    out = tmp_path / "agg"
    written = write_results(collect(fusion_runs), out)
    names = {p.name for p in written}
    assert names == {"results.md", "results.csv", "metrics_vs_n_fusion.png", "gates.png"}
    for p in written:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data[:8] == PNG_MAGIC and len(data) > 10_000
            w, h = struct.unpack(">II", data[16:24])
            assert w > 600 and h > 300
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["run"] for r in rows] == ["nf8", "nf12", "nf16"]
    assert float(rows[0]["Has0_acc_2_mean"]) == pytest.approx(0.82) and rows[0]["seeds"] == "1 2 3"
    assert rows[2]["MAE_std"] == "" and rows[0]["model.n_fusion"] == "8"
    assert "![metrics_vs_n_fusion](metrics_vs_n_fusion.png)" in (out / "results.md").read_text()


def test_fusion_depth_plot_for_mm_layers(tmp_path):
    runs = [
        make_run(tmp_path, "d5", dataset="sims", seeds={1: 0.8, 2: 0.81}, mm_layers=[7, 8, 9, 10, 11]),
        make_run(tmp_path, "d7", dataset="sims", seeds={1: 0.82, 2: 0.83}, mm_layers=[5, 6, 7, 8, 9, 10, 11]),
    ]
    table = collect(runs)
    assert table.varying == ["model.mm_layers"] and table.metrics == list(SIMS_KEYS)
    written = {p.name for p in write_results(table, tmp_path / "agg")}
    assert "metrics_vs_fusion_depth.png" in written and "metrics_vs_n_fusion.png" not in written


def test_mixed_datasets_refused(tmp_path):
    runs = [make_run(tmp_path, "a", seeds={1: 0.8}), make_run(tmp_path, "b", dataset="sims", seeds={1: 0.8})]
    with pytest.raises(ConfigError, match="mix datasets"):
        collect(runs)


def test_results_cli(fusion_runs, tmp_path):
    out = tmp_path / "cli-out"
    runner = CliRunner()
    res = runner.invoke(app, ["results", *map(str, fusion_runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "results.md").is_file() and (out / "metrics_vs_n_fusion.png").is_file()
    assert "| nf8 | 8 | 3 | 82.00 ± 1.63 |" in res.output
    # Default --out: the runs' common parent (never a run dir, which has its own results.csv).
    res = runner.invoke(app, ["results", *map(str, fusion_runs[:2])])
    assert res.exit_code == 0 and (fusion_runs[0].parent / "results.md").is_file()
    res = runner.invoke(app, ["results", str(tmp_path / "nope")])
    assert res.exit_code == 2  # friendly_errors: one line, no traceback
    assert f"error: run dir {tmp_path / 'nope'} does not exist" in res.stderr
