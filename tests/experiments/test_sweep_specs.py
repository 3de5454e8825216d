"""Every spec under experiments/ validates and lists the paper's cells; spec errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.errors import ConfigError
from deepmlf.experiments import expand_cells, load_sweep_spec, parse_shard, plan_sweep, select_cells
from deepmlf.experiments.tune import prepare

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

SIMS_LAYERS_5 = [7, 8, 9, 10, 11]
# spec file -> (cell names in order, a key each cell sets and the value it must resolve to)
EXPECTED: dict[str, tuple[list[str], str, list]] = {
    "table6-fusion-depth-sims.yaml": (
        ["model.mm_layers=7-8-9-10-11", "model.mm_layers=5-6-7-8-9-10-11", "model.mm_layers=3-4-5-6-7-8-9-10-11"],
        "model.mm_layers",
        # paper's 1-based 8:12, 6:12, 4:12
        [SIMS_LAYERS_5, list(range(5, 12)), list(range(3, 12))],
    ),
    "table7-backbone-scale-mosei.yaml": (
        ["gpt2-base", "gpt2-medium", "gpt2-large"],
        "model.mm_layers",
        # paper's 1-based 4-6-8:12, 9-12-15-18-21-24, 8-15-22-29-36
        [[3, 5, 7, 8, 9, 10, 11], [8, 11, 14, 17, 20, 23], [7, 14, 21, 28, 35]],
    ),
    "table8-av-init-mosei.yaml": (
        [f"model.av_encoder.init={m}" for m in ("pretrain_tune", "pretrain_freeze", "random_tune")],
        "model.av_encoder.init",
        ["pretrain_tune", "pretrain_freeze", "random_tune"],
    ),
    "table8-av-init-sims.yaml": (
        [f"model.av_encoder.init={m}" for m in ("pretrain_tune", "pretrain_freeze", "random_tune")],
        "model.av_encoder.init",
        ["pretrain_tune", "pretrain_freeze", "random_tune"],
    ),
    "table10-fusion-block-sims.yaml": (
        ["gca=fusion,ffw=full", "gca=text+fusion,ffw=full", "gca=text,ffw=full", "gca=fusion,ffw=off"],
        "model.ffw",
        ["full", "full", "full", "off"],
    ),
    "table11-loss-terms-mosei.yaml": (
        ["all-terms", "no-lambda_av", "no-lambda_t", "no-lambda_f", "no-lambda_lm"],
        "loss",
        # (λ_av, λ_t, λ_f, λ_LM) of the mosei-large preset with one term removed per row
        [(1, 1, 1, 1), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0)],
    ),
    "table11-loss-terms-sims.yaml": (
        ["all-terms", "no-lambda_av", "no-lambda_t", "no-lambda_f", "no-lambda_lm"],
        "loss",
        [(1, 1, 1, 1), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0)],
    ),
    "table12-embedding-aug-sims.yaml": (
        [f"model.augment.kind={k}" for k in ("seqaug", "noise", "dropout")],
        "model.augment.kind",
        ["seqaug", "noise", "dropout"],
    ),
    "table13-gating-mosei.yaml": (
        [f"model.gate={g}" for g in ("sigmoid", "tanh", "none")],
        "model.gate",
        ["sigmoid", "tanh", "none"],
    ),
    "fig3-fusion-tokens-mosei.yaml": (
        [f"preset={p},model.n_fusion={n}" for p in ("mosei-base", "mosei-large") for n in (8, 12, 16, 20)],
        "model.n_fusion",
        [8, 12, 16, 20] * 2,
    ),
    # issue 11: text-missing robustness, one spec per dataset (docs/missing-modalities.md)
    **{
        f"missing-text-{d}.yaml": (
            ["deepmlf", "text-dropout", "double-flow", "double-flow-mia", "double-flow-mia-rnc", "umca"],
            "model.arch",
            ["deepmlf"] * 5 + ["umca"],
        )
        for d in ("mosi", "mosei", "sims")
    },
}


def _get(cfg, key):
    if key == "loss":
        return (cfg.loss.lambda_av, cfg.loss.lambda_t, cfg.loss.lambda_f, cfg.loss.lambda_lm)
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_sweep_spec_is_covered():
    # erc-*.yaml are ERC sweeps (deepmlf erc sweep), covered in tests/test_cli_erc.py
    sweeps = {p.name for p in EXPERIMENTS.glob("*.yaml") if not p.name.startswith(("tune-", "erc-"))}
    assert sweeps == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_cells_match_the_paper(name, tmp_path):
    names, key, values = EXPECTED[name]
    plan = plan_sweep(EXPERIMENTS / name, data="/data/x.pkl", out=tmp_path)
    assert [c.name for c in plan.cells] == names
    assert [_get(c.config, key) for c in plan.cells] == values
    for c in plan.cells:
        assert len(c.config.train.seeds) >= 5
        assert c.config.data.path == "/data/x.pkl"
        assert c.run_dir == tmp_path / c.name and c.state == "todo"
    # The header comment names the paper table/figure (or, for our robustness specs, the command that
    # scores them) and how to pass the data.
    header = (EXPERIMENTS / name).read_text().split("\nname:")[0]
    source = "deepmlf robustness" if name.startswith("missing-text-") else ("Table", "Fig.")
    assert any(s in header for s in ([source] if isinstance(source, str) else source))
    assert "--data /data/" in header


def test_table7_keeps_each_backbone_recipe():
    plan = plan_sweep(EXPERIMENTS / "table7-backbone-scale-mosei.yaml")
    by = {c.name: c.config for c in plan.cells}
    assert [by[n].model.backbone for n in ("gpt2-base", "gpt2-medium", "gpt2-large")] == ["gpt2", "gpt2-medium", "gpt2-large"]
    assert by["gpt2-large"].train.weight_decay == 0.1 and by["gpt2-base"].loss.lambda_lm == 1.1


def test_table10_and_13_cells_set_the_intended_variant():
    t10 = {c.name: c.config.model for c in plan_sweep(EXPERIMENTS / "table10-fusion-block-sims.yaml").cells}
    assert [m.gca_query for m in t10.values()] == ["fusion", "text+fusion", "text", "fusion"]
    t13 = plan_sweep(EXPERIMENTS / "table13-gating-mosei.yaml").cells
    assert all(c.config.model.gate_init == 0.0 for c in t13)


@pytest.mark.parametrize("name", ["tune-mosi.yaml", "tune-sims-augment.yaml"])
def test_tune_specs_validate(name):
    ctx = prepare(EXPERIMENTS / name)
    assert ctx.spec.search and ctx.direction in ("min", "max")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dry_run_lists_cells_without_training(name, tmp_path):
    res = CliRunner().invoke(app, ["sweep", str(EXPERIMENTS / name), "--dry-run", "--out", str(tmp_path),
                                   "--data", "/data/x.pkl"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    names = EXPECTED[name][0]
    rows = [l for l in res.stdout.splitlines() if l.startswith("│")]
    assert [l.split("│")[2].strip() for l in rows] == names  # one row per cell, in spec order
    assert all("todo 0/5" in l for l in rows)
    assert f"{len(names)} of {len(names)} cells selected: 0 done, 0 partial, {len(names)} todo" in res.stdout
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


# ----------------------------------------------------------------------------- spec errors


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_unknown_config_key_names_cell_and_key(tmp_path):
    spec = _write(tmp_path, "name: s\nbase: {preset: sims}\ngrid:\n  model.n_fusoin: [8, 12]\n")
    with pytest.raises(ConfigError) as e:
        plan_sweep(spec)
    msg = str(e.value)
    assert "2 of 2 cells are invalid" in msg and "model.n_fusoin" in msg and "cell 'model.n_fusoin=8'" in msg


def test_all_cell_errors_reported_before_training(tmp_path):
    spec = _write(tmp_path, "name: s\ncells:\n  - {name: a, set: {model.gate: banana}}\n"
                            "  - {name: b, set: {model.n_fusion: 0}}\n  - {name: c, set: {}}\n")
    with pytest.raises(ConfigError) as e:
        plan_sweep(spec)
    msg = str(e.value)
    assert "2 of 3 cells are invalid" in msg and "model.gate" in msg and "model.n_fusion" in msg


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: s\n", "a sweep needs `grid:`"),
        ("name: s\ngrid: {model.n_fusion: [8]}\nfoo: 1\n", "foo: Extra inputs are not permitted"),
        ("name: 'a b'\ngrid: {model.n_fusion: [8]}\n", "not filesystem-safe"),
        ("name: s\ngrid: {model.n_fusion: []}\n", "needs at least one value"),
        ("name: s\ngrid: {model.n_fusion: [8]}\nseeds: [1, 1]\n", "seeds: a seed appears twice"),
        ("name: s\nbase: {preset: nope}\ngrid: {model.n_fusion: [8]}\n", "base.preset: unknown preset 'nope'"),
        ("name: s\ncells: [{name: 'x/y', set: {}}]\n", "cells.0.name"),
        ("name: s\ncells: [{name: a, set: {}}, {name: a, set: {model.n_fusion: 8}}]\n", "both get the name 'a'"),
        ("name: s\ncells: [{name: a, set: {model.n_fusion: 8}}]\ngrid: {model.n_fusion: [8]}\n", "also a grid axis"),
    ],
)
def test_spec_errors_are_clear(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        plan_sweep(_write(tmp_path, text))
    assert needle in str(e.value)
    assert "spec" in str(e.value) or "cell" in str(e.value)


def test_explicit_cells_cross_grid_and_preset_axis(tmp_path):
    spec = _write(tmp_path, "name: s\nbase: {preset: sims, set: [train.max_epochs=3]}\n"
                            "cells:\n  - {name: nolm, set: {loss.lambda_lm: 0}}\n  - {name: all}\n"
                            "grid: {preset: [sims, mosei-base], model.n_fusion: [8]}\nseeds: [1, 2]\n")
    plan = plan_sweep(spec, overrides=["train.lr=0.001"])
    assert [c.name for c in plan.cells] == [
        "nolm,preset=sims,model.n_fusion=8", "nolm,preset=mosei-base,model.n_fusion=8",
        "all,preset=sims,model.n_fusion=8", "all,preset=mosei-base,model.n_fusion=8",
    ]
    cfgs = [c.config for c in plan.cells]
    assert [c.data.dataset for c in cfgs] == ["sims", "mosei", "sims", "mosei"]
    assert [c.loss.lambda_lm for c in cfgs] == [0, 0, 1.0, 1.1]
    assert all(c.train.max_epochs == 3 and c.train.lr == 0.001 and c.train.seeds == [1, 2] for c in cfgs)


def test_set_on_a_sweep_axis_is_refused():
    with pytest.raises(ConfigError, match="is an axis of the sweep"):
        plan_sweep(EXPERIMENTS / "table6-fusion-depth-sims.yaml", overrides=["model.mm_layers=[1]"])


def test_backbone_map_and_cell_selection():
    plan = plan_sweep(EXPERIMENTS / "table7-backbone-scale-mosei.yaml",
                      backbones={"gpt2-large": "/models/gpt2-large", "nope": "/x"})
    assert [c.config.model.backbone for c in plan.cells] == ["gpt2", "gpt2-medium", "/models/gpt2-large"]
    assert [c.name for c in plan.cells] == ["gpt2-base", "gpt2-medium", "gpt2-large"]  # names use the spec's names
    assert plan.unused_backbones == ["nope"]
    assert [c.name for c in select_cells(plan, names=["gpt2-large"])] == ["gpt2-large"]
    assert [c.name for c in select_cells(plan, shard=parse_shard("0/2"))] == ["gpt2-base", "gpt2-large"]
    assert [c.name for c in select_cells(plan, shard=parse_shard("1/2"))] == ["gpt2-medium"]
    with pytest.raises(ConfigError, match="--cell 'gpt2-xl' is not a cell"):
        select_cells(plan, names=["gpt2-xl"])
    for bad in ("2/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_cell_names_are_filesystem_safe():
    spec = load_sweep_spec(EXPERIMENTS / "fig3-fusion-tokens-mosei.yaml")
    spec.grid["model.backbone"] = ["/models/gpt2 large", "gpt2"]
    names = [c.name for c in expand_cells(spec)]
    assert "preset=mosei-base,model.n_fusion=8,model.backbone=models_gpt2_large" in names
    assert all("/" not in n and " " not in n for n in names)


def test_base_config_file_is_relative_to_the_spec(tmp_path):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "mine.yaml").write_text("preset: sims\nmodel: {n_fusion: 7}\ntrain: {max_epochs: 4}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\nbase: {config: cfgs/mine.yaml, set: {train.max_epochs: 6}}\n"
                    "cells: [{name: a, set: ['loss.lambda_f=0.5']}]\n")
    (cell,) = plan_sweep(spec).cells
    cfg = cell.config
    assert cfg.data.dataset == "sims" and cfg.model.n_fusion == 7  # preset named by the file, then the file
    assert cfg.train.max_epochs == 6 and cfg.loss.lambda_f == 0.5  # base.set, then the cell
    assert cell.run_dir == Path("runs/s/a")  # default out: runs/<name>, relative to the working directory
